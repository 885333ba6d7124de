"""Bad input to tokenizer, sample, tour and compress is refused up front: one `error:` line,
exit code 2, a message that names the problem (stdin held to the checks files are, token ids
that are not ids, empty input, missing files named as files, absurd sizes, a --gpt that is not
a usable GPT, a thread count the machine cannot run)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import assert_error, plays, train_recipes

TOY = ["--max-steps", "2", "--eval-interval", "2", "--device", "cpu", "--seed", "3"]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """Toy artifacts in this module's own home: a BPE and a char tokenizer, a unigram, a letter
    3-gram and a tiny GPT, all of a 20,000-character corpus."""
    root = tmp_path_factory.mktemp("limits")
    corpus = plays(root, 20_000)
    recipes = {
        "char-tok": ["tokenizer", "train", "{corpus}", "--kind", "char", "--out", "{out}"],
        "unigram": ["train", "{corpus}", "--model", "unigram", "--out", "{out}"],
        "ngram3": ["ngram", "train", "{corpus}", "--order", "3", "--out", "{out}"],
        "gpt": ["train", "{corpus}", "--preset", "gpt-tiny", "--block-size", "16", *TOY, "--out", "{out}"],
    }
    out = train_recipes(root, corpus, recipes)
    return {**out, "bpe-tok": root / "bpe-tokenizer", "corpus": corpus}


def _file(folder: Path, name: str, content: bytes) -> Path:
    path = folder / name
    path.write_bytes(content)
    return path


# --- 1. standard input gets the checks a file gets --------------------------------------------


@pytest.mark.parametrize("tok", ["bpe-tok", "char-tok"])
def test_stdin_is_checked_like_a_file(built, tok):
    from typer.testing import CliRunner

    from lmladder.cli import app

    def encode(data: bytes):
        return CliRunner().invoke(app, ["tokenizer", "encode", str(built[tok]), "-f", "-"], input=data)

    assert_error(encode(b"caf\xe9"), "standard input", "not valid UTF-8")
    assert_error(encode(b"ab\x00cd"), "standard input", "binary")
    assert_error(encode(bytes(range(256)) * 4), "standard input", "binary")
    assert_error(encode(b""), "standard input", "empty")
    good = encode("café\n".encode("utf-8"))
    assert good.exit_code == 0 and "tokens for 5 characters" in good.stdout


# --- 2. decode takes token ids and nothing else ------------------------------------------------


@pytest.mark.parametrize("content, fragments", [
    ("[1e400]", ["item 1", "Infinity", "not a token id"]),
    ('{"a": 1}', ['without an "ids" list']),
    ("[true, 2]", ["item 1", "true", "not a token id"]),
    ("[3, 2.0]", ["item 2", "2.0", "not a token id"]),
    ('[3, "4"]', ["item 2", '"4"', "not a token id"]),
    ("[5, -3]", ["item 2", "-3", "negative"]),
    ("[[1]]", ["item 1", "not a token id"]),
    ('"12"', ["item 1", '"12"', "not a token id"]),
    ("[1, 2", ["not valid JSON"]),
    ("[]", ["no token ids"]),
    ("[299, 300]", ["item 2", "300", "outside", "0..299"]),
    ("1 2 x", ["item 3", "(x)", "whole numbers"]),
])
def test_decode_refuses_what_is_not_a_token_id(cli, built, tmp_path, content, fragments):
    ids = _file(tmp_path, "ids.txt", content.encode())
    assert_error(cli("tokenizer", "decode", built["bpe-tok"], "-f", ids), *fragments)


def test_decode_arguments(cli, built):
    tok = built["bpe-tok"]
    assert_error(cli("tokenizer", "decode", tok), "give the token ids")
    assert_error(cli("tokenizer", "decode", tok, "-1"), "-1", "negative")
    assert_error(cli("tokenizer", "decode", tok, "--", "-1"), "-1", "negative")
    assert_error(cli("tokenizer", "decode", tok, "72", "--jsn"), "--jsn", "not a token id", "option")
    assert_error(cli("tokenizer", "decode", tok, "9" * 40), "outside", "0..299")
    encoded = json.loads(cli("tokenizer", "encode", tok, "To be", "--json").stdout)
    assert cli("tokenizer", "decode", tok, *map(str, encoded["ids"])).stdout == "To be"


# --- 3. empty input ----------------------------------------------------------------------------


def test_empty_input_is_refused(cli, built, tmp_path):
    empty = _file(tmp_path, "empty.txt", b"")
    blank = _file(tmp_path, "blank.txt", b" \n\t\n")
    assert_error(cli("tokenizer", "encode", built["bpe-tok"], "-f", empty), "empty.txt is empty")
    assert_error(cli("tokenizer", "encode", built["bpe-tok"], ""), "text is empty")
    assert_error(cli("tokenizer", "decode", built["bpe-tok"], "-f", empty), "empty.txt is empty")
    assert_error(cli("tokenizer", "decode", built["bpe-tok"], "-f", blank), "no token ids")
    assert_error(cli("sample", built["unigram"], "--prompt-file", empty), "--prompt-file", "empty")


# --- 4. a missing file is a missing file, not a corpus -----------------------------------------


def test_missing_files_are_named_as_files(cli, built, tmp_path):
    missing = tmp_path / "missing.txt"
    for args in (("sample", built["unigram"], "--prompt-file", missing),
                 ("compress", built["unigram"], missing, "--out", tmp_path / "m.llz"),
                 ("decompress", tmp_path / "missing.llz", "--out", tmp_path / "back.txt"),
                 ("tokenizer", "encode", built["bpe-tok"], "-f", missing),
                 ("tokenizer", "decode", built["bpe-tok"], "-f", missing)):
        result = cli(*args)
        assert_error(result, "does not exist")
        assert "corpus" not in result.stderr, result


# --- 5. absurd sizes are refused before any work -----------------------------------------------


def test_absurd_sample_sizes(cli, built):
    big = "99999999999999999999"
    assert_error(cli("sample", built["ngram3"], "--max-new-chars", big), "--max-new-chars", "at most 100,000,000")
    assert_error(cli("sample", built["ngram3"], "--max-new-tokens", str(10**8 + 1)), "--max-new-tokens",
                 "at most 100,000,000")
    assert_error(cli("sample", built["unigram"], "--num-samples", "100000000"), "--num-samples", "at most 10,000")
    ok = cli("sample", built["unigram"], "--num-samples", "3", "--max-new-chars", "5", "--json")
    assert ok.exit_code == 0 and len(json.loads(ok.stdout)) == 3


def test_absurd_tour_length(cli, built):
    result = cli("tour", built["corpus"], "--length", "99999999999999999999")
    assert_error(result, "--length", "100,000")
    assert result.stdout == ""


# --- 6. tour checks its options before it prints anything --------------------------------------


def test_tour_gpt_must_be_a_gpt(cli, built):
    result = cli("tour", built["corpus"], "--gpt", built["unigram"], "--length", "5")
    assert_error(result, "--gpt", "unigram", "not a GPT")
    assert result.stdout == ""


def test_tour_corrupt_gpt_fails_before_printing(cli, built, tmp_path):
    corrupt = tmp_path / "broken"
    shutil.copytree(built["gpt"], corrupt)
    for weights in corrupt.rglob("model.safetensors"):
        weights.write_bytes(weights.read_bytes()[:1000])
    result = cli("tour", built["corpus"], "--gpt", corrupt, "--length", "5")
    assert_error(result, "--gpt", "corrupt")
    assert result.stdout == ""


def test_tour_force_needs_out(cli, built):
    result = cli("tour", built["corpus"], "--force", "--length", "5")
    assert_error(result, "--force", "--out")
    assert result.stdout == ""


# --- 7. threads within what the machine can run ------------------------------------------------


def test_compress_threads_bound(cli, built, tmp_path):
    from lmladder.runtime import thread_limit

    most, cores = thread_limit()
    text = _file(tmp_path, "t.txt", b"To be, or not to be\n")
    out = tmp_path / "t.llz"
    assert_error(cli("compress", built["gpt"], text, "--threads", "100000", "--device", "cpu", "--out", out),
                 "--threads", f"between 1 and {most}", f"{cores} usable cores")
    assert_error(cli("compress", built["gpt"], text, "--threads", "0", "--out", out), "--threads")
    assert not out.exists()
    assert cli("compress", built["gpt"], text, "--threads", str(min(most, 2)), "--device", "cpu", "--out", out).exit_code == 0
    assert cli("decompress", out, "--out", tmp_path / "back.txt").exit_code == 0
    assert (tmp_path / "back.txt").read_bytes() == text.read_bytes()


def test_decompress_refuses_an_absurd_recorded_thread_count(cli, built, tmp_path):
    from lmladder import compress

    text = _file(tmp_path, "t.txt", b"To be, or not to be\n")
    out = tmp_path / "t.llz"
    assert cli("compress", built["gpt"], text, "--device", "cpu", "--out", out).exit_code == 0
    header, payload = compress.read(out.read_bytes())
    header["made_on"]["threads"] = 100_000
    _file(tmp_path, "bad.llz", compress.pack(header, payload))
    assert_error(cli("decompress", tmp_path / "bad.llz", "--out", tmp_path / "back.txt"), "100000", "threads",
                 "corrupt")
