"""Agreement with KenLM's lmplz and query on Tiny Shakespeare (../shared/fixtures/kenlm)."""

from __future__ import annotations

import gzip
import math

import numpy as np
import pytest

from lmladder import arpa, ngram
from lmladder.ngramio import readable
from tests.conftest import FIXTURES, MIRROR

KENLM = FIXTURES / "kenlm"
CUT = 1_003_856
pytestmark = pytest.mark.skipif(not (KENLM / "word3.arpa.gz").is_file(),
                                reason=f"KenLM fixtures not found in {KENLM}")


def char_rewrite(text: str) -> str:
    """The fixture's character-level rewrite: characters space-separated, space -> _."""
    return "\n".join(" ".join(line.replace(" ", "_")) for line in text.split("\n"))


def lines(text: str) -> list[str]:
    return text[:-1].split("\n") if text.endswith("\n") else text.split("\n")


@pytest.fixture(scope="module")
def corpus():
    text = (MIRROR / "tinyshakespeare.txt").read_text(encoding="utf-8")
    return text[:CUT], text[CUT:]


def check(name, order, train, test, ppl_incl, ppl_excl):
    model = ngram.train(ngram.NgramConfig(unit="word", order=order, kenlm_compat=True), lines(train))
    ref = arpa.read(KENLM / f"{name}.arpa.gz")
    ln10 = math.log(10)
    ours = {}
    for n in range(1, order + 1):
        t = model.tables[n - 1]
        for gram, lp, bo in zip(readable(model, n).to_pylist(), t.logp, t.backoff):
            ours[tuple(gram)] = (lp / ln10, bo / ln10)
    assert set(ours) == set(ref)
    worst_p = max(abs(ours[g][0] - ref[g][0]) for g in ref if g != ("<s>",))
    worst_b = max(abs(ours[g][1] - ref[g][1]) for g in ref)
    assert worst_p < 1e-4 and worst_b < 1e-4, (worst_p, worst_b)
    lp, oov = model.kenlm_query(lines(test))
    assert len(lp) == sum(len(line.split()) + 1 for line in lines(test))
    assert abs(10 ** (-lp.sum() / len(lp)) / ppl_incl - 1) < 1e-4
    assert abs(10 ** (-lp[~oov].sum() / (~oov).sum()) / ppl_excl - 1) < 1e-4
    return model, lp


def test_word3_matches_kenlm(corpus):
    train, test = corpus
    model, lp = check("word3", 3, train, test, 495.0489, 248.3876)
    # token by token against `query -v word`
    with gzip.open(KENLM / "word3.test.query.txt.gz", "rt", encoding="utf-8") as handle:
        ref = [float(f.split(" ")[-1]) for f in handle.read().split("\t") if "=" in f]
    assert len(ref) == len(lp)
    assert np.max(np.abs(np.array(ref) - lp)) < 1e-4


def test_char5_matches_kenlm(corpus):
    train, test = corpus
    check("char5", 5, char_rewrite(train), char_rewrite(test), 4.89379, 4.89379)


def test_arpa_export_round_trips(corpus, tmp_path):
    train, _ = corpus
    model = ngram.train(ngram.NgramConfig(unit="word", order=2, kenlm_compat=True), lines(train[:50_000]))
    arpa.write(model, tmp_path / "m.arpa")
    back = arpa.read(tmp_path / "m.arpa")
    assert len(back) == sum(len(t.keys) for t in model.tables)
    assert back[("<s>",)][0] == 0.0
