"""`lmladder sample` and the one sampler: settings, determinism, streaming, novelty, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lmladder.errors import LadderError
from lmladder.sampling import SampleSettings, choose, filter_logits, novelty, sample_rngs
from tests.conftest import assert_error


def test_greedy_and_ties():
    logits = np.log(np.array([[0.2, 0.4, 0.4]]))
    assert choose(logits, SampleSettings(temperature=0), np.random.default_rng(0)).tolist() == [1]


def test_top_k_keeps_exactly_k_with_ties_to_lower_ids():
    logits = np.log(np.array([[0.1, 0.3, 0.3, 0.3]]))
    kept = np.isfinite(filter_logits(logits, SampleSettings(1.0, top_k=2)))[0]
    assert kept.tolist() == [False, True, True, False]


def test_top_p_keeps_smallest_set_reaching_p():
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]]))
    kept = lambda p: np.isfinite(filter_logits(logits, SampleSettings(1.0, top_p=p)))[0].tolist()
    assert kept(0.5) == [True, False, False, False]
    assert kept(0.6) == [True, True, False, False]
    assert kept(0.8) == [True, True, False, False]
    assert kept(0.81) == [True, True, True, False]
    assert kept(1.0) == [True, True, True, True]


def test_temperature_sharpens_and_sampling_matches_distribution():
    p = np.array([0.7, 0.2, 0.1])
    rngs = sample_rngs(0, 20000)
    ids = choose(np.log(np.tile(p, (20000, 1))), SampleSettings(1.0), rngs)
    assert np.bincount(ids, minlength=3) / 20000 == pytest.approx(p, abs=0.015)
    cold = np.exp(filter_logits(np.log(p)[None], SampleSettings(0.5)))[0]
    assert (cold / cold.sum())[0] > 0.7


@pytest.mark.parametrize("kwargs, fragment", [
    ({"temperature": -1}, "--temperature"), ({"top_k": 0}, "--top-k"), ({"top_p": 0}, "--top-p"),
    ({"top_p": 1.5}, "--top-p"), ({"temperature": 0, "top_k": 5}, "greedy"), ({"temperature": 0, "top_p": 0.5}, "greedy"),
])
def test_bad_settings(kwargs, fragment):
    with pytest.raises(LadderError, match=fragment):
        SampleSettings(**kwargs)


def test_novelty_by_hand():
    train = ["the cat sat on the mat today\n"]
    assert novelty(["the cat sat on the mat", "a b c d e"], train, "word") == [1.0, 0.0]
    # letter 8-grams of "cat sat on": 3 windows; "cat sat " and "at sat o" and "t sat on" all occur
    assert novelty(["cat sat on"], train, "char") == [1.0]
    assert novelty(["short"], train, "char") == [None]


@pytest.fixture
def unigram_dir(tmp_path):
    from lmladder import baselines, corpora

    corpus = corpora.load("tinyshakespeare")
    out = tmp_path / "unigram"
    baselines.train("unigram", corpus.split()["train"]).save(out, corpus.identity(), "0.9,0.05,0.05")
    return out


def test_sample_is_deterministic_and_batch_independent(cli, unigram_dir):
    one = json.loads(cli("sample", unigram_dir, "--seed", "7", "--max-new-chars", "50", "--json").stdout)
    three = json.loads(cli("sample", unigram_dir, "--seed", "7", "--max-new-chars", "50", "--num-samples", "3",
                           "--json").stdout)
    assert len(one) == 1 and len(three) == 3
    assert one[0]["text"] == three[0]["text"] and len(one[0]["text"]) == 50
    assert three[1]["text"] != three[0]["text"]
    assert one[0]["seed"] == 7 and one[0]["temperature"] == 0.8


def test_stream_prints_the_same_text(cli, unigram_dir):
    plain = cli("sample", unigram_dir, "--seed", "3", "--max-new-chars", "40", "--prompt", "ROMEO:")
    streamed = cli("sample", unigram_dir, "--seed", "3", "--max-new-chars", "40", "--prompt", "ROMEO:", "--stream")
    assert plain.exit_code == streamed.exit_code == 0
    assert plain.stdout.startswith("ROMEO:") and plain.stdout.rstrip("\n") == streamed.stdout.rstrip("\n")


def test_greedy_unigram_repeats_the_commonest_letter(cli, unigram_dir):
    out = json.loads(cli("sample", unigram_dir, "--temperature", "0", "--max-new-chars", "10", "--json").stdout)
    assert out[0]["text"] == " " * 10  # space is the commonest character of Tiny Shakespeare


def test_report_novelty(cli, unigram_dir):
    result = cli("sample", unigram_dir, "--max-new-chars", "200", "--report-novelty", "--json")
    assert result.exit_code == 0, result
    assert 0.0 <= json.loads(result.stdout)[0]["novelty"] < 0.5  # letters drawn independently are new


def test_sample_bad_inputs(cli, unigram_dir, tmp_path):
    assert_error(cli("sample", unigram_dir, "--temperature", "-1"), "--temperature")
    assert_error(cli("sample", unigram_dir, "--top-p", "2"), "--top-p")
    assert_error(cli("sample", unigram_dir, "--top-k", "0"), "--top-k")
    assert_error(cli("sample", unigram_dir, "--temperature", "0", "--top-k", "5"), "--temperature 0 is greedy")
    # score: --split-spec with the whole text scored (--split all) was dropped without a word
    assert_error(cli("score", unigram_dir, "--split", "all", "--split-spec", "0.5,0.25,0.25"), "--split all")
    assert_error(cli("sample", unigram_dir, "--max-new-tokens", "0"), "--max-new-tokens")
    assert_error(cli("sample", unigram_dir, "--max-new-chars", "5", "--max-new-tokens", "5"), "not both")
    assert_error(cli("sample", tmp_path), "not an lmladder model")
    assert_error(cli("sample", unigram_dir, "--prompt-file", str(tmp_path / "none.txt")), "does not exist")


def test_every_rung_takes_max_new_tokens_and_stop(cli, unigram_dir):
    """A unigram with --max-new-tokens was an internal error; now every rung goes through one loop."""
    out = json.loads(cli("sample", unigram_dir, "--max-new-tokens", "20", "--seed", "2", "--json").stdout)
    assert len(out[0]["text"]) == 20
    full = json.loads(cli("sample", unigram_dir, "--max-new-chars", "300", "--seed", "2", "--json").stdout)[0]["text"]
    stopped = cli("sample", unigram_dir, "--max-new-chars", "300", "--seed", "2", "--stop", "e", "--json")
    assert json.loads(stopped.stdout)[0]["text"] == full[: full.index("e")]


def test_default_length_is_one_constant(cli, unigram_dir):
    from lmladder.rung import DEFAULT_MAX_NEW_CHARS

    out = json.loads(cli("sample", unigram_dir, "--json").stdout)
    assert len(out[0]["text"]) == DEFAULT_MAX_NEW_CHARS
    assert f"default {DEFAULT_MAX_NEW_CHARS}" in cli("sample", "--help").stdout


def test_sample_bad_seed_and_stop(cli, unigram_dir):
    assert_error(cli("sample", unigram_dir, "--seed", "-1"), "--seed")
    assert_error(cli("sample", unigram_dir, "--stop", ""), "--stop")
