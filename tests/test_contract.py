"""The rung contract, kind by kind: every kind of the registry trained at toy size through the
CLI, then scored, sampled with every option, loaded back, and (where the kind has it) resumed."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from lmladder import registry
from tests.conftest import plays, train_recipes

NEURAL_TOY = ["--max-steps", "4", "--eval-interval", "2", "--log-interval", "2", "--device", "cpu", "--seed", "3"]
# label -> (kind, the CLI arguments that train it into {out}, with {corpus} and {tokenizer})
RECIPES = {
    "uniform": ("uniform", ["train", "{corpus}", "--model", "uniform", "--out", "{out}"]),
    "unigram": ("unigram", ["train", "{corpus}", "--model", "unigram", "--out", "{out}"]),
    "ngram-char": ("ngram", ["ngram", "train", "{corpus}", "--unit", "char", "--order", "4", "--out", "{out}"]),
    "ngram-word": ("ngram", ["ngram", "train", "{corpus}", "--unit", "word", "--order", "2", "--out", "{out}"]),
    "mlp": ("mlp", ["train", "{corpus}", "--model", "mlp", "--block-size", "4", "--n-embd", "8", "--n-hidden", "16",
                    "--batch-size", "8", "--seq-len", "16", *NEURAL_TOY, "--out", "{out}"]),
    "gpt-char": ("gpt", ["train", "{corpus}", "--preset", "gpt-tiny", "--block-size", "16", *NEURAL_TOY,
                         "--out", "{out}"]),
    "gpt-bpe": ("gpt", ["train", "{corpus}", "--preset", "gpt-tiny", "--block-size", "16", "--tokenizer",
                        "{tokenizer}", *NEURAL_TOY, "--out", "{out}"]),
    # its two blocks gone through twice (n_loop): sampled, scored and compressed through both passes
    "gpt-looped": ("gpt", ["train", "{corpus}", "--preset", "gpt-tiny", "--block-size", "16", "--n-loop", "2",
                           *NEURAL_TOY, "--out", "{out}"]),
    # renormalised over canonical encodings (lmladder.canonical): scored, sampled, compressed alike; its
    # token dropout falls from 1 over 5 steps, so the resume at step 4 comes in the middle of the fall
    "gpt-bpe-canonical": ("gpt", ["train", "{corpus}", "--preset", "gpt-tiny", "--block-size", "16", "--tokenizer",
                                  "{tokenizer}", "--canonical", "--token-dropout", "0.1", "--token-dropout-steps", "5",
                                  *NEURAL_TOY,
                                  "--out", "{out}"]),
}


def test_every_saved_kind_has_a_recipe():
    saved = {name for name, kind in registry.KINDS.items() if kind.load is not None}
    assert {kind for kind, _ in RECIPES.values()} == saved


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return plays(tmp_path_factory.mktemp("contract"), 60_000)


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory) -> dict[str, Path]:
    """Every recipe trained once (the CLI in-process, in this module's own home)."""
    return train_recipes(tmp_path_factory.mktemp("runs"), corpus, {label: args for label, (_, args) in RECIPES.items()})


@pytest.mark.parametrize("label", RECIPES)
def test_score(cli, trained, corpus, label):
    result = cli("score", trained[label], corpus, "--json")
    assert result.exit_code == 0, result
    row = json.loads(result.stdout)
    assert row["split"] == "test" and row["chars"] > 1000
    assert 0 < row["bits_per_char"] < 12 and math.isfinite(row["bits_per_char"])


def _texts(cli, folder, *args) -> list[str]:
    result = cli("sample", folder, "--max-new-chars", "40", *args, "--json")
    assert result.exit_code == 0, result
    return [row["text"] for row in json.loads(result.stdout)]


@pytest.mark.parametrize("label", RECIPES)
def test_sample_with_every_option(cli, trained, tmp_path, label):
    folder = trained[label]
    first = _texts(cli, folder, "--seed", "5")
    assert first == _texts(cli, folder, "--seed", "5")  # same seed, same text
    three = _texts(cli, folder, "--seed", "5", "--num-samples", "3")
    assert len(three) == 3 and three[0] == first[0]  # a sample does not depend on the batch
    assert _texts(cli, folder, "--temperature", "0") == _texts(cli, folder, "--temperature", "0", "--seed", "9")
    for option in (["--top-k", "3"], ["--top-p", "0.9"], ["--temperature", "1.3"]):
        assert len(_texts(cli, folder, *option)[0]) <= 40
    prompted = _texts(cli, folder, "--prompt", "ROMEO:", "--seed", "2")[0]
    assert prompted.startswith("ROMEO:") and len(prompted) <= len("ROMEO:") + 40
    prompt_file = tmp_path / "prompt.txt"
    prompt_file.write_text("ROMEO:", encoding="utf-8")
    assert _texts(cli, folder, "--prompt-file", prompt_file, "--seed", "2")[0] == prompted
    stopped = _texts(cli, folder, "--seed", "5", "--stop", "e", "--max-new-chars", "200")[0]
    assert "e" not in stopped
    tokens = cli("sample", folder, "--max-new-tokens", "10", "--json")
    assert tokens.exit_code == 0, tokens
    streamed = cli("sample", folder, "--seed", "5", "--max-new-chars", "40", "--stream")
    assert streamed.exit_code == 0 and streamed.stdout.rstrip("\n") == first[0].rstrip("\n")


@pytest.mark.parametrize("label", RECIPES)
def test_loading_gives_the_same_rung(trained, corpus, label):
    """Loaded twice, a folder scores and samples identically; the numbers a training run wrote in
    its folder are the ones its reloaded rung gives."""
    from lmladder import artifacts, corpora, metrics
    from lmladder.generate import generate

    folder = trained[label]
    header = artifacts.read_header(folder, "lmladder-model")
    docs = corpora.load(str(corpus)).split(header["split"]).require("test")
    a, b = registry.load_model(folder), registry.load_model(folder)
    assert metrics.evaluate(a, docs).to_dict() == metrics.evaluate(b, docs).to_dict()
    assert generate(a, "the", max_new_chars=30, seed=1) == generate(b, "the", max_new_chars=30, seed=1)
    if "test" in header:  # neural runs score their test split when they finish
        assert metrics.evaluate(a, docs).bits_per_char == header["test"]["bits_per_char"]


def test_the_looped_recipe_is_looped(trained):
    """gpt-looped is what it says (the other contract checks would pass on a one-pass GPT too)."""
    from lmladder import artifacts

    assert artifacts.read_header(trained["gpt-looped"], "lmladder-model")["config"]["model"]["n_loop"] == 2
    model = registry.load_model(trained["gpt-looped"]).model
    assert model.config.n_loop == 2 and model.blocks() == [*model.transformer.h] * 2


@pytest.mark.parametrize("label", [label for label, (kind, _) in RECIPES.items() if registry.KINDS[kind].resumes])
def test_resume_continues_exactly(cli, trained, corpus, tmp_path, label):
    """Trained 4 steps and resumed to 6 equals 6 steps straight through, bit for bit."""
    from safetensors.numpy import load_file

    kind, args = RECIPES[label]
    tokenizer = trained["gpt-bpe"].parent / "bpe-tokenizer"

    def argv(out, steps):
        made = [a.format(corpus=corpus, out=out, tokenizer=tokenizer) for a in args]
        made[made.index("--max-steps") + 1] = steps
        return made

    assert cli(*argv(tmp_path / "straight", "6")).exit_code == 0
    assert cli(*argv(tmp_path / "resumed", "4")).exit_code == 0
    resumed = cli("train", "--resume", tmp_path / "resumed", "--max-steps", "6")
    assert resumed.exit_code == 0, resumed
    a = load_file(tmp_path / "straight" / "latest" / "model.safetensors")
    b = load_file(tmp_path / "resumed" / "latest" / "model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_ladder_only_kinds_build_through_bench(cli, corpus, tmp_path):
    """Kinds that are never saved (compressors) are built by a ladder file."""
    ladder_only = [name for name, kind in registry.KINDS.items() if kind.load is None]
    assert ladder_only == ["compressor"]
    ladder = tmp_path / "ladder.toml"
    ladder.write_text("".join(f'[[rung]]\nname = "{m}"\nkind = "compressor"\nmethod = "{m}"\n\n'
                              for m in ("gzip", "bz2", "xz")))
    result = cli("bench", corpus, "--ladder", ladder, "--json")
    assert result.exit_code == 0, result
    assert [r["rung"] for r in json.loads(result.stdout)["results"]] == ["gzip", "bz2", "xz"]
