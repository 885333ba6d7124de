"""Models that leave the ladder (lmladder.hf, `lmladder export`): a char and a BPE GPT trained at
toy size through the CLI, exported as transformers GPT-2 folders and checked against transformers
itself (logits, tokenizer, greedy generation), read back, exported again byte for byte; GPT-2
folders that lmladder did not write; ARPA; and every kind of bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lmladder import registry
from lmladder.errors import LadderError
from tests.conftest import assert_error, plays, train_recipes

torch = pytest.importorskip("torch")

# one thread: a tiny model's step is far cheaper than two threads' hand-offs on a busy machine
TOY = ["--preset", "gpt-tiny", "--device", "cpu", "--threads", "1", "--seed", "3", "--log-interval", "50"]
# block 128 holds a prompt and 100 new tokens, which transformers' GPT-2 cannot slide past
GPT = [*TOY, "--block-size", "128", "--max-steps", "150", "--lr", "1e-2", "--eval-interval", "150"]
RECIPES = {
    "char": ["train", "{corpus}", *GPT, "--dropout", "0.1"],  # with biases (gpt-tiny's)
    "bpe": ["train", "{corpus}", *GPT, "--tokenizer", "{tokenizer}", "--no-bias"],  # without, as gpt-char trains
    # its blocks gone through twice: exported unrolled, read back looped
    "looped": ["train", "{corpus}", *TOY, "--block-size", "128", "--max-steps", "30", "--eval-interval", "30",
               "--n-loop", "2"],
    "rotary": ["train", "{corpus}", *TOY, "--block-size", "16", "--max-steps", "2", "--eval-interval", "2",
               "--position", "rotary"],
    "mlp": ["train", "{corpus}", "--model", "mlp", "--block-size", "4", "--n-embd", "8", "--n-hidden", "16",
            "--batch-size", "8", "--seq-len", "16", "--max-steps", "2", "--eval-interval", "2", "--device", "cpu",
            "--threads", "1"],
    "ngram": ["ngram", "train", "{corpus}", "--unit", "char", "--order", "3"],
}
GPTS = ("char", "bpe", "looped")
PROMPT = "First Citizen:\nBefore "
STRINGS = ["", "To be, or not to be", "ROMEO:\nO, she doth teach the torches!\r\n\t  ",
           "héllo ☃ 𝄞 — «ok»", "<|endoftext|> is text here", "\ufffd", "Zzz~`|{}", "   \n\n\n"]


def transformers_lib():
    return pytest.importorskip("transformers", reason="transformers is not installed (pip install 'lmladder[hf]'); "
                                                      "the checks against transformers itself need it")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return plays(tmp_path_factory.mktemp("hf"), 60_000)


@pytest.fixture(scope="module")
def runs(corpus, tmp_path_factory) -> dict[str, Path]:
    """Every recipe trained once, and each GPT exported (the CLI in-process, in this module's home)."""
    def export(invoke, out):
        for label in GPTS:
            invoke("export", out[label], "--format", "hf", "--out", out[label].parent / f"{label}-hf")
            out[f"{label}-hf"] = out[label].parent / f"{label}-hf"

    recipes = {label: args + ["--out", "{out}"] for label, args in RECIPES.items()}
    return train_recipes(tmp_path_factory.mktemp("runs"), corpus, recipes, after=export)


def _test_docs(corpus, run: Path) -> list[str]:
    from lmladder import artifacts, corpora

    return corpora.load(str(corpus)).split(artifacts.read_header(run, "lmladder-model")["split"]).require("test")


def _hf_model(folder: Path, attention: str = "sdpa"):
    transformers = transformers_lib()
    return transformers.AutoModelForCausalLM.from_pretrained(folder, attn_implementation=attention).eval()


# --- against transformers itself --------------------------------------------------------


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("label", GPTS)
def test_transformers_computes_the_same_logits(runs, corpus, label, attention):
    """On held-out text, windows of a whole block after end-of-text, as lmladder scores."""
    rung = registry.load_model(runs[label])
    model = _hf_model(runs[f"{label}-hf"], attention)
    tok, block = rung.tokenizer, rung.config.model.block_size
    ids = [tok.eot_id] + tok.encode("\n".join(_test_docs(corpus, runs[label]))).tolist()
    x = torch.tensor([ids[i : i + block] for i in range(0, 4 * block, block)])
    with torch.no_grad():
        ours, theirs = rung.model(x), model(x).logits
    assert ours.shape == theirs.shape == (4, block, rung.config.model.vocab_size)
    assert (ours - theirs).abs().max().item() < 1e-5


@pytest.mark.parametrize("label", GPTS)
def test_the_config_is_the_runs(runs, label):
    from lmladder import artifacts

    config = artifacts.read_header(runs[label], "lmladder-model")["config"]["model"]
    hf = _hf_model(runs[f"{label}-hf"]).config
    assert (hf.n_layer, hf.n_head, hf.n_embd, hf.n_positions, hf.vocab_size) == \
        (config["n_layer"] * config["n_loop"], config["n_head"], config["n_embd"], config["block_size"], config["vocab_size"])
    assert hf.resid_pdrop == hf.embd_pdrop == hf.attn_pdrop == config["dropout"]
    assert hf.activation_function == "gelu_pytorch_tanh" and hf.layer_norm_epsilon == 1e-5
    assert hf.tie_word_embeddings and config["vocab_size"] % 64 == 0


@pytest.mark.parametrize("label", GPTS)
def test_the_tokenizer_encodes_and_decodes_as_lmladders(runs, corpus, label):
    """Every string: the same ids, and the same text back. Characters outside a char vocabulary
    become the escape (one each) and decode as U+FFFD, in both."""
    transformers = transformers_lib()
    rung = registry.load_model(runs[label])
    theirs = transformers.AutoTokenizer.from_pretrained(runs[f"{label}-hf"])
    ours = rung.tokenizer
    assert theirs.eos_token_id == theirs.bos_token_id == ours.eot_id
    assert len(theirs) == ours.vocab_size
    for text in STRINGS + _test_docs(corpus, runs[label])[:3]:
        ids = ours.encode(text).tolist()
        assert theirs.encode(text, add_special_tokens=False) == ids, text
        assert theirs.decode(ids) == ours.decode(ids), text
        if label == "bpe" or all(c in ours.vocab.chars for c in text):
            assert theirs.decode(ids) == text
    if label == "char":
        unseen = "☃𝄞"
        assert not set(unseen) & set(ours.vocab.chars)
        assert theirs.encode(unseen, add_special_tokens=False) == [ours.vocab.escape_id] * 2
        assert theirs.decode([ours.vocab.escape_id]) == "\ufffd" == theirs.unk_token


def test_a_char_vocabulary_holding_u_fffd_names_its_escape_otherwise(tmp_path):
    """U+FFFD seen in training is a character of its own; the escape is then <|escape|>."""
    transformers = transformers_lib()
    from lmladder.hf import tokenizer as hf_tokenizer
    from lmladder.tokens import CharTokenizer
    from lmladder.vocab import CharVocab

    ours = CharTokenizer(CharVocab("ab\ufffd"))
    for name, data in hf_tokenizer.files(ours, 64).items():
        (tmp_path / name).write_bytes(data)
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path)
    text = "a\ufffdbz<|escape|>"
    escaped = [0, 2, 1, 3, 3, 3, 3, 3, 3, 0, 3, 3, 3, 3]  # "a" is in the vocabulary, even inside "<|escape|>"
    assert theirs.encode(text, add_special_tokens=False) == ours.encode(text).tolist() == escaped
    assert theirs.decode([0, 2, 3]) == "a\ufffd<|escape|>" and theirs.unk_token == "<|escape|>"
    assert hf_tokenizer.read(tmp_path).identity() == ours.identity()


def _greedy(rung, prompt_ids: list[int], n: int) -> list[int]:
    from lmladder import decode
    from lmladder.sampling import SampleSettings, sample_rngs

    tok = rung.tokenizer
    return decode.generate(rung.model, prompt_ids, n, SampleSettings(0), sample_rngs(0, 1),
                           vocab_size=tok.vocab_size, stop_id=tok.eot_id)[0]


def _their_greedy(model, prompt_ids: list[int], n: int, **options) -> list[int]:
    out = model.generate(torch.tensor([prompt_ids]), max_new_tokens=n, do_sample=False, **options)
    new = out[0, len(prompt_ids):].tolist()
    eot = model.generation_config.eos_token_id
    return new[: new.index(eot)] if eot in new else new  # lmladder's sample ends before end-of-text


@pytest.mark.parametrize("label", GPTS)
def test_greedy_generation_is_the_same(runs, label):
    """100 tokens with transformers' generate(do_sample=False) and lmladder's at temperature 0,
    text included; padding ids never drawn, even where they would win (suppress_tokens)."""
    from lmladder.generate import generate
    from lmladder.sampling import SampleSettings

    rung = registry.load_model(runs[label])
    model = _hf_model(runs[f"{label}-hf"])
    prompt = rung.prompt_units(PROMPT)
    ours = _greedy(rung, prompt, 100)
    assert _their_greedy(model, prompt, 100) == ours and ours
    text = generate(rung, PROMPT, max_new_tokens=100, settings=SampleSettings(0))[0]
    assert text == PROMPT + rung.tokenizer.decode(ours)
    v, padded = rung.tokenizer.vocab_size, rung.config.model.vocab_size
    assert model.generation_config.suppress_tokens == list(range(v, padded))
    with torch.no_grad():  # padding rows that outscore the favourite token wherever it leads
        favourite = max(set(ours), key=ours.count)
        for weights in (model.transformer.wte.weight, rung.model.transformer.wte.weight):
            weights[v:] = 4 * weights[favourite]
    assert max(_their_greedy(model, prompt, 100, suppress_tokens=None)) >= v  # the padding would be drawn
    assert _their_greedy(model, prompt, 100) == _greedy(rung, prompt, 100)


# --- back into lmladder -----------------------------------------------------------------


@pytest.mark.parametrize("label", GPTS)
def test_export_of_the_export_is_byte_identical(cli, runs, tmp_path, label):
    again = tmp_path / "again"
    result = cli("export", runs[f"{label}-hf"], "--format", "hf", "--out", again, "--json")
    assert result.exit_code == 0, result
    first = sorted(p.name for p in runs[f"{label}-hf"].iterdir())
    assert first == sorted(p.name for p in again.iterdir()) == json.loads(result.stdout)["files"]
    for name in first:
        assert (again / name).read_bytes() == (runs[f"{label}-hf"] / name).read_bytes(), name


@pytest.mark.parametrize("label", GPTS)
def test_the_export_loads_back_as_the_run(runs, corpus, label):
    """The same config, tokenizer and weights: the same test bits/char as the run wrote, exactly,
    and the same samples."""
    from lmladder import artifacts, metrics
    from lmladder.generate import generate

    run, export = registry.load_model(runs[label]), registry.load_model(runs[f"{label}-hf"])
    assert export.config.to_dict() == run.config.to_dict()
    assert export.tokenizer.identity() == run.tokenizer.identity()
    assert metrics.evaluate(export, _test_docs(corpus, runs[label])).bits_per_char == \
        artifacts.read_header(runs[label], "lmladder-model")["test"]["bits_per_char"]
    assert generate(export, "the", max_new_chars=40, seed=1) == generate(run, "the", max_new_chars=40, seed=1)
    header, saved = registry.model_header(runs[f"{label}-hf"]), artifacts.read_header(runs[label], "lmladder-model")
    assert header["kind"] == "gpt" and all(header[k] == saved[k] for k in ("corpus", "split", "config", "test"))


def test_score_and_sample_read_a_transformers_folder(cli, runs):
    scored = cli("score", runs["char-hf"], "--json")
    assert scored.exit_code == 0, scored
    from lmladder import artifacts

    run = artifacts.read_header(runs["char"], "lmladder-model")
    assert json.loads(scored.stdout)["bits_per_char"] == run["test"]["bits_per_char"]
    sampled = cli("sample", runs["bpe-hf"], "--temperature", "0", "--max-new-tokens", "20", "--json")
    assert sampled.exit_code == 0, sampled
    assert json.loads(sampled.stdout)[0]["text"]


def test_the_weights_file_is_the_same_bytes_every_time(tmp_path):
    """safetensors writes its metadata in a hash map's order; write_tensors fixes it, so the same
    tensors always make the same file (its order differed between runs before), which loads."""
    from safetensors import safe_open

    from lmladder.hf.weights import write_tensors

    tensors = {f"t{i}": torch.arange(i * 7, dtype=torch.float32) + i for i in range(1, 12)}
    files = [tmp_path / f"{k}.safetensors" for k in range(12)]
    for f in files:
        write_tensors(tensors, f)
    assert len({f.read_bytes() for f in files}) == 1
    assert files[0].read_bytes()[8:].startswith(b'{"__metadata__":{"format":"pt","lmladder.crc32":"')
    with safe_open(str(files[0]), "pt") as handle:
        assert all(torch.equal(handle.get_tensor(k), v) for k, v in tensors.items())


def test_an_export_whose_weights_changed_on_disk_is_refused(cli, runs, tmp_path):
    """model.safetensors carries a CRC-32 of its tensors (safetensors metadata, which transformers
    ignores): a byte changed in the tensors is an error when lmladder reads the folder, not a
    different model. A folder written by transformers itself has none and still loads (foreign)."""
    from safetensors import safe_open

    from lmladder.checkpoint import CRC_KEY

    folder = tmp_path / "hf"
    shutil.copytree(runs["char-hf"], folder)
    weights = folder / "model.safetensors"
    with safe_open(str(weights), "pt") as handle:
        assert handle.metadata()["format"] == "pt" and len(handle.metadata()[CRC_KEY]) == 8
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01  # the last byte of the last tensor
    weights.write_bytes(bytes(data))
    assert_error(cli("score", folder), "corrupt", "checksum")
    assert_error(cli("export", folder, "--format", "hf", "--out", tmp_path / "again"), "corrupt", "checksum")
    assert not (tmp_path / "again").exists()


@pytest.mark.parametrize("label", GPTS)
def test_init_source_gives_the_runs_weights(runs, label):
    from lmladder import hf
    from lmladder.gpt import GPT

    run = registry.load_model(runs[label])
    x = torch.tensor([run.prompt_units(PROMPT)])
    for source in (runs[label], runs[f"{label}-hf"]):
        config, state, tokenizer = hf.init_source(source)
        assert config == run.config.model and tokenizer.identity() == run.tokenizer.identity()
        assert "lm_head.weight" not in state  # tied to transformer.wte.weight
        model = GPT(config)
        missing, unexpected = model.load_state_dict(state, strict=False)
        assert missing == ["lm_head.weight"] and not unexpected
        with torch.no_grad():
            assert torch.equal(model.eval()(x), run.model(x))


def test_a_looped_export_comes_back_looped_unless_its_copies_differ(runs, tmp_path):
    """transformers' GPT-2 holds a looped GPT's blocks once a pass; read back, equal copies fold
    into the looped GPT again, and a folder whose copies were changed stays the GPT-2 it is."""
    from safetensors.torch import load_file, save_file

    from lmladder import hf

    assert json.loads((runs["looped-hf"] / "config.json").read_text())["n_layer"] == 4
    model = hf.load(runs["looped-hf"], "cpu").config.model
    assert (model.n_layer, model.n_loop) == (2, 2)
    tensors = load_file(runs["looped-hf"] / "model.safetensors")

    def read_back(name: str, change) -> Path:
        folder = tmp_path / name
        shutil.copytree(runs["looped-hf"], folder)
        save_file(change(dict(tensors)), folder / "model.safetensors", metadata={"format": "pt"})
        return folder

    def nudged(t):
        t["transformer.h.3.mlp.c_fc.weight"] = t["transformer.h.3.mlp.c_fc.weight"] + 0.01
        return t

    changed = read_back("changed", nudged)
    rung = hf.load(changed, "cpu")
    assert (rung.config.model.n_layer, rung.config.model.n_loop) == (4, 1)
    # a copy short of a tensor, or a block past config.json's 4, is not folded away: refused as a misfit
    short = read_back("short", lambda t: {k: v for k, v in t.items() if k != "transformer.h.3.mlp.c_fc.weight"})
    extra = read_back("extra", lambda t: {**t, **{k.replace("h.0.", "h.4."): v.clone() for k, v in t.items()
                                                  if k.startswith("transformer.h.0.")}})
    for folder in (short, extra):
        with pytest.raises(LadderError, match="do not fit"):
            hf.load(folder, "cpu")
    x = torch.tensor([rung.prompt_units(PROMPT)])
    with torch.no_grad():
        assert (rung.model(x) - _hf_model(changed)(x).logits).abs().max().item() < 1e-5


@pytest.mark.parametrize("n_loop", ["2", None, 0, 1000, 2.5])
def test_an_export_whose_recorded_config_was_edited_is_refused(cli, runs, tmp_path, n_loop):
    """lmladder.json's config, which a looped export is folded back by, is checked as a run's
    own: a string crashed the fold, and 0 or 1000 loaded silently as a 4-layer GPT."""
    folder = tmp_path / "edited"
    shutil.copytree(runs["looped-hf"], folder)
    marker = json.loads((folder / "lmladder.json").read_text())
    marker["source"]["config"]["model"]["n_loop"] = n_loop
    (folder / "lmladder.json").write_text(json.dumps(marker))
    assert_error(cli("score", folder), "lmladder.json holds a config that is not valid", "n_loop")


# --- GPT-2 folders lmladder did not write ---------------------------------------------------


@pytest.fixture(scope="module")
def foreign(runs, tmp_path_factory) -> Path:
    """A GPT-2 written by transformers itself (GPT-2's gelu_new, biases that are not zero, the
    padding-free vocabulary of the BPE tokenizer), as someone's downloaded weights would be."""
    transformers = transformers_lib()
    folder = tmp_path_factory.mktemp("foreign") / "gpt2"
    tokenizer_json = runs["bpe"] / "tokenizer" / "tokenizer.json"
    config = transformers.GPT2Config(vocab_size=300, n_positions=128, n_embd=32, n_layer=2, n_head=2,
                                     bos_token_id=0, eos_token_id=0, initializer_range=0.2)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.normal_(0, 0.2)
    model.save_pretrained(folder)
    transformers.PreTrainedTokenizerFast(tokenizer_file=str(tokenizer_json), bos_token="<|endoftext|>",
                                         eos_token="<|endoftext|>").save_pretrained(folder)
    return folder


def test_a_foreign_gpt2_keeps_its_biases_and_computes_the_same(foreign, tmp_path):
    from lmladder import hf

    rung = registry.load_model(foreign)
    model = _hf_model(foreign)
    assert rung.config.model.bias and rung.config.model.block_size == 128
    ids = rung.prompt_units(PROMPT * 3)
    with torch.no_grad():
        assert (rung.model(torch.tensor([ids])) - model(torch.tensor([ids])).logits).abs().max().item() < 1e-5
    ours = _greedy(rung, ids[:10], 100)  # large random weights: a varied sequence
    assert _their_greedy(model, ids[:10], 100) == ours and len(set(ours)) > 5
    assert registry.model_header(foreign) == {"kind": "gpt"}
    # GPT-2's own files: names without "transformer.", and the causal mask saved as attn.bias
    from safetensors.torch import load_file, save_file

    old = tmp_path / "old-layout"
    shutil.copytree(foreign, old)
    tensors = {k.removeprefix("transformer."): v for k, v in load_file(old / "model.safetensors").items()}
    tensors["h.0.attn.bias"] = torch.ones(1, 1, 128, 128)
    save_file(tensors, old / "model.safetensors", metadata={"format": "pt"})
    again = registry.load_model(old)
    with torch.no_grad():
        assert torch.equal(again.model(torch.tensor([ids])), rung.model(torch.tensor([ids])))
    config, state, _ = hf.init_source(old)
    assert config == rung.config.model and "transformer.h.0.attn.c_attn.bias" in state


def test_a_foreign_gpt2_exports_and_reads_back(cli, foreign, tmp_path):
    result = cli("export", foreign, "--format", "hf", "--out", tmp_path / "out")
    assert result.exit_code == 0, result
    ids = torch.tensor([[0, 5, 17, 200]])
    with torch.no_grad():
        # gelu_new becomes gelu_pytorch_tanh, lmladder's: the same function, to float32 rounding
        diff = _hf_model(foreign)(ids).logits - _hf_model(tmp_path / "out")(ids).logits
    assert diff.abs().max().item() < 1e-5
    assert "read by lmladder from a transformers folder" in (tmp_path / "out" / "README.md").read_text(encoding="utf-8")


# --- ARPA -------------------------------------------------------------------------------


def test_arpa_export_is_the_arpa_writer(cli, runs, tmp_path):
    from lmladder import arpa

    arpa.write(registry.load_model(runs["ngram"]), tmp_path / "old.arpa")
    result = cli("export", runs["ngram"], "--format", "arpa", "--out", tmp_path / "new.arpa", "--json")
    assert result.exit_code == 0, result
    assert (tmp_path / "new.arpa").read_bytes() == (tmp_path / "old.arpa").read_bytes()
    assert_error(cli("export", runs["ngram"], "--format", "arpa", "--out", tmp_path / "new.arpa"), "--force")
    assert cli("export", runs["ngram"], "--format", "arpa", "--out", tmp_path / "new.arpa", "--force").exit_code == 0


# --- bad input: one error line, exit 2, nothing written ----------------------------------


def _gpt2_folder(foreign: Path, tmp_path: Path, **config) -> Path:
    folder = tmp_path / "changed"
    shutil.copytree(foreign, folder)
    data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    (folder / "config.json").write_text(json.dumps({**data, **config}), encoding="utf-8")
    return folder


@pytest.mark.parametrize("case, fragments", [
    ("mlp", ["kind 'mlp'", "not a GPT"]),
    ("ngram", ["kind 'ngram'", "--format arpa"]),
    ("rotary", ["rotary", "learned position table"]),
    ("missing", ["not a folder"]),
    ("corrupt-weights", ["corrupt"]),
    ("corrupt-header", ["corrupt"]),
    ("arpa-of-a-gpt", ["kind 'gpt'", "--format hf"]),
    ("unknown-format", ["unknown --format"]),
])
def test_bad_sources_are_one_error(cli, runs, tmp_path, case, fragments):
    source, to = {"mlp": runs["mlp"], "ngram": runs["ngram"], "rotary": runs["rotary"],
                  "missing": tmp_path / "nowhere"}.get(case, runs["char"]), "hf"
    if case.startswith("corrupt"):
        source = tmp_path / "run"
        shutil.copytree(runs["char"], source)
        broken = source / ("best/model.safetensors" if case == "corrupt-weights" else "lmladder.json")
        broken.write_bytes(broken.read_bytes()[:100])
    to = {"arpa-of-a-gpt": "arpa", "unknown-format": "onnx"}.get(case, to)
    out = tmp_path / "out"
    assert_error(cli("export", source, "--format", to, "--out", out), *fragments)
    assert not out.exists() and not list(tmp_path.glob(".out*"))


@pytest.mark.parametrize("change, fragments", [
    ({"activation_function": "relu"}, ["activation 'relu'"]),
    ({"layer_norm_epsilon": 1e-6}, ["layer_norm_epsilon"]),
    ({"n_inner": 100}, ["n_inner=100"]),
    ({"model_type": "llama"}, ["llama", "GPT-2"]),
])
def test_gpt2_folders_lmladder_cannot_compute_are_one_error(cli, foreign, tmp_path, change, fragments):
    folder = _gpt2_folder(foreign, tmp_path, **change)
    assert_error(cli("export", folder, "--format", "hf", "--out", tmp_path / "out"), *fragments)
    assert not (tmp_path / "out").exists()


def test_the_output_folder_is_guarded(cli, runs, tmp_path):
    out = tmp_path / "out"
    assert cli("export", runs["char"], "--format", "hf", "--out", out).exit_code == 0
    assert_error(cli("export", runs["char"], "--format", "hf", "--out", out), "--force")
    replaced = cli("export", runs["bpe"], "--format", "hf", "--out", out, "--force")
    assert replaced.exit_code == 0, replaced
    assert json.loads((out / "lmladder.json").read_text(encoding="utf-8"))["source"]["run"] == "bpe"
    other = tmp_path / "other-run"
    shutil.copytree(runs["mlp"], other)
    assert_error(cli("export", runs["char"], "--format", "hf", "--out", other, "--force"), "another kind")
    assert sorted(p.name for p in other.iterdir()) == sorted(p.name for p in runs["mlp"].iterdir())
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine", encoding="utf-8")
    assert_error(cli("export", runs["char"], "--format", "hf", "--out", stranger, "--force"), "not written by lmladder")
