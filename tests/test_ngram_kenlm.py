"""--kenlm-compat against KenLM's own output (../shared/fixtures/kenlm: lmplz and query on Tiny
Shakespeare and gutenberg-en), entry for entry: the same n-grams, every log10 p and backoff
within 1e-6 (lmplz writes float32).

The fixtures live beside the checkout in ../shared, as the corpora do (CI has both; a clone with
no ../shared skips these tests). Where ../shared is there but the fixtures are not, or under CI,
a missing fixture fails instead of skipping: a skip there would hide a broken checkout."""

from __future__ import annotations

import gzip
import os
import re

import numpy as np
import pytest

from lmladder import arpa, corpora, ngram
from tests.conftest import FIXTURES, MIRROR, SHARED

KENLM = FIXTURES / "kenlm"
CUT = 1_003_856
NEEDED = ["word3.arpa.gz", "word3.test.query.txt.gz", "char5.arpa.gz", "gutenberg-char3.arpa.gz",
          "gutenberg-char3.lmplz.log"]
MISSING = [name for name in NEEDED if not (KENLM / name).is_file()]
pytestmark = pytest.mark.skipif(not SHARED.is_dir() and not os.environ.get("CI"),
                                reason=f"no {SHARED} beside the checkout (KenLM fixtures)")


@pytest.fixture(autouse=True)
def fixtures_present():
    if MISSING:
        pytest.fail(f"KenLM fixtures {', '.join(MISSING)} not found in {KENLM}", pytrace=False)


def char_rewrite(text: str) -> str:
    """The fixtures' character-level rewrite: characters space-separated, space -> _."""
    return "".join(" ".join(line.replace(" ", "_")) + "\n" for line in text[:-1].split("\n"))


@pytest.fixture(scope="module")
def corpus():
    text = (MIRROR / "tinyshakespeare.txt").read_text(encoding="utf-8")
    return text[:CUT], text[CUT:]


def assert_same_entries(model, reference):
    for row in arpa.compare(model, reference):
        assert row["ours"] == row["theirs"] and row["only_ours"] == row["only_theirs"] == 0, row
        assert row["max_abs_log10p"] <= 1e-6 and row["max_abs_log10bo"] <= 1e-6, row


def compat(order: int, text: str) -> ngram.NgramModel:
    return ngram.train(ngram.NgramConfig(unit="word", order=order, kenlm_compat=True), [text])


def test_word3_matches_lmplz_and_query(corpus):
    train, test = corpus
    model = compat(3, train)
    assert_same_entries(model, KENLM / "word3.arpa.gz")
    lp, oov = model.kenlm_query([test])
    assert len(lp) == 24_626 and oov.sum() == 2_360  # tokens with </s>, as the README's table
    assert abs(10 ** (-lp.sum() / len(lp)) / 495.0489 - 1) < 1e-6
    assert abs(10 ** (-lp[~oov].sum() / (~oov).sum()) / 248.3876 - 1) < 1e-6
    with gzip.open(KENLM / "word3.test.query.txt.gz", "rt", encoding="utf-8") as handle:
        query = [float(f.split(" ")[-1]) for f in handle.read().split("\t") if "=" in f]
    assert np.max(np.abs(np.array(query) - lp)) < 2e-6  # query sums float32 backoffs


def test_char5_matches_lmplz(corpus):
    train, _ = corpus
    assert_same_entries(compat(5, char_rewrite(train)), KENLM / "char5.arpa.gz")


def test_gutenberg_letters_match_lmplz_and_its_discounts():
    """The fixture whose unigram discounts need lmplz's counts-of-counts rule (README: the last
    new token, `>`, counted with its raw count 9 instead of its adjusted count 1)."""
    text = "".join(corpora.load("gutenberg-en").split("1,0,0")["train"])
    # the README's rewrite but for a space either side of each "\n", which lmplz reads the same
    rewrite = " ".join(text.replace(" ", "\u2581").replace("\u00a0", "\u2423"))
    model = compat(3, rewrite)
    assert model.units[-1] == ">"
    assert_same_entries(model, KENLM / "gutenberg-char3.arpa.gz")
    log = (KENLM / "gutenberg-char3.lmplz.log").read_text()
    for d, (n, logged) in zip(model.meta["discounts"], re.findall(r"^(\d) \d+ (D1=.*)$", log, re.M)):
        want = [float(x.split("=")[1]) for x in logged.split()]
        assert np.allclose([d["D1"], d["D2"], d["D3+"]], want, rtol=1e-5, atol=0), (n, d, logged)


def test_arpa_export_is_the_model(corpus, tmp_path):
    train, _ = corpus
    model = compat(2, train[:50_000])
    arpa.write(model, tmp_path / "m.arpa")
    for row in arpa.compare(model, tmp_path / "m.arpa"):  # 7 significant digits written
        assert row["only_ours"] == row["only_theirs"] == 0 and row["max_abs_log10p"] < 5e-6, row
    assert arpa.read(tmp_path / "m.arpa")[("<s>",)][0] == 0.0
