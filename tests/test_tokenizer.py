"""Tokenizers: exact round trips, determinism, the token cache, the CLI and its errors.

The tokenizers library itself is the oracle: a saved folder's tokenizer.json must load with
tokenizers.Tokenizer.from_file and give the same ids as lmladder's wrapper."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from lmladder import bpe, corpora, tokens
from lmladder.errors import LadderError
from tests.conftest import MIRROR, REPO, assert_error

VOCAB = 400


@pytest.fixture(scope="module")
def shakespeare(shared_home):
    with pytest.MonkeyPatch.context() as mp:  # module fixtures start before the autouse env
        mp.setenv("LMLADDER_HOME", str(shared_home))
        mp.setenv("LMLADDER_MIRROR", str(MIRROR))
        mp.setenv("LMLADDER_OFFLINE", "1")
        return corpora.load("tinyshakespeare")


@pytest.fixture(scope="module")
def bpe_dir(shakespeare, tmp_path_factory):
    splits = shakespeare.split()
    tok = bpe.train(splits["train"], bpe.BPESettings(VOCAB), shakespeare.identity(), str(splits.spec))
    out = tmp_path_factory.mktemp("tok") / "bpe"
    tok.save(out)
    return out


@pytest.fixture(scope="module")
def tok(bpe_dir):
    return tokens.load_tokenizer(bpe_dir)


# --- round trips ---------------------------------------------------------------------------


def test_round_trip_val_split(tok, shakespeare):
    for doc in shakespeare.split()["val"]:
        ids = tok.encode(doc)
        assert tok.decode(ids) == doc
        assert len(ids) < len(doc)  # merges happened


def random_text(rng: np.random.Generator, length: int) -> str:
    ranges = [
        (0x20, 0x7F), (0xA0, 0x250), (0x300, 0x370),  # ASCII, Latin, combining marks
        (0x370, 0x2000), (0x4E00, 0x9FFF), (0xAC00, 0xD7A4),  # Greek..., CJK, Hangul
        (0xE000, 0xFFFE), (0x1F300, 0x1FAFF), (0x10000, 0x110000),  # private use, emoji, astral
    ]
    out = []
    for _ in range(length):
        r = rng.integers(0, len(ranges) + 1)
        if r == len(ranges):
            out.append(rng.choice(list("\n\r\t \u00a0\u2028\u3000\u0085\x0b")))
        else:
            lo, hi = ranges[r]
            out.append(chr(int(rng.integers(lo, hi))))
    return "".join(out)


def test_round_trip_random_unicode(tok):
    rng = np.random.default_rng(4)
    texts = [random_text(rng, int(rng.integers(0, 60))) for _ in range(300)]
    for text, ids in zip(texts, tok.encode_batch(texts)):
        assert "\x00" not in text and tok.decode(ids) == text, repr(text)
        assert ids.max(initial=0) < tok.vocab_size and tok.eot_id not in ids


@pytest.mark.parametrize("text", [
    "", " ", "\n", "\n\n\n", "\t \r\n ", "\u3000\u2028", "   leading and trailing   ",
    "日本語のテキスト", "Straße ẞ ǅ", "e\u0301\u0302 combining", "🦄🏳️‍🌈 astral 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "literal <|endoftext|> stays text", "\r\n\r\nwindows\r\n",
])
def test_round_trip_unseen_empty_whitespace(tok, text):
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert tok.eot_id not in ids  # the special token is only ever inserted by id


def test_chunked_encoding_equals_library(tok, bpe_dir, shakespeare):
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(str(bpe_dir / "tokenizer.json"))
    train = shakespeare.split()["train"][0]
    assert len(tokens.chunks(train)) > 1
    assert "".join(tokens.chunks(train)) == train
    assert raw.encode(train).ids == tok.encode(train).tolist()
    assert raw.decode(raw.encode("To be, or not").ids) == "To be, or not"
    assert raw.get_vocab_size() == VOCAB and raw.token_to_id("<|endoftext|>") == tok.eot_id


@pytest.mark.parametrize("size", [7, 100, 5000])
def test_pieces_encode_exactly_like_the_whole(tok, shakespeare, size):
    rng = np.random.default_rng(size)
    atoms = ["\n", "\n\n", " ", "  ", "\t", "\r\n", "a", "Bc", "'s", "'ll", "12", "!?", "é", "\u3000", "\u2028", "\x1c"]
    texts = [shakespeare.split()["val"][0][:20000], "".join(rng.choice(atoms, 20000))]
    raw = tok.raw
    for text in texts:
        pieces = tokens.chunks(text, size)
        assert "".join(pieces) == text and len(pieces) > 2
        joined = [i for e in raw.encode_batch(pieces, add_special_tokens=False) for i in e.ids]
        assert joined == raw.encode(text, add_special_tokens=False).ids


def test_token_bytes_spell_the_tokens(tok):
    pieces = bpe.token_bytes(tok)
    assert len(pieces) == tok.vocab_size
    assert sorted(p for p in pieces if len(p) == 1) == [bytes([b]) for b in range(256)]
    ids = tok.encode("Whither wilt thou?")
    assert b"".join(pieces[i] for i in ids) == "Whither wilt thou?".encode()


# --- artifacts and determinism -----------------------------------------------------------


def test_same_corpus_and_settings_give_identical_tokenizer_json(cli, tmp_path, bpe_dir):
    for name in ("a", "b"):
        assert cli("tokenizer", "train", "tinyshakespeare", "--vocab-size", VOCAB, "--out", tmp_path / name).exit_code == 0
    a = (tmp_path / "a" / "tokenizer.json").read_bytes()
    assert a == (tmp_path / "b" / "tokenizer.json").read_bytes() == (bpe_dir / "tokenizer.json").read_bytes()
    # and in a fresh process (Rust hash maps are seeded per process)
    code = ("from lmladder import bpe, corpora; c = corpora.load('tinyshakespeare'); "
            f"import sys; sys.stdout.write(bpe.train(c.split()['train'], bpe.BPESettings({VOCAB})).hash)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout == tokens.load_tokenizer(tmp_path / "a").hash
    header = json.loads((tmp_path / "a" / "lmladder.json").read_text())
    assert header["format"] == "lmladder-tokenizer" and header["kind"] == "bpe"
    assert header["corpus"]["name"] == "tinyshakespeare" and header["split"] == "val:0.05,train:0.85,test:0.1"
    assert header["settings"] == {"vocab_size": VOCAB, "min_frequency": 2}
    assert header["sha256"] == tokens.load_tokenizer(tmp_path / "a").identity()["sha256"]


def test_char_tokenizer(shakespeare, tmp_path):
    ch = tokens.load_tokenizer("char", shakespeare)
    assert ch.kind == "char" and ch.eot_id == ch.vocab.size and ch.vocab_size == ch.vocab.size + 1
    ids = ch.encode("First Citizen:\n")
    assert ch.decode(ids) == "First Citizen:\n"
    unseen = ch.encode("a€b")
    assert unseen[1] == ch.vocab.escape_id and ch.decode(unseen) == "a\ufffdb"
    assert ch.spelling_logprob(unseen)[1] < -13 and ch.spelling_logprob(unseen)[0] == 0
    ch.save(tmp_path / "char")
    again = tokens.load_tokenizer(tmp_path / "char")
    assert again.identity() == ch.identity() and again.vocab.chars == ch.vocab.chars
    assert json.loads((tmp_path / "char" / "lmladder.json").read_text())["kind"] == "char"


def test_bpe_interface(tok, tmp_path):
    assert tok.kind == "bpe" and tok.vocab_size == VOCAB
    ids = tok.encode("hello")
    assert ids.dtype == np.int64 and np.all(tok.spelling_logprob(ids) == 0)
    assert tok.decode(np.concatenate([[tok.eot_id], ids])) == "hello"
    tok.save(tmp_path / "copy")
    assert tokens.load_tokenizer(tmp_path / "copy").identity() == tok.identity()


# --- the token cache ------------------------------------------------------------------------


def test_encoded_split_is_cached_and_keyed(tok, shakespeare, monkeypatch, fresh_home):
    first = tokens.encoded_split(tok, shakespeare, None, "val")
    assert isinstance(first, np.memmap) and first.dtype == np.uint16
    assert first[0] == tok.eot_id and int((first == tok.eot_id).sum()) == 1
    assert np.array_equal(first[1:], tok.encode(shakespeare.split()["val"][0]))
    files = sorted(p.name for p in (fresh_home / "cache" / "tokens").iterdir())
    assert len(files) == 2  # the .npy and its description

    def boom(*args, **kwargs):
        raise AssertionError("encoded again instead of reusing the cache")

    with monkeypatch.context() as patch:
        patch.setattr(type(tok), "encode_batch", boom)
        again = tokens.encoded_split(tok, "tinyshakespeare", "val:0.05,train:0.85,test:0.1", "val")
    assert np.array_equal(first, again)
    test = tokens.encoded_split(tok, shakespeare, None, "test")  # another split, another key
    assert not np.array_equal(test[: len(first)], first[: len(test)])
    other = tokens.encoded_split(tokens.load_tokenizer("char", shakespeare), shakespeare, None, "val")
    assert len(other) == len(shakespeare.split()["val"][0]) + 1  # another tokenizer, another key
    assert len(list((fresh_home / "cache" / "tokens").glob("*.npy"))) == 3


def test_encoded_split_puts_eot_before_every_document(tok, tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(6):
        (folder / f"{i}.txt").write_text(f"document {i}\nwith two lines\n" * (i + 1))
    ids = tokens.encoded_split(tok, str(folder), "0.5,0.5,0", "train")
    docs = corpora.load(str(folder)).split("0.5,0.5,0")["train"]
    assert int((ids == tok.eot_id).sum()) == len(docs) and ids[0] == tok.eot_id
    assert tok.decode(ids) == "".join(docs)


# --- the command line -------------------------------------------------------------------


@pytest.mark.parametrize("args", [(), ("train",), ("encode",), ("decode",), ("stats",)])
def test_help(cli, args):
    result = cli("tokenizer", *args, "--help")
    assert result.exit_code == 0 and "Usage" in result.stdout


def test_cli_encode_decode_stats(cli, bpe_dir, tmp_path):
    result = cli("tokenizer", "encode", bpe_dir, "Hello wörld 🎉", "--json")
    assert result.exit_code == 0, result
    data = json.loads(result.stdout)
    assert data["chars"] == 13 and len(data["ids"]) == len(data["tokens"])
    ids_file = tmp_path / "ids.json"
    ids_file.write_text(result.stdout)
    result = cli("tokenizer", "decode", bpe_dir, "--file", ids_file)
    assert result.exit_code == 0 and result.stdout == "Hello wörld 🎉"
    result = cli("tokenizer", "decode", bpe_dir, *map(str, data["ids"]), "--json")
    assert json.loads(result.stdout)["text"] == "Hello wörld 🎉"
    text_file = tmp_path / "in.txt"
    text_file.write_text("To be, or not to be\n")
    result = cli("tokenizer", "encode", bpe_dir, "--file", text_file)
    assert result.exit_code == 0 and "tokens for 20 characters" in result.stdout
    ids_file.write_text(result.stdout.splitlines()[1])  # whitespace-separated ids
    assert cli("tokenizer", "decode", bpe_dir, "-f", ids_file).stdout == "To be, or not to be\n"
    result = cli("tokenizer", "stats", bpe_dir, "tinyshakespeare", "--json")
    assert result.exit_code == 0, result
    stats = json.loads(result.stdout)
    assert stats["on"] == "val" and stats["chars"] == 55793 and 1.5 < stats["chars_per_token"] < 3
    assert stats["bytes_per_token"] == stats["chars_per_token"]  # ASCII
    assert 0 < stats["vocab_used_share"] <= 1 and stats["tokens_per_word"] > 1
    assert len(stats["longest_tokens"]) == 10 and stats["longest_tokens"][0]["bytes"] >= 4
    table = cli("tokenizer", "stats", bpe_dir, "tinyshakespeare")
    assert table.exit_code == 0 and "chars_per_token" in table.stdout and "longest tokens" in table.stdout


def test_cli_char_kind(cli, tmp_path):
    result = cli("tokenizer", "train", "tinyshakespeare", "--kind", "char", "--out", tmp_path / "c", "--json")
    assert result.exit_code == 0, result
    assert json.loads(result.stdout)["vocab_size"] == 67
    result = cli("tokenizer", "encode", tmp_path / "c", "abc€", "--json")
    data = json.loads(result.stdout)
    assert data["tokens"][-1] == "<esc>"
    assert cli("tokenizer", "decode", tmp_path / "c", *map(str, data["ids"][:3])).stdout == "abc"
    stats = json.loads(cli("tokenizer", "stats", tmp_path / "c", "--json").stdout)
    assert stats["chars_per_token"] == 1.0


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize("size", ["256", "100", str(2**32 + 1)])
def test_bad_vocab_size(cli, tmp_path, size):
    assert_error(cli("tokenizer", "train", "--vocab-size", size, "--out", tmp_path / "t"), "--vocab-size", "257")
    assert not (tmp_path / "t").exists()


def test_bad_options(cli, tmp_path, bpe_dir):
    assert_error(cli("tokenizer", "train", "--min-frequency", "0", "--out", tmp_path / "t"), "--min-frequency")
    assert_error(cli("tokenizer", "train", "--kind", "wordpiece", "--out", tmp_path / "t"), "--kind")
    assert_error(cli("tokenizer", "train", "--kind", "char", "--vocab-size", "300", "--out", tmp_path / "t"),
                 "--vocab-size", "--kind bpe")
    assert_error(cli("tokenizer", "encode", bpe_dir), "--file")
    assert_error(cli("tokenizer", "decode", bpe_dir, "1", "x"), "whole numbers")
    assert_error(cli("tokenizer", "decode", bpe_dir, str(VOCAB)), "outside", str(VOCAB - 1))
    assert_error(cli("tokenizer", "encode", tmp_path / "nowhere", "hi"), "not a folder")
    assert_error(cli("tokenizer", "encode", tmp_path, "hi"), "not an lmladder tokenizer")


def test_empty_train_split():
    with pytest.raises(LadderError, match="train split is empty"):
        bpe.train(["", ""], bpe.BPESettings(300))


def test_missing_or_corrupt_tokenizer_json(cli, bpe_dir, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(bpe_dir, broken)
    (broken / "tokenizer.json").unlink()
    assert_error(cli("tokenizer", "encode", broken, "hi"), "tokenizer.json is missing")
    (broken / "tokenizer.json").write_text('{"version": "1.0", "model": ')
    assert_error(cli("tokenizer", "encode", broken, "hi"), "tokenizer.json is corrupt")
    # corrupt but with a matching checksum: the library refuses it
    header = json.loads((broken / "lmladder.json").read_text())
    header["sha256"] = tokens._sha256((broken / "tokenizer.json").read_bytes())
    (broken / "lmladder.json").write_text(json.dumps(header))
    assert_error(cli("tokenizer", "decode", broken, "1"), "tokenizer.json is corrupt")
    (broken / "lmladder.json").write_text("{not json")
    assert_error(cli("tokenizer", "stats", broken), "corrupt")
