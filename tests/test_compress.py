"""Every rung is a compressor (lmladder.compress): for each saved kind, trained at toy size,
a text with characters it never saw compresses and decompresses byte for byte, into about
bits/char x chars / 8 bytes; another run, a corrupt or truncated file, a file lmladder did not
make and a non-UTF-8 input are refused with one error line and nothing written."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import MIRROR, REPO, assert_error, plays, train_recipes
from tests.test_contract import RECIPES

UNSEEN = "Ωé漢😀\u2028 zzyzx Qwertyuiop\r\n\ufeff¿"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return plays(tmp_path_factory.mktemp("compress"), 40_000)


@pytest.fixture(scope="module")
def runs(corpus, tmp_path_factory) -> dict[str, Path]:
    """Every recipe of the contract tests, trained once in this module's own home."""
    return train_recipes(tmp_path_factory.mktemp("runs"), corpus, {label: args for label, (_, args) in RECIPES.items()})


@pytest.fixture(scope="module")
def text_file(tmp_path_factory) -> Path:
    """Held-out text (the end of the play, which the toy runs never saw) and unseen characters."""
    path = tmp_path_factory.mktemp("text") / "held-out.txt"
    held = (MIRROR / "tinyshakespeare.txt").read_text(encoding="utf-8")[-2500:]
    path.write_bytes((held[:1200] + UNSEEN + held[1200:] + UNSEEN).encode("utf-8"))
    return path


def _header_bytes(path: Path) -> int:
    """What the file spends besides the coded stream: magic, length, header and CRC."""
    data = path.read_bytes()
    return 8 + 4 + struct.unpack("<I", data[8:12])[0] + 4


@pytest.mark.parametrize("label", RECIPES)
def test_round_trip_within_the_bound(cli, runs, text_file, tmp_path, label):
    from lmladder import metrics, registry

    packed, back = tmp_path / "t.llz", tmp_path / "t.txt"
    made = cli("compress", runs[label], text_file, "--out", packed, "--json")
    assert made.exit_code == 0, made
    again = cli("decompress", packed, "--out", back, "--json")
    assert again.exit_code == 0, again
    assert back.read_bytes() == text_file.read_bytes()
    text = text_file.read_bytes().decode("utf-8")
    bits = metrics.evaluate(registry.load_model(runs[label]), [text]).bits_per_char
    header = _header_bytes(packed)
    assert header < 700
    # the range coder ends on whole 32-bit words and flushes its state: ~24 bits, part of the fixed cost
    assert packed.stat().st_size - header <= bits * len(text) / 8 * 1.005 + 16, (label, bits)
    assert json.loads(made.stdout)["compressed_bytes"] == packed.stat().st_size


@pytest.mark.parametrize("label", ["ngram-char", "ngram-word", "gpt-char", "mlp"])
def test_many_blocks_round_trip(cli, runs, text_file, tmp_path, label):
    """Short blocks, decoded side by side (the last one shorter), give the text back too."""
    packed, back = tmp_path / "t.llz", tmp_path / "t.txt"
    assert cli("compress", runs[label], text_file, "--out", packed, "--block", "97").exit_code == 0
    assert cli("decompress", packed, "--out", back).exit_code == 0
    assert back.read_bytes() == text_file.read_bytes()


def test_the_library_on_every_smoothing_and_a_small_budget(corpus):
    """Add-k, mle and Kneser-Ney, with the short contexts tabulated or not, code the same way
    on both sides."""
    from lmladder import compress
    from lmladder.compress import ngram, streams
    from lmladder.ngram import NgramConfig, train

    docs = [corpus.read_text(encoding="utf-8")[:20_000]]
    text = corpus.read_text(encoding="utf-8")[-3000:] + UNSEEN
    for config in (NgramConfig(unit="char", order=5, smoothing="addk"), NgramConfig(unit="char", order=3, smoothing="mle"),
                   NgramConfig(unit="word", order=3, smoothing="addk", min_count=2), NgramConfig(unit="char", order=1)):
        model = train(config, docs)
        assert compress.decompress(compress.compress(model, text, block=500), model) == text
        for budget in (1 << 12, ngram.DENSE_BYTES):
            coder = ngram.NgramCoder(model, budget)
            enc = streams.encoder()
            params = coder.encode(text, enc, 700)
            assert coder.decode(dict(params, chars=len(text)), streams.decoder(enc.get_compressed())) == text


def test_empty_file(cli, runs, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    for label in ("unigram", "ngram-char", "gpt-bpe"):
        assert cli("compress", runs[label], empty, "--force").exit_code == 0
        assert cli("decompress", tmp_path / "empty.txt.llz", "--out", tmp_path / "back.txt", "--force").exit_code == 0
        assert (tmp_path / "back.txt").read_bytes() == b""


def test_another_run_is_refused(cli, runs, text_file, tmp_path):
    packed = tmp_path / "t.llz"
    assert cli("compress", runs["unigram"], text_file, "--out", packed).exit_code == 0
    for other in ("uniform", "ngram-char", "gpt-char"):
        result = cli("decompress", packed, "--run", runs[other], "--out", tmp_path / "x.txt")
        assert_error(result, "another run")
        assert not (tmp_path / "x.txt").exists()


def test_the_recorded_run_is_found_and_a_missing_one_named(cli, runs, text_file, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(runs["ngram-char"], run)
    packed = tmp_path / "held-out.txt.llz"
    assert cli("compress", run, text_file, "--out", packed).exit_code == 0
    assert cli("decompress", packed).exit_code == 0  # FILE.llz -> FILE, with the run it names
    assert (tmp_path / "held-out.txt").read_bytes() == text_file.read_bytes()
    assert_error(cli("decompress", packed), "already exists", "--force")
    shutil.rmtree(run)
    assert_error(cli("decompress", packed, "--force"), "not there now", "--run")


def test_bad_files_are_refused_and_nothing_is_written(cli, runs, text_file, tmp_path):
    packed = tmp_path / "t.llz"
    assert cli("compress", runs["ngram-word"], text_file, "--out", packed).exit_code == 0
    data = packed.read_bytes()
    out = tmp_path / "out.txt"
    cases = {
        "flipped.llz": (data[:200] + bytes([data[200] ^ 0x10]) + data[201:], "corrupt"),
        "truncated.llz": (data[: len(data) // 2], "corrupt or truncated"),
        "tiny.llz": (data[:10], "truncated"),
        "foreign.llz": (b"PK\x03\x04 not a compressed text", "not a file lmladder compressed"),
    }
    for name, (content, fragment) in cases.items():
        (tmp_path / name).write_bytes(content)
        assert_error(cli("decompress", tmp_path / name, "--run", runs["ngram-word"], "--out", out), fragment)
        assert not out.exists()
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("café".encode("latin-1"))
    assert_error(cli("compress", runs["unigram"], latin), "not valid UTF-8")
    assert not (tmp_path / "latin1.txt.llz").exists()
    assert_error(cli("compress", runs["unigram"], text_file, "--out", packed), "already exists")
    assert_error(cli("compress", runs["unigram"], tmp_path / "missing.txt", "--out", tmp_path / "m.llz"), "does not exist")
    assert_error(cli("compress", tmp_path, text_file, "--out", tmp_path / "m.llz"), "not an lmladder model")
    assert_error(cli("compress", runs["unigram"], text_file, "--out", text_file), "input file")
    assert not (tmp_path / "m.llz").exists()


def test_neural_arithmetic_is_the_same_in_another_process(runs, text_file, tmp_path):
    """Compressed by a separate lmladder process, decompressed here."""
    from lmladder import compress, registry

    packed = tmp_path / "t.llz"
    made = subprocess.run([sys.executable, "-m", "lmladder", "compress", str(runs["gpt-char"]), str(text_file),
                           "--out", str(packed), "--threads", "1", "--device", "cpu"], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    header, _ = compress.read(packed.read_bytes())
    assert header["made_on"]["device"] == "cpu" and header["made_on"]["threads"] == 1
    rung = registry.load_model(runs["gpt-char"])
    assert compress.decompress(packed.read_bytes(), rung) == text_file.read_bytes().decode("utf-8")


def test_help(cli):
    for command in ("compress", "decompress"):
        result = cli(command, "--help")
        assert result.exit_code == 0 and "--out" in result.stdout


def test_bench_reports_the_compressed_test_split(cli, corpus, tmp_path):
    ladder = tmp_path / "ladder.toml"
    ladder.write_text('[[rung]]\nname = "unigram"\nkind = "unigram"\n\n'
                      '[[rung]]\nname = "letter 3-gram KN"\nkind = "ngram"\nunit = "char"\norder = 3\n\n'
                      '[[rung]]\nname = "gzip"\nkind = "compressor"\nmethod = "gzip"\n')
    result = cli("bench", corpus, "--ladder", ladder, "--compress", "--json", "--out", tmp_path / "bench")
    assert result.exit_code == 0, result
    rows = {r["rung"]: r for r in json.loads(result.stdout)["results"]}
    for name, row in rows.items():
        assert row["compressed_bytes"] > 0 and row["compress_seconds"] >= 0, name
    model = rows["letter 3-gram KN"]
    assert model["compressed_bytes"] * 8 <= model["bits_per_char"] * model["chars"] * 1.005 + 8 * 700
    assert "file bits/char" in (tmp_path / "bench" / "results.md").read_text()
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "bench" / "results.parquet").to_pylist()  # the sizes are in the Parquet too
    assert {r["rung"]: r["compressed_bytes"] for r in table} == {k: r["compressed_bytes"] for k, r in rows.items()}
    plain = json.loads(cli("bench", corpus, "--ladder", ladder, "--json").stdout)  # cached, without the files
    assert all("compressed_bytes" not in r for r in plain["results"])


# -- a corrupt header or payload whose CRC-32 still matches (edited, the CRC computed again) ----

CORRUPT_FIELDS = {  # a case: the header fields it sets ("part.field": value)
    "units-float": {"coding.units": 1e15},
    "units-huge": {"coding.units": 10**15},
    "units-and-text-agree": {"coding.units": 2**39, "text.chars": 2**39, "text.bytes": 2**39},
    "block-zero": {"coding.block": 0},
    "block-huge": {"coding.block": 1e15},
    "path-a-number": {"run.path": 5},
    "another-kind": {"run.kind": "uniform"},
}
IN_A_PROCESS_OF_ITS_OWN = ("units-float", "units-huge", "units-and-text-agree")  # unigram: constriction's own
# allocation, which aborts the process where it fails


def _edited(packed: Path, target: Path, fields: dict | None = None, payload: bytes | None = None) -> Path:
    """`packed` with header `fields` set (or its payload replaced) and a CRC-32 that matches."""
    from lmladder import compress

    header, words = compress.read(packed.read_bytes())
    for key, value in (fields or {}).items():
        part, name = key.split(".")
        header[part][name] = value
    target.write_bytes(compress.pack(header, words if payload is None else payload))
    return target


@pytest.mark.parametrize("label", ["unigram", "ngram-char", "ngram-word", "gpt-char", "mlp", "gpt-bpe"])
def test_a_corrupt_header_with_a_good_crc_is_refused(cli, runs, text_file, tmp_path, label):
    """Every field is checked (type, range, against the text's size, the payload's and the run)
    before anything is allocated, and the range coder's own failures on a payload that does not
    fit its model are one error: exit 2, nothing written."""
    packed, out = tmp_path / "t.llz", tmp_path / "out.txt"
    assert cli("compress", runs[label], text_file, "--out", packed).exit_code == 0
    for case, fields in CORRUPT_FIELDS.items():
        if label == "unigram" and case in IN_A_PROCESS_OF_ITS_OWN:
            continue
        if label == "unigram" and case == "another-kind":
            fields = {"run.kind": "ngram"}
        bad = _edited(packed, tmp_path / f"{case}.llz", fields)
        result = cli("decompress", bad, "--out", out)
        assert_error(result, "corrupt", *[key for key in fields if key != "text.chars" and key != "text.bytes"])
        assert not out.exists(), case
    words = len(packed.read_bytes()) - _header_bytes(packed)
    bad = _edited(packed, tmp_path / "payload.llz", payload=b"\xff" * words)
    assert_error(cli("decompress", bad, "--out", out), "corrupt")
    assert not out.exists()


def test_a_unit_count_no_payload_could_hold_is_refused_before_the_coder_allocates(cli, runs, text_file, tmp_path):
    """A unigram file claiming 10^15 characters (or 2^39, with a text size to match) is refused
    from its header and payload size: constriction would abort the process asking for the memory
    (so each runs in a process of its own)."""
    packed, out = tmp_path / "t.llz", tmp_path / "out.txt"
    assert cli("compress", runs["unigram"], text_file, "--out", packed).exit_code == 0
    for case in IN_A_PROCESS_OF_ITS_OWN:
        bad = _edited(packed, tmp_path / f"{case}.llz", CORRUPT_FIELDS[case])
        result = subprocess.run([sys.executable, "-m", "lmladder", "decompress", str(bad), "--out", str(out)],
                                cwd=REPO, capture_output=True, text=True, timeout=120)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), (case, result)
        assert "corrupt" in lines[0] and "coding.units" in lines[0], lines
        assert case != "units-and-text-agree" or "payload" in lines[0], lines
        assert not out.exists()


def test_a_one_pass_gpt_keeps_the_digest_its_files_were_made_with():
    """A .llz names its model by a digest of its config and weights; a config field added since
    (n_loop) must not change the digest of a GPT that goes through its blocks once, or files made
    before could not be decompressed. The value is the one lmladder computed before n_loop (10c3607)."""
    torch = pytest.importorskip("torch")
    from lmladder.compress.neural import NeuralCoder
    from lmladder.config import TrainConfig
    from lmladder.gpt import GPT, GPTConfig
    from lmladder.neural import NeuralRung
    from lmladder.tokens import CharTokenizer
    from lmladder.vocab import CharVocab

    tok = CharTokenizer(CharVocab.from_texts(["a small text, for a digest"]))
    model = GPT(GPTConfig(block_size=8, vocab_size=64, n_layer=1, n_head=2, n_embd=8))
    with torch.no_grad():  # weights that depend on no random generator
        for i, p in enumerate(model.parameters()):
            p.copy_(torch.arange(p.numel(), dtype=torch.float32).reshape(p.shape) / (i + 7))
    rung = NeuralRung(model, tok, TrainConfig("gpt", model.config), "cpu")
    assert NeuralCoder(rung, "cpu").digest() == "dd8a9ad643744522c62cb8be556dde09a95d4d99b5eb82bd0e01624412c3abb8"
    looped = NeuralRung(model, tok, TrainConfig("gpt", GPTConfig(**{**vars(model.config), "n_loop": 2})), "cpu")
    assert NeuralCoder(looped, "cpu").digest() != NeuralCoder(rung, "cpu").digest()  # another function
