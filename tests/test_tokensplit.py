"""Token splitting (lmladder.tokensplit): BPE-dropout's effect on training windows."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lmladder import bpe, tokens
from lmladder.errors import LadderError
from lmladder.tokensplit import merge_parents, split_windows
from tests.conftest import assert_error


@pytest.fixture(scope="module")
def text() -> str:
    from tests.conftest import MIRROR

    return (MIRROR / "tinyshakespeare.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def tok(text):
    return bpe.train([text[:500_000]], bpe.BPESettings(320), {"name": "tinyshakespeare"}, "0.45,0.55,0")


def test_parents_spell_the_token(tok):
    """Every merged token is its two parents side by side (in the library's byte alphabet), and
    bytes and the special token have none."""
    left, right = merge_parents(tok)
    vocab = {i: p for p, i in json.loads(tok.json_bytes)["model"]["vocab"].items()}
    merged = np.flatnonzero(left >= 0)
    assert len(merged) == 320 - 257  # 256 bytes + <|endoftext|>, the rest made by merges
    for i in merged:
        assert vocab[int(left[i])] + vocab[int(right[i])] == vocab[int(i)]
    assert left[tok.eot_id] == -1 and (left[:256] == -1).all()


def test_split_windows_respell_the_same_bytes(tok, text):
    """A split window is the same text cut finer: its bytes are a prefix of the window's own
    (the cut at n tokens drops the end), it is longer in tokens per byte, and each row stays n."""
    ids = tok.encode(text[600_000:620_000])
    parents = merge_parents(tok)
    rng = np.random.default_rng(0)
    starts = rng.integers(0, len(ids) - 65, size=32)
    windows = ids[starts[:, None] + np.arange(65)]
    split = split_windows(windows, parents, 0.3, np.random.default_rng(1))
    assert split.shape == windows.shape and split.dtype == np.int64
    changed = 0
    for a, b in zip(windows, split):
        whole, cut = tok.decode(a), tok.decode(b)  # ASCII text: no token ends inside a character
        assert whole.startswith(cut) and len(cut) < len(whole) or np.array_equal(a, b)
        changed += not np.array_equal(a, b)
    assert changed >= 30  # p = 0.3 over 65 tokens: nearly every row


def test_split_windows_is_exact_on_a_hand_made_table():
    """Ids 0-3 are bytes; 4 = (0, 1), 5 = (4, 2). p -> 1 splits everything down to bytes; p 0
    splits nothing; the same generator state gives the same split."""
    left = np.array([-1, -1, -1, -1, 0, 4])
    right = np.array([-1, -1, -1, -1, 1, 2])
    w = np.array([[5, 3, 4, 5], [3, 3, 3, 3]])
    full = split_windows(w, (left, right), 0.999999, np.random.default_rng(0))
    assert full.tolist() == [[0, 1, 2, 3], [3, 3, 3, 3]]
    assert split_windows(w, (left, right), 0.0, np.random.default_rng(0)).tolist() == w.tolist()
    a = split_windows(np.tile(w, (50, 1)), (left, right), 0.5, np.random.default_rng(7))
    b = split_windows(np.tile(w, (50, 1)), (left, right), 0.5, np.random.default_rng(7))
    assert np.array_equal(a, b)


def test_split_probability_per_level():
    """A token is split with probability p, and each half again with p: for 5 = ((0 1) 2), the
    first piece of a row is 5 (1 - p), 4 (p (1 - p)) or 0 (p^2)."""
    left, right = np.array([-1, -1, -1, 0, 3, 4]), np.array([-1, -1, -1, 1, 2, 2])
    p, rows = 0.3, 200_000
    first = split_windows(np.full((rows, 2), 5), (left, right), p, np.random.default_rng(3))[:, 0]
    share = {k: np.mean(first == k) for k in (5, 4, 3, 0)}
    assert share[5] == pytest.approx(1 - p, abs=0.005)
    assert share[4] == pytest.approx(p * (1 - p), abs=0.005)
    assert share[3] == pytest.approx(p * p * (1 - p), abs=0.005)
    assert share[0] == pytest.approx(p ** 3, abs=0.003)


def test_batches_are_split_only_when_asked(tok, text):
    from lmladder.train import batch_windows

    ids = tok.encode(text[600_000:700_000])
    parents = merge_parents(tok)
    plain = batch_windows(ids, 1, 5, 8, 32)
    assert np.array_equal(plain, batch_windows(ids, 1, 5, 8, 32, parents, 0.0))
    split = batch_windows(ids, 1, 5, 8, 32, parents, 0.2)
    assert split.shape == plain.shape and not np.array_equal(split, plain)
    assert np.array_equal(split, batch_windows(ids, 1, 5, 8, 32, parents, 0.2))  # a function of (seed, step)
    assert (split[:, 0] == plain[:, 0]).sum() + (split[:, 0] == parents[0][plain[:, 0]]).sum() == 8


def test_char_tokenizer_is_refused():
    with pytest.raises(LadderError, match="char tokenizer has none"):
        merge_parents(tokens.char_tokenizer())


def test_cli_trains_with_token_dropout_and_refuses_bad_values(cli, tmp_path, tok):
    tok.save(tmp_path / "bpe")
    base = ("train", "tinyshakespeare", "--preset", "gpt-tiny", "--max-steps", "3", "--eval-interval", "0")
    result = cli(*base, "--tokenizer", tmp_path / "bpe", "--token-dropout", "0.1", "--out", tmp_path / "run", "--json")
    assert result.exit_code == 0, result
    assert json.loads((tmp_path / "run" / "config.json").read_text())["data"]["token_dropout"] == 0.1
    from lmladder.cli import train as train_command

    real = train_command._prepare_neural
    train_command._prepare_neural = lambda *a, **k: pytest.fail("refused only after the data were prepared")
    try:  # refused before torch and the corpus
        assert_error(cli(*base, "--token-dropout", "0.1", "--out", tmp_path / "c"), "--token-dropout", "char tokenizer")
    finally:
        train_command._prepare_neural = real
    assert_error(cli(*base, "--tokenizer", tmp_path / "bpe", "--token-dropout", "1", "--out", tmp_path / "d"),
                 "token_dropout must be in [0, 1)")
    assert not (tmp_path / "c").exists() and not (tmp_path / "d").exists()


def test_expected_pieces_match_the_splits_drawn():
    """expected_pieces is the mean length a token splits into: exact on the hand table, and the
    mean over many drawn splits of a real tokenizer's stream (rows long enough not to be cut)."""
    from lmladder.tokensplit import expected_pieces

    left, right = np.array([-1, -1, -1, 0, 3, -1]), np.array([-1, -1, -1, 1, 2, -1])  # 3 = (0 1), 4 = (3 2)
    p = 0.3
    e = expected_pieces((left, right), p)
    assert e[[0, 1, 2, 5]].tolist() == [1, 1, 1, 1] and e[3] == pytest.approx(1 + p)
    assert e[4] == pytest.approx(1 - p + p * (1 + p + 1))
    row = np.array([4, 3, 2] * 100 + [5] * 700)  # 300 tokens of content, then filler (5) for their pieces
    drawn = split_windows(np.tile(row, (400, 1)), (left, right), p, np.random.default_rng(5))
    assert (drawn[:, -1] == 5).all()  # no row's content reached the end: nothing was cut
    assert (drawn != 5).sum(1).mean() == pytest.approx(e[row[:300]].sum(), rel=0.01)


def test_a_tokenizer_whose_merges_do_not_join_is_refused(tok):
    class Odd:
        kind, vocab_size = "bpe", 4
        json_bytes = json.dumps({"model": {"vocab": {"a": 0, "b": 1, "##ab": 2, "ab": 3},
                                           "merges": ["a ##b"]}}).encode()

    with pytest.raises(LadderError, match="does not join two of its tokens"):
        merge_parents(Odd())


def test_each_process_takes_its_share_of_the_same_split_batch(tok, text):
    """Under DDP every process draws the step's whole batch, split alike, and keeps its rows: two
    processes' shares together are the one-process batch, so the split is the same for any count."""
    from lmladder.config import resolve
    from lmladder.train.step import draw_batch

    ids = tok.encode(text[600_000:700_000])
    parents = merge_parents(tok)
    config = resolve("gpt", "gpt-tiny", None, {"optim": {"batch_size": 8}, "data": {"token_dropout": 0.2},
                                               "run": {"max_steps": 1}})
    whole = draw_batch(ids, 3, config, 0, 1, "cpu", parents)
    halves = [draw_batch(ids, 3, config, rank, 2, "cpu", parents) for rank in (0, 1)]
    assert np.array_equal(np.concatenate([h.numpy() for h in halves]), whole.numpy())
    assert not np.array_equal(whole.numpy(), draw_batch(ids, 3, resolve("gpt", "gpt-tiny", None, {
        "optim": {"batch_size": 8}, "run": {"max_steps": 1}}), 0, 1, "cpu", None).numpy())


def test_token_dropout_falls_from_single_bytes_over_its_steps(tok, text):
    """--token-dropout-steps N: step 0's windows are single bytes (every token split down to its
    bytes), the dropout falls on a straight line to --token-dropout at step N, and from there a
    step's windows are those of --token-dropout alone."""
    from lmladder.config import resolve
    from lmladder.tokensplit import dropout_at, in_use
    from lmladder.train.step import draw_batch

    def config(data):
        return resolve("gpt", "gpt-tiny", None, {"optim": {"batch_size": 8}, "data": data, "run": {"max_steps": 1}})

    ids = tok.encode(text[600_000:700_000])
    parents = merge_parents(tok)
    falling, flat = config({"token_dropout": 0.2, "token_dropout_steps": 100}), config({"token_dropout": 0.2})
    assert [dropout_at(falling.data, s) for s in (0, 50, 99, 100, 10**6)] == pytest.approx([1, 0.6, 0.208, 0.2, 0.2])
    assert dropout_at(config({"token_dropout_steps": 4}).data, 2) == 0.5  # down to no dropout
    assert in_use(falling.data) and in_use(config({"token_dropout_steps": 4}).data) and not in_use(config({}).data)
    first = draw_batch(ids, 0, falling, 0, 1, "cpu", parents).numpy()
    assert (parents[0][first] < 0).all() and first.max() < 256  # bytes only
    assert tok.decode(first[0].tolist()) in text[600_000:700_000]  # the same text, spelt in bytes
    for step in (100, 101):
        assert np.array_equal(draw_batch(ids, step, falling, 0, 1, "cpu", parents).numpy(),
                              draw_batch(ids, step, flat, 0, 1, "cpu", parents).numpy())


def test_cli_takes_token_dropout_steps_and_refuses_bad_ones(cli, tmp_path, tok):
    tok.save(tmp_path / "bpe")
    base = ("train", "tinyshakespeare", "--preset", "gpt-tiny", "--max-steps", "3", "--eval-interval", "0")
    result = cli(*base, "--tokenizer", tmp_path / "bpe", "--token-dropout-steps", "2", "--out", tmp_path / "run")
    assert result.exit_code == 0, result
    assert json.loads((tmp_path / "run" / "config.json").read_text())["data"]["token_dropout_steps"] == 2
    assert_error(cli(*base, "--token-dropout-steps", "2", "--out", tmp_path / "c"), "--token-dropout-steps",
                 "char tokenizer")
    assert_error(cli(*base, "--tokenizer", tmp_path / "bpe", "--token-dropout-steps", "-1", "--out", tmp_path / "d"),
                 "token_dropout_steps must be >= 0 (got -1)")
    assert_error(cli(*base, "--tokenizer", tmp_path / "bpe", "--token-dropout-steps", str(10**13), "--out",
                     tmp_path / "d"), "token_dropout_steps must be at most 1,000,000,000,000")
    assert not (tmp_path / "c").exists() and not (tmp_path / "d").exists()


def test_a_ladder_s_train_curve_counts_each_step_s_splits():
    """bench's train curve turns a row's loss (nats a token) into bits a character with the mean
    number of pieces a train token was cut into over the steps the row averages, each step at its
    own dropout. Hand table: token 2 = 0 + 1; train ids 2, 2, 0; dropout from 1 to 0 over 2 steps."""
    from lmladder.config import DataConfig
    from lmladder.neural_ladder import split_factors

    parents = (np.array([-1, -1, 0]), np.array([-1, -1, 1]))
    ids = np.array([2, 2, 0])
    data = DataConfig(token_dropout=0.0, token_dropout_steps=2)
    # step 0: p 1, 2 pieces each for token 2: 5/3; step 1: p 0.5, 1.5: 4/3; step 2 on: 1
    rows = [{"step": 1}, {"step": 3}, {"step": 5}]
    assert split_factors(rows, data, parents, ids) == pytest.approx([5 / 3, (4 / 3 + 1) / 2, 1])
    assert split_factors(rows, DataConfig(token_dropout=0.5), parents, ids) == pytest.approx([4 / 3] * 3)
    assert split_factors(rows, data, None, ids) == [1.0] * 3
