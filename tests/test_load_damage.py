"""A saved model whose folder was edited or mixed up is refused when it is loaded, with one
`error:` line, before anything is built: its config (types, ranges, sizes the weights file does
not declare), the tokenizer beside it, a transformers folder's config.json."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import assert_error, plays, train_recipes

TOY = ["--max-steps", "3", "--batch-size", "4", "--eval-interval", "0"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A char GPT, a BPE GPT, an MLP, a rotary GPT with a moving average of its weights, and a
    second BPE (a tokenizer of other text)."""
    root = tmp_path_factory.mktemp("damage")
    corpus = plays(root, 20_000)
    other = root / "other.txt"
    other.write_text("".join(f"line {i}: quite other words here\n" for i in range(2000)))
    recipes = {
        "gpt": ["train", "{corpus}", "--preset", "gpt-tiny", "--block-size", "16", *TOY, "--out", "{out}"],
        "bpe-gpt": ["train", "{corpus}", "--preset", "gpt-tiny", "--block-size", "16", "--tokenizer", "{tokenizer}",
                    *TOY, "--out", "{out}"],
        "mlp": ["train", "{corpus}", "--model", "mlp", *TOY, "--out", "{out}"],
        "rotary": ["train", "{corpus}", "--preset", "gpt-tiny", "--block-size", "16", "--position", "rotary",
                   "--ema", "0.9", *TOY, "--out", "{out}"],
        "other-tok": ["tokenizer", "train", str(other), "--vocab-size", "300", "--out", "{out}"],
        "ngram": ["ngram", "train", "{corpus}", "--order", "3", "--out", "{out}"],
    }
    return {**train_recipes(root, corpus, recipes), "corpus": corpus}


def _edited(runs, label: str, tmp_path: Path, edit) -> Path:
    folder = tmp_path / label
    shutil.copytree(runs[label], folder)
    header = json.loads((folder / "lmladder.json").read_text())
    edit(header)
    (folder / "lmladder.json").write_text(json.dumps(header))
    return folder


def _model(value):
    return lambda h: h["config"]["model"].update(value)


@pytest.mark.parametrize("label, edit, fragment", [
    ("gpt", _model({"dropout": 5.0}), "dropout must be in [0, 1)"),
    ("gpt", _model({"dropout": "x"}), "of the wrong type: dropout 'x'"),
    ("gpt", _model({"n_embd": 0}), "n_embd must be at least 1"),
    ("gpt", _model({"n_head": 3}), "n_embd (32) must be a multiple of n_head (3)"),
    ("gpt", _model({"position": "weird"}), "position must be one of"),
    ("gpt", _model({"block_size": 10**12}), "the config makes it (1000000000000, 32)"),
    ("gpt", _model({"vocab_size": 10**9}), "does not fit the model of its config"),
    ("gpt", _model({"n_layer": 5}), "was trained with n_layer 2, not 5 as its run's lmladder.json says"),
    ("gpt", lambda h: h.update(weights=5), "names its weights 5"),
    ("gpt", lambda h: h.pop("config"), "KeyError"),
    ("mlp", _model({"n_hidden": -3}), "n_hidden must be at least 1"),
    ("mlp", _model({"pad_id": 10**6}), "pad_id 1000000 is not a token"),
    ("mlp", _model({"vocab_size": 10**9}), "does not fit the model of its config"),
    # every shape the same, another model: refused by the settings the weights were saved with
    ("gpt", _model({"n_head": 4}), "was trained with n_head 2, not 4"),
    ("gpt", _model({"n_loop": 2}), "was trained with n_loop 1, not 2"),
    ("rotary", _model({"block_size": 32}), "was trained with block_size 16, not 32"),
    ("mlp", lambda h: h["config"]["model"].update(pad_id=h["config"]["model"]["pad_id"] - 1), "was trained with pad_id"),
])
def test_an_edited_config_is_refused_before_the_model_is_built(cli, runs, tmp_path, label, edit, fragment):
    folder = _edited(runs, label, tmp_path, edit)
    for args in (["score", folder, runs["corpus"]], ["sample", folder, "--max-new-chars", "5"]):
        assert_error(cli(*args), fragment)


def test_a_swapped_tokenizer_is_refused(cli, runs, tmp_path):
    """Another BPE of the same size in its place used to score without a word (other numbers)."""
    folder = tmp_path / "swapped"
    shutil.copytree(runs["bpe-gpt"], folder)
    assert cli("score", folder, runs["corpus"]).exit_code == 0
    shutil.rmtree(folder / "tokenizer")
    shutil.copytree(runs["other-tok"], folder / "tokenizer")
    for args in (["score", folder, runs["corpus"]], ["sample", folder, "--max-new-chars", "5"],
                 ["compress", folder, runs["corpus"], "--out", tmp_path / "x.llz"]):
        assert_error(cli(*args), "is not the tokenizer this model was trained with")
    assert not (tmp_path / "x.llz").exists()


@pytest.mark.parametrize("edit, fragment", [
    ({"resid_pdrop": 5.0}, "resid_pdrop 5.0"),
    ({"n_positions": 10**12}, "do not fit its config.json"),
    ({"vocab_size": 10**10}, "do not fit its config.json"),
    ({"n_embd": 0}, "n_embd 0"),
])
def test_an_edited_transformers_config_is_refused(cli, runs, tmp_path, edit, fragment):
    pytest.importorskip("transformers")
    out = tmp_path / "hf"
    assert cli("export", runs["gpt"], "--format", "hf", "--out", out).exit_code == 0
    (out / "lmladder.json").unlink()  # a folder from elsewhere: config.json is all there is
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, **edit}))
    assert_error(cli("score", out, runs["corpus"]), fragment)


def _part(value):
    return lambda h: h["model"].update(value)


@pytest.mark.parametrize("edit, fragment", [
    (_part({"order": "x"}), "its tables' order 'x'"),
    (_part({"bos": 10**9}), "bos 1000000000 is not one of its"),
    (_part({"escape": "x"}), "escape 'x' is not one of its"),
    (lambda h: h["model"]["config"].update(smoothing="addk"), "without its token count"),
    (lambda h: h["model"]["config"].update(unit="word"), "a word model without the letter model"),
    (lambda h: h["model"]["config"].update(order="3"), "of the wrong type: order '3'"),
    (lambda h: h["model"]["config"].update(smoothing="zz"), "--smoothing must be one of"),
])
def test_an_edited_ngram_header_is_refused(cli, runs, tmp_path, edit, fragment):
    """Each of these was an internal error (ValueError, IndexError, KeyError, AttributeError)."""
    folder = _edited(runs, "ngram", tmp_path, edit)
    for args in (["score", folder, runs["corpus"]], ["export", folder, "--format", "arpa", "--out", tmp_path / "x.arpa"]):
        assert_error(cli(*args), fragment)


def _settings(path: Path) -> dict | None:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        text = (handle.metadata() or {}).get("lmladder.model")
    return None if text is None else json.loads(text)


def test_weights_carry_their_model_settings_and_an_older_file_without_them_loads(cli, runs, tmp_path):
    """latest/, best/ and the moving average all carry the model's settings (but dropout and the
    residual dtype, which may differ on load); a file written before they were (re-saved here
    without them) still loads, and a dropout edit is no other model."""
    from lmladder import checkpoint

    folder = tmp_path / "rotary"
    shutil.copytree(runs["rotary"], folder)
    model = json.loads((folder / "lmladder.json").read_text())["config"]["model"]
    for name in ("latest/model.safetensors", "latest/ema.safetensors", "best/model.safetensors"):
        assert _settings(folder / name) == {k: v for k, v in model.items() if k not in ("dropout", "residual_dtype")}
    assert cli("score", _edited(runs, "rotary", tmp_path / "d", _model({"dropout": 0.1})), runs["corpus"]).exit_code == 0
    for name in ("latest/ema.safetensors", "best/model.safetensors", "latest/model.safetensors"):
        checkpoint.save_tensors(checkpoint.load_tensors(folder / name), folder / name)  # no settings
        assert _settings(folder / name) is None
    assert cli("score", folder, runs["corpus"]).exit_code == 0


def test_weights_with_damaged_settings_are_refused(cli, runs, tmp_path):
    from safetensors.torch import save_file

    from lmladder import checkpoint

    folder = tmp_path / "gpt"
    shutil.copytree(runs["gpt"], folder)
    for name in ("best/model.safetensors", "latest/model.safetensors"):
        tensors = checkpoint.load_tensors(folder / name)
        save_file(tensors, str(folder / name), metadata={checkpoint.CRC_KEY: checkpoint.tensors_crc32(tensors),
                                                         checkpoint.MODEL_KEY: "{not json"})
    for args in (["score", folder, runs["corpus"]], ["sample", folder, "--max-new-chars", "5"]):
        assert_error(cli(*args), "its model settings (lmladder.model) are not a JSON object")
