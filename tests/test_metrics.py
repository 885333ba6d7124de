"""The scoring contract: metric formulas by hand, the escape rule, the baseline rungs, and the
synthetic sources' entropy (scored by an oracle rung that knows the true source)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lmladder import baselines, corpora, metrics, synthetic
from lmladder.metrics import UnitScores
from lmladder.vocab import UNICODE_SCALARS, CharVocab


class SourceOracle:
    """A rung that knows the true source: ln P of each character from the chain itself.
    A test oracle (one Python step per character), not a ladder rung."""

    def __init__(self, source: synthetic.Source):
        self.source = source
        self.index = {c: i for i, c in enumerate(source.alphabet)}

    def score(self, documents):
        lp = []
        for doc in documents:
            s = self.source.start
            for ch in doc:
                c = self.index[ch]
                lp.append(math.log(self.source.probs[s, c]))
                s = self.source.next_state[s, c]
        return UnitScores(np.array(lp), sum(map(len, documents)), sum(len(d.encode()) for d in documents))


def test_metric_formulas_by_hand():
    # "ab c" with ln P = ln(1/2) for each of its 4 characters: 4 bits in all
    docs = ["ab c"]
    m = metrics.compute(UnitScores(np.log(np.full(4, 0.5)), 4, 4), docs)
    assert m.bits_per_char == pytest.approx(1.0)
    assert m.bits_per_byte == pytest.approx(1.0)
    assert m.words == 2 and m.word_perplexity == pytest.approx(math.exp(4 * math.log(2) / 2))  # = 4
    assert m.token_perplexity == pytest.approx(2.0)
    # "é!" is 2 characters but 3 UTF-8 bytes
    m = metrics.compute(UnitScores(np.log([0.25, 0.5]), 2, 3), ["é!"])
    assert m.bits_per_char == pytest.approx(1.5) and m.bits_per_byte == pytest.approx(1.0)


def test_units_must_cover_every_character():
    with pytest.raises(RuntimeError, match="every character"):
        metrics.compute(UnitScores(np.log([0.5]), 1, 1), ["ab"])


def test_uniform_is_log2_of_its_symbol_count():
    train = ["abcab\n"]
    rung = baselines.train("uniform", train)
    assert rung.vocab.size == 5  # a, b, c, newline + escape
    m = metrics.evaluate(rung, ["cab\nba"])
    assert m.bits_per_char == pytest.approx(math.log2(5), abs=1e-12)


def test_unseen_characters_cost_escape_plus_uniform_spelling():
    rung = baselines.train("uniform", ["ab"])
    m = metrics.evaluate(rung, ["a€"])  # € was never seen
    expected = math.log2(3) + (math.log2(3) + math.log2(UNICODE_SCALARS - 2))
    assert m.nll_nats / math.log(2) == pytest.approx(expected)
    assert m.bits_per_byte == pytest.approx(expected / 4)  # "a€" is 1 + 3 bytes


def test_unigram_add_one_by_hand():
    rung = baselines.train("unigram", ["aab"])  # counts a=2, b=1, ESC=0; N=3, V+1=3
    m = metrics.evaluate(rung, ["ab"])
    assert m.nll_nats == pytest.approx(-(math.log(3 / 6) + math.log(2 / 6)))


def test_letter_distributions_sum_to_one():
    corpus = corpora.load("tinyshakespeare")
    for kind in ("uniform", "unigram"):
        rung = baselines.train(kind, corpus.split()["train"])
        assert np.exp(rung.logp).sum() == pytest.approx(1.0)


def test_vocab_encode_and_escape():
    v = CharVocab.from_texts(["hello", "world"])
    assert v.chars == "dehlorw" and v.escape_id == 7 and v.size == 8
    ids = v.encode("hex😀")
    assert ids.tolist() == [2, 1, 7, 7]
    assert v.decode(ids[:2]) == "he"
    assert CharVocab.from_json(v.to_json()).chars == v.chars


def test_parens_by_hand():
    src = synthetic.parens_source(open_probability=0.5, stop_probability=0.25, max_depth=2)
    oracle = SourceOracle(src)
    # "(())\n": P = 0.75 (open at depth 0) * 0.5 (open) * 1 (must close at max depth) * 0.5 * 0.25
    m = metrics.evaluate(oracle, ["(())\n"])
    assert m.nll_nats == pytest.approx(-math.log(0.75 * 0.5 * 1 * 0.5 * 0.25))
    assert m.bits_per_char == pytest.approx(-math.log2(0.046875) / 5)


def test_parens_entropy_rate_by_hand():
    # depth 0 -> 1 -> 0 only (max_depth 1): from 0 "(" w.p. 1-q or "\n" w.p. q; from 1 ")" surely.
    q = 0.25
    src = synthetic.parens_source(open_probability=0.5, stop_probability=q, max_depth=1)
    h0 = -(q * math.log2(q) + (1 - q) * math.log2(1 - q))
    pi0 = 1 / (2 - q)  # stationary: pi0 = q*pi0 + pi1, pi1 = (1-q)*pi0
    assert src.entropy_rate() == pytest.approx(pi0 * h0)


@pytest.mark.parametrize("name", ["markov", "parens"])
def test_oracle_on_synthetic_corpus_matches_true_entropy(name):
    corpus = corpora.load(name)
    spec = corpora.entry(name)
    oracle = SourceOracle(synthetic.build_source(spec))
    text = corpus.documents[0][:200_000]
    m = metrics.evaluate(oracle, [text])
    assert m.bits_per_char == pytest.approx(corpus.meta["entropy_bits_per_char"], rel=0.01)


def test_synthetic_corpora_are_deterministic(tmp_path, monkeypatch):
    a = corpora.load("parens").documents[0]
    monkeypatch.setenv("LMLADDER_HOME", str(tmp_path))  # regenerate from scratch
    assert corpora.load("parens").documents[0] == a
    assert set(a) == {"(", ")", "\n"}
    for line in a.split("\n")[:-1]:
        depth = 0
        for ch in line:
            depth += 1 if ch == "(" else -1
            assert depth >= 0
        assert depth == 0


def test_word_count_is_str_split_without_the_list():
    """Counted a piece at a time, with words cut by a piece's end counted once, for any piece size."""
    import random

    from lmladder.metrics import word_count

    rng = random.Random(0)
    for _ in range(500):
        text = "".join(rng.choice("ab \n\t\u00a0\u2003") for _ in range(rng.randint(0, 40)))
        for piece in (1, 2, 3, 7, 1 << 16):
            assert word_count(text, piece) == len(text.split()), (text, piece)
