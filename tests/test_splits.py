"""Deterministic splits: sizes, cut positions, documents, bad specs."""

from __future__ import annotations

import pytest

from lmladder import corpora
from lmladder.errors import LadderError
from lmladder.splits import SplitSpec, split_documents


def test_tinyshakespeare_splits_cover_the_text_in_order():
    corpus = corpora.load("tinyshakespeare")
    text = corpus.documents[0]
    s = corpus.split()
    assert "".join(s["val"] + s["train"] + s["test"]) == text  # val first, test last
    again = corpus.split("val:0.05,train:0.85,test:0.1")
    assert again.parts == s.parts
    for part in s.parts.values():
        assert part[0].endswith("\n")  # whole lines
    assert len(text) - len(s["test"][0]) == 1_003_856  # the KenLM fixtures' test text, nanoGPT's val


def test_kenlm_fixture_cut_and_nanogpt_exact_cut():
    text = corpora.load("tinyshakespeare").documents[0]
    lines = corpora.load("tinyshakespeare").split("0.9,0.1,0")
    assert len(lines["train"][0]) == 1_003_856  # the KenLM fixtures' cut
    assert lines["test"] == []
    exact = corpora.load("tinyshakespeare").split("0.9,0.1,0@char")
    n = len(text)
    assert exact["train"][0] == text[: int(n * 0.9)] and exact["val"][0] == text[int(n * 0.9):]


def test_small_text_by_hand():
    text = "a\nbb\nccc\ndddd\n"  # 14 chars; the lines end at 2, 5, 9 and 14
    s = split_documents(["t"], [text], "0.3,0.3,0.4")
    # cut 1: int(0.3 * 14) = 4, the "\n" of line 2 -> 5; cut 2: int(0.6 * 14) = 8, end of line 3 -> 9
    assert (s["train"], s["val"], s["test"]) == (["a\nbb\n"], ["ccc\n"], ["dddd\n"])
    exact = split_documents(["t"], [text], "0.3,0.3,0.4@char")
    assert (exact["train"], exact["val"], exact["test"]) == (["a\nbb"], ["\nccc"], ["\ndddd\n"])
    # the same fractions, named in the text's order: val first
    named = split_documents(["t"], [text], "val:0.3,train:0.3,test:0.4")
    assert (named["val"], named["train"], named["test"]) == (["a\nbb\n"], ["ccc\n"], ["dddd\n"])
    assert str(named.spec) == "val:0.3,train:0.3,test:0.4"
    assert split_documents(["t"], [text], "train:0.3,val:0.3,test:0.4").parts == s.parts
    # a cut that runs to the end leaves test empty, which is an error when test was asked for
    with pytest.raises(LadderError, match="test split empty"):
        split_documents(["t"], [text], "0.3,0.4,0.3")


def test_documents_stay_whole_and_are_deterministic():
    names = [f"doc{i}.txt" for i in range(20)]
    docs = [f"document {i}\n" * (i + 1) for i in range(20)]
    a = split_documents(names, docs, "0.8,0.1,0.1")
    b = split_documents(list(reversed(names)), list(reversed(docs)), "0.8,0.1,0.1")
    assert sorted(a.names["test"]) == sorted(b.names["test"])
    assert sorted(sum(a.parts.values(), [])) == sorted(docs)
    assert all(a.parts[k] for k in ("train", "val", "test"))


def test_gutenberg_split_is_by_book():
    corpus = corpora.load("gutenberg-en")
    s = corpus.split()
    assert sum(len(v) for v in s.parts.values()) == 33
    assert not set(s.names["train"]) & set(s.names["test"])
    total = sum(len(d) for d in corpus.documents)
    assert sum(len(d) for d in s["train"]) > 0.8 * total


@pytest.mark.parametrize("spec, fragment", [
    ("0.9,0.1", "three parts"),
    ("a,b,c", "not a number"),
    ("0.5,0.2,0.2", "summing to 1"),
    ("0,0.5,0.5", "no training text"),
    ("1.5,-0.5,0", "summing to 1"),
    ("val:0.1,val:0.8,test:0.1", "each of train, val and test once"),
    ("val:0.1,0.8,test:0.1", "each of train, val and test once"),
    ("dev:0.1,train:0.8,test:0.1", "each of train, val and test once"),
    ("val:x,train:0.8,test:0.1", "not a number"),
])
def test_bad_specs(spec, fragment):
    with pytest.raises(LadderError, match=fragment):
        SplitSpec.parse(spec)


def test_empty_split_is_an_error():
    with pytest.raises(LadderError, match="empty"):
        split_documents(["t"], ["one single line without enough lines\n"], "0.9,0.05,0.05")
    with pytest.raises(LadderError, match="empty"):
        split_documents(["a", "b"], ["x\n", "y\n"], "0.4,0.3,0.3")


def test_spec_round_trip():
    assert str(SplitSpec.parse("0.9,0.1,0")) == "0.9,0.1,0"
    assert str(SplitSpec.parse("0.9,0.1,0@char")) == "0.9,0.1,0@char"
    assert str(SplitSpec.parse(None)) == "0.9,0.05,0.05"
    assert str(SplitSpec.parse(" val:0.05, train:0.85 ,test:0.1@char")) == "val:0.05,train:0.85,test:0.1@char"
    assert SplitSpec.parse("test:0.1,train:0.85,val:0.05").fractions == (0.85, 0.05, 0.1)
