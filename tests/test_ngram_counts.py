"""N-gram counts checked by hand on a two-line corpus, and the word units' reversibility."""

from __future__ import annotations

import numpy as np
import pytest

from lmladder import counts, wordtok
from lmladder.ngramunits import kenlm_units, letter_units


def table(c, units, n, what="count"):
    ids = c.ids(n)
    values = getattr(c.tables[n - 1], what)
    return {" ".join(units[i] for i in row): int(v) for row, v in zip(ids.tolist(), values.tolist()) if v}


def test_two_line_corpus_by_hand():
    # <s> a b </s>   and   <s> b a b </s>
    units, bos, esc, eos, seq = kenlm_units(["a b\nb a b\n"])
    assert units == ["<unk>", "<s>", "</s>", "a", "b"]
    assert seq.tolist() == [1, 3, 4, 2, 1, 4, 3, 4, 2]
    c = counts.count(seq, 2, len(units), bos)
    assert table(c, units, 1) == {"a": 2, "b": 3, "</s>": 2}
    assert table(c, units, 2) == {"<s> a": 1, "<s> b": 1, "a b": 2, "b a": 1, "b </s>": 2}
    # adjusted: distinct left neighbours (a: <s> b; b: a <s>; </s>: b); the top order keeps raw counts
    assert table(c, units, 1, "adjusted") == {"a": 2, "b": 2, "</s>": 1}
    assert table(c, units, 2, "adjusted") == table(c, units, 2)


def test_letter_counts_by_hand():
    c = counts.count(np.array([3, 0, 1, 0, 3, 1, 0]), 3, 4, bos=3)  # documents "aba" and "ba"
    units = ["a", "b", "c", "<s>"]
    assert table(c, units, 1) == {"a": 3, "b": 2}
    assert table(c, units, 2) == {"<s> a": 1, "a b": 1, "b a": 2, "<s> b": 1}
    assert table(c, units, 3) == {"<s> a b": 1, "a b a": 1, "<s> b a": 1}
    assert table(c, units, 2, "adjusted") == {"<s> a": 1, "a b": 1, "b a": 2, "<s> b": 1}
    assert table(c, units, 1, "adjusted") == {"a": 2, "b": 2}  # a after <s> and b; b after a and <s>


def test_lookup_finds_and_misses():
    t = np.array([1, 5, 9], dtype=np.uint64)
    q = np.array([9, 2, 1, 5, 10], dtype=np.uint64)
    assert counts.lookup(t, q, chunk=2).tolist() == [2, -1, 0, 1, -1]


def test_sorted_counts_are_unique_with_counts():
    rng = np.random.default_rng(0)
    keys = rng.integers(0, 1000, 5000).astype(np.uint64)
    want = np.unique(keys, return_counts=True)
    got = counts.sorted_counts(keys.copy())
    assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])


@pytest.mark.parametrize("text", ["Hello  world's 12 x_y \n\n  end  ", "", "naïve café — “quoted”\ttab\r\n"])
def test_word_units_are_reversible(text):
    assert "".join(wordtok.units(text)) == text


def test_word_units_keep_the_leading_space():
    assert wordtok.units("the cat sat.\n") == ["the", " cat", " sat", ".", "\n"]


def test_packed_hierarchical_and_chunked_counting_agree(monkeypatch):
    text = ("First Citizen:\nBefore we proceed any further, hear me speak.\n" * 40) + "zq\n"
    units, bos, _, _, seq = letter_units([text[:900], text[900:]])
    packed = counts.count(seq, 5, len(units), bos)  # fits in 64 bits: one sort per order
    wide = counts.count(seq, 5, len(units) << 20, bos)  # too wide to pack: order-by-order ids
    small = counts.count(seq, 5, len(units), bos, memory_bytes=1)  # pieces of 256 units, merged
    monkeypatch.setattr(counts, "PACK_BITS", 0)
    argsorted = counts.count(seq, 5, len(units) << 20, bos)  # key and position do not share an int64
    for n in range(1, 6):
        a, b, c, d = packed.tables[n - 1], wide.tables[n - 1], small.tables[n - 1], argsorted.tables[n - 1]
        k = len(a) if n > 1 else len(units)
        for name in ("ctx", "word", "suffix", "count", "adjusted", "bos"):
            assert np.array_equal(getattr(a, name)[:k], getattr(b, name)[:k]), (n, name)
            assert np.array_equal(getattr(b, name), getattr(d, name)), (n, name)
            assert np.array_equal(getattr(a, name), getattr(c, name)), (n, name)
        if n > 1:
            assert (c.count > 0).all()  # no n-gram of a piece's context-only start is left at 0


@pytest.mark.parametrize("widen", [0, 12])
def test_counting_in_pieces_equals_counting_at_once(widen):
    """Pieces cut inside documents, at document starts and between them; packed keys (letters)
    and, with the vocabulary widened past 64 bits at order 4, chained keys (as for words)."""
    text = "one two three one two four.\n" * 40
    docs = [text, "x", "ab\n" * 90, text[:300]]
    units, bos, _, _, seq = letter_units(docs)
    V = len(units) << widen
    whole = counts.count(seq, 4, V, bos)
    for budget in (1, 64 * 300, 64 * 1000):
        pieces = counts.count(seq, 4, V, bos, memory_bytes=budget)
        for n in range(1, 5):
            for name in ("ctx", "word", "suffix", "count", "adjusted", "bos"):
                assert np.array_equal(getattr(whole.tables[n - 1], name), getattr(pieces.tables[n - 1], name)), \
                    (budget, n, name)
