"""--kenlm-compat follows KenLM's own rules, checked by hand on tiny texts (every expected value
written out, each one lmplz's on the same text): how lmplz and query cut text into lines and
tokens, and how lmplz collects the counts-of-counts its discounts come from. With $LMLADDER_LMPLZ
naming an lmplz binary, small texts are also compared with lmplz itself, entry for entry."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from lmladder import arpa, counts, ngram
from lmladder.ngramestimate import counts_of_counts, kenlm_counts_of_counts
from lmladder.ngramunits import kenlm_stream, kenlm_units
from tests.conftest import MIRROR

SPECIALS = ["<unk>", "<s>", "</s>"]


def compat(order: int, text: str) -> ngram.NgramModel:
    return ngram.train(ngram.NgramConfig(unit="word", order=order, kenlm_compat=True), [text])


def test_lmplz_splits_tokens_at_ascii_spaces_and_lines_at_newlines_only():
    # lmplz's delimiters are NUL, tab, LF, CR and space: a no-break space, VT, FF and U+2028
    # stay inside their tokens, CR separates tokens but ends no line, runs of spaces count once
    text = "a\u00a0b c\rd\ve\ff\tg  h\n\nx\u2028y \n"
    units, bos, unk, eos, seq = kenlm_units([text])
    assert (bos, unk, eos) == (1, 0, 2)
    assert units == SPECIALS + ["a\u00a0b", "c", "d\ve\ff", "g", "h", "x\u2028y"]
    assert seq.tolist() == [1, 3, 4, 5, 6, 7, 2,  # <s> a\xa0b c d\ve\ff g h </s>
                            1, 2,  # the empty line
                            1, 8, 2]  # <s> x\u2028y </s>


def test_query_splits_tokens_at_c_isspace():
    # KenLM's query reads words between C's isspace characters, so VT and FF separate there
    index = {"a\u00a0b": 3, "d": 4, "e": 5}
    seq = kenlm_stream(["a\u00a0b d\ve\ff\r\n"], index, bos=1, eos=2, unk=0)
    assert seq.tolist() == [1, 3, 4, 5, 0, 2]


def test_documents_are_read_as_one_file_and_the_last_line_needs_its_newline():
    # lmplz (and query) give </s> only to lines that end with "\n"; a last line without one
    # keeps its tokens, an empty or all-space one adds nothing
    for documents in (["a b\nb a b"], ["a b\n", "b a b"], ["a b\nb", " a b", "   "]):
        units, _, _, _, seq = kenlm_units(documents)
        assert units == SPECIALS + ["a", "b"]
        assert seq.tolist() == [1, 3, 4, 2, 1, 4, 3, 4], documents
    assert kenlm_units(["a b\nb a b\n"])[4].tolist() == [1, 3, 4, 2, 1, 4, 3, 4, 2]
    assert kenlm_units(["a b\n\n"])[4].tolist() == [1, 3, 4, 2, 1, 2]


@pytest.mark.parametrize("special", ["<s>", "</s>", "<unk>"])
def test_special_tokens_are_refused_as_lmplz_refuses_them(special):
    with pytest.raises(Exception, match=f"holds {special} as a token"):
        kenlm_units([f"a {special} b\n"])


# The counts-of-counts rule, by hand. Five lines, lmplz's ids <unk> 0, <s> 1, </s> 2, a 3, b 4,
# c 5, z 6 (first sight), so z, the last new token, has the highest id:
#
#     <s> a b c </s>   <s> b c </s>   <s> a c z </s>   <s> c z </s>   <s> c z </s>
#
# Unigram adjusted counts are distinct left neighbours: a {<s>} 1, b {a, <s>} 2, c {b, a, <s>} 3,
# z {c} 1 (raw count 3), </s> {c, z} 2. Textbook counts-of-counts t1..t4 = 2, 2, 1, 0 give
# Y = 2/6 and D1 = 1 - 2Y t2/t1 = 1/3, D2 = 2 - 3Y t3/t2 = 3/2, D3+ = 3 - 4Y t4/t3 = 3.
# lmplz walks the trigrams in suffix order (last word first, by id) and flushes what is still
# open after the walk with its raw count: the suffixes of the last trigram, `a c z` (of the
# trigrams ending in `c z`, `a` has a higher id than `<s>`). So z counts 3, not 1:
#     unigrams t = 1, 2, 2, 0: Y = 1/5, D1 = 1 - 2(1/5)(2/1) = 1/5, D2 = 2 - 3(1/5)(2/2) = 7/5, D3+ = 3.
# Bigram adjusted counts: <s> a 2, <s> b 1, <s> c 2 (they start with <s>: raw), a b {<s>} 1,
# b c {a, <s>} 2, c </s> {b} 1, a c {<s>} 1, c z {a, <s>} 2 (raw 3), z </s> {c} 1. Textbook
# t = 5, 4, 0, 0: no 3s, so the order falls back to 0.5, 1, 1.5. lmplz counts `c z` as 3:
#     bigrams t = 5, 3, 1, 0: Y = 5/11, D1 = 1 - 2(5/11)(3/5) = 5/11, D2 = 2 - 3(5/11)(1/3) = 17/11, D3+ = 3.
# Trigrams (the top order: raw counts) <s> a b 1, a b c 1, b c </s> 2, <s> b c 1, <s> a c 1,
# a c z 1, c z </s> 3, <s> c z 2: t = 5, 2, 1, 0, Y = 5/9, D1 = 5/9, D2 = 2 - 3(5/9)(1/2) = 7/6, D3+ = 3.
# lmplz -o 3 on this text logs exactly D1=0.2 D2=1.4 D3+=3, D1=0.454545 D2=1.54545 D3+=3 and
# D1=0.555556 D2=1.16667 D3+=3.
BY_HAND = "a b c\nb c\na c z\nc z\nc z\n"
BOS_FLUSH = "a b\nb a\nz a\nz b\n"


def test_counts_of_counts_flush_the_last_ngrams_with_their_raw_counts():
    units, bos, _, _, seq = kenlm_units([BY_HAND])
    assert units == SPECIALS + ["a", "b", "c", "z"]
    c = counts.count(seq, 3, len(units), bos)
    textbook = [counts_of_counts(t.adjusted)[1:].tolist() for t in c.tables]
    assert textbook == [[2, 2, 1, 0], [5, 4, 0, 0], [5, 2, 1, 0]]
    assert [t[1:].tolist() for t in kenlm_counts_of_counts(c)] == [[1, 2, 2, 0], [5, 3, 1, 0], [5, 2, 1, 0]]
    model = compat(3, BY_HAND)
    got = [(d["D1"], d["D2"], d["D3+"], d["fallback"]) for d in model.meta["discounts"]]
    want = [(1 / 5, 7 / 5, 3, False), (5 / 11, 17 / 11, 3, False), (5 / 9, 7 / 6, 3, False)]
    assert np.allclose([g[:3] for g in got], [w[:3] for w in want], rtol=0, atol=1e-12)
    assert [g[3] for g in got] == [w[3] for w in want]


def test_the_flush_stops_at_an_ngram_that_starts_with_bos():
    # z only ever starts a line: the last trigram in suffix order is <s> <s> z, whose open
    # suffixes are z and <s> z; <s> z starts with <s> (adjusted = raw already), so only z changes
    units, bos, _, _, seq = kenlm_units([BOS_FLUSH])
    c = counts.count(seq, 3, len(units), bos)
    z = units.index("z")
    assert (c.tables[0].adjusted[z], c.tables[0].count[z]) == (1, 2)
    textbook, kenlm = counts_of_counts(c.tables[0].adjusted), kenlm_counts_of_counts(c)[0]
    assert (kenlm - textbook).tolist() == [0, -1, 1, 0, 0]
    assert np.array_equal(kenlm_counts_of_counts(c)[1], counts_of_counts(c.tables[1].adjusted))


def test_cli_reads_the_train_text_as_lmplz_reads_the_file(cli, tmp_path):
    text = tmp_path / "t.txt"
    text.write_bytes("one\u00a0two three\r\nfour\u2028five six\n".encode())
    r = cli("ngram", "train", text, "--unit", "word", "--order", "2", "--kenlm-compat", "--split", "1,0,0",
            "--out", tmp_path / "m", "--json")
    assert r.exit_code == 0, r
    # <unk> <s> </s>, one\xa0two, three, four\u2028five, six: 7 unigrams; two lines, two </s>
    assert json.loads(r.stdout)["ngrams"] == [7, 6]


LMPLZ = os.environ.get("LMLADDER_LMPLZ")


@pytest.mark.skipif(not LMPLZ, reason="set LMLADDER_LMPLZ to an lmplz binary to compare with KenLM itself")
@pytest.mark.parametrize("case", ["by-hand", "bos-flush", "whitespace", "words", "letters"])
def test_matches_lmplz_entry_for_entry(case, tmp_path):
    head = (MIRROR / "tinyshakespeare.txt").read_text(encoding="utf-8")[:60_000]
    head = head[:head.rindex("\n") + 1]
    text, order = {
        "by-hand": (BY_HAND, 3),
        "bos-flush": (BOS_FLUSH, 3),
        "whitespace": ("a\u00a0b c\rd\ve\ff\tg  h\n\nx\u2028y \n b  a\tc\n" * 7 + "a c z\n", 4),
        "words": (head, 4),
        "letters": ("".join(" ".join(line.replace(" ", "_")) + "\n" for line in head[:-1].split("\n")), 6),
    }[case]
    path = Path(tmp_path / "train.txt")
    path.write_bytes(text.encode("utf-8"))
    with open(path, "rb") as stdin, open(tmp_path / "lmplz.arpa", "wb") as stdout:
        run = subprocess.run([LMPLZ, "-o", str(order), "--discount_fallback", "-S", "100M", "-T", str(tmp_path)],
                             stdin=stdin, stdout=stdout, stderr=subprocess.PIPE)
    assert run.returncode == 0, run.stderr.decode()[-2000:]
    for row in arpa.compare(compat(order, text), tmp_path / "lmplz.arpa"):
        assert row["only_ours"] == row["only_theirs"] == 0 and row["ours"] == row["theirs"], row
        assert row["max_abs_log10p"] <= 1e-6 and row["max_abs_log10bo"] <= 1e-6, row
