"""Canonical BPE (lmladder.canonical): the pair table against real encodings and the merges, the
renormalised distribution (sums to 1, never lowers a token an encoding can hold), its cache, the
sampler's fast path, and the bad inputs. The contract and compression tests run a canonical
rung through scoring, sampling, loading, resuming and coding (tests/test_contract.py RECIPES)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from lmladder import bpe, canonical, tokens
from lmladder.errors import LadderError
from tests.conftest import MIRROR, assert_error


@pytest.fixture(scope="module")
def tok():
    """A BPE with whitespace tokens ("\n\n", "  "): paragraphs two blank lines apart, as in books."""
    text = (MIRROR / "tinyshakespeare.txt").read_text(encoding="utf-8")[:200_000].replace("\n\n", "\n\n\n")
    return bpe.train([text, "  indented   by    spaces " * 200], bpe.BPESettings(vocab_size=400))


@pytest.fixture(scope="module")
def table(tok):
    return canonical.pair_table(tok)


def test_every_pair_of_real_encodings_is_allowed_and_merged_pairs_are_refused(tok, table):
    from lmladder.tokensplit import merge_parents

    held_out = (MIRROR / "tinyshakespeare.txt").read_text(encoding="utf-8")[-300_000:]  # text it never saw
    # GPT-2's split pattern reads around a pair: a contraction after an apostrophe, an apostrophe
    # joined to other punctuation, and a run of whitespace that leaves its last one to the next word
    odd = "a'most ,'tis --'s don't  \n\n  x the end.\n\n\n\nCHAPTER II said so.\n\n\nYou   so    it"
    ids = tokens.encode_documents(tok, [held_out, odd])
    assert table[ids[:-1], ids[1:]].all()
    left, right = merge_parents(tok)
    merged = left >= 0
    pieces = bpe.token_bytes(tok)
    kept = [(pieces[a], pieces[b]) for a, b in zip(left[merged], right[merged]) if table[a, b]]
    # a merge's two halves stay side by side only across a cut of the split pattern: after other
    # punctuation an apostrophe joins it (",'" then "s"), and a run of whitespace leaves its last
    # one to the next word ("\n\n" "\n" | "\n" "C")
    assert merged.sum() > 100 and all(a == b"'" or a.isspace() for a, _ in kept)
    assert (b"\n", b"\n") in kept
    assert table[tok.eot_id].all() and table[:, tok.eot_id].all()
    assert 0.001 < (~table).mean() < 0.2


def test_the_renormalised_distribution_sums_to_one_and_lifts_allowed_tokens(table):
    import torch

    V = table.shape[0]
    fix = canonical.Canonical(table, "cpu")
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 7, V + 16, generator=gen, dtype=torch.float64) * 3  # 16 padding ids
    logits[..., 3] = -math.inf  # a unit scored out (end-of-text)
    lp = torch.log_softmax(logits, dim=-1)
    prev = torch.randint(0, V, (5, 7), generator=gen)
    out = fix(lp, prev)
    assert torch.allclose(out.exp().sum(-1), torch.ones(5, 7, dtype=torch.float64), atol=1e-12)
    allowed = torch.cat([torch.as_tensor(table)[prev], torch.zeros(5, 7, 16, dtype=torch.bool)], dim=-1)
    finite = lp > -math.inf
    assert (out[allowed & finite] >= lp[allowed & finite]).all()  # p' >= p wherever an encoding may go
    assert torch.allclose(out[~allowed & finite], lp[~allowed & finite] + math.log(canonical.EPS))
    assert (out[~finite] == -math.inf).all()
    # where the model gives no allowed token any mass (the coder masks end-of-text, which may be a
    # token's only allowed follower), its own distribution stands: no NaN, still summing to 1
    only = torch.zeros(V, V, dtype=torch.bool)
    only[:, 3] = True
    out = canonical.Canonical(only.numpy(), "cpu")(lp, prev)
    assert torch.equal(out, lp) and not out.isnan().any()


def test_a_canonical_score_is_never_worse_on_encoded_text(cli, tmp_path, tok):
    """Every token of an encoding is allowed, so each of its probabilities only rises."""
    from lmladder import artifacts
    from lmladder.neural import load

    tok.save(tmp_path / "bpe")
    base = ("train", "tinyshakespeare", "--preset", "gpt-tiny", "--max-steps", "6", "--eval-interval", "3",
            "--tokenizer", tmp_path / "bpe", "--token-dropout", "0.2", "--device", "cpu")
    result = cli(*base, "--canonical", "--out", tmp_path / "run", "--json")
    assert result.exit_code == 0, result
    assert json.loads((tmp_path / "run" / "config.json").read_text())["data"]["canonical"] is True
    rung = load(tmp_path / "run", artifacts.read_header(tmp_path / "run", "lmladder-model"))
    assert rung.canonical is not None
    docs = [(MIRROR / "tinyshakespeare.txt").read_text(encoding="utf-8")[-4000:]]
    renormalised = rung.score(docs).logprob
    rung.canonical = None
    plain = rung.score(docs).logprob
    # float32 arithmetic: where the model leaks nothing, p' = p to within a rounding
    assert renormalised.shape == plain.shape and (renormalised >= plain - 1e-5).all()
    assert renormalised.sum() > plain.sum()
    # an export to transformers carries the network alone, and says so
    exported = cli("export", tmp_path / "run", "--format", "hf", "--out", tmp_path / "hf", "--json")
    assert exported.exit_code == 0, exported
    assert json.loads(exported.stdout)["canonical"] is True and "canonical BPE encodings" in exported.stderr


def test_the_table_is_cached_and_a_damaged_entry_made_again(tok, table, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("LMLADDER_HOME", str(tmp_path))
    assert np.array_equal(canonical.cached_table(tok), table)
    [entry] = (tmp_path / "cache" / "canonical").iterdir()
    monkeypatch.setattr(canonical, "pair_table", lambda t: pytest.fail("read from the cache"))
    assert np.array_equal(canonical.cached_table(tok), table)
    monkeypatch.setattr(canonical, "pair_table", lambda t: table)
    for damaged in (b"not an array", b""):
        entry.write_bytes(damaged)
        assert np.array_equal(canonical.cached_table(tok), table)
    # a cache that cannot be written: the table all the same, and a line on stderr
    entry.unlink()
    from lmladder import atomic

    monkeypatch.setattr(atomic, "atomic_file", lambda path: (_ for _ in ()).throw(OSError(13, "Permission denied")))
    assert np.array_equal(canonical.cached_table(tok), table)
    assert "could not cache the canonical pair table" in capsys.readouterr().err
    assert not entry.exists()


def test_the_sampler_s_fast_path_draws_what_the_loop_draws(tok, table):
    import torch

    from lmladder.config import resolve
    from lmladder.generate import _draw_units
    from lmladder.neural import NeuralRung, build_model
    from lmladder.sampling import SampleSettings, sample_rngs

    config = resolve("gpt", "gpt-tiny", None, {"model": {"vocab_size": 448, "block_size": 16}})
    torch.manual_seed(0)
    rung = NeuralRung(build_model(config), tok, config)
    rung.canonical = canonical.Canonical(table, "cpu")
    drawn = {}
    for fast in (True, False):
        got = []

        def book(ids, alive):
            got.append(np.where(alive, ids, -1))
            return False

        prompt = rung.prompt_units("To be")
        (rung.decode_units if fast else lambda *a: _draw_units(rung, *a))(
            prompt, 40, SampleSettings(0.9), sample_rngs(5, 4), book)
        drawn[fast] = np.array(got)
    assert np.array_equal(drawn[True], drawn[False])


def test_bad_inputs(cli, tmp_path, monkeypatch, tok):
    with pytest.raises(LadderError, match="BPE tokenizer"):
        canonical.check(tokens.char_tokenizer())
    base = ("train", "tinyshakespeare", "--preset", "gpt-tiny", "--max-steps", "3", "--canonical")
    monkeypatch.setattr(canonical, "MAX_VOCAB", 300)
    with pytest.raises(LadderError, match="at most 300"):
        canonical.check(tok)
    tok.save(tmp_path / "bpe")
    assert_error(cli(*base, "--tokenizer", tmp_path / "bpe", "--out", tmp_path / "big"), "400 tokens, at most 300")
    monkeypatch.undo()
    assert_error(cli(*base, "--out", tmp_path / "c"), "--canonical", "BPE tokenizer")
    assert not (tmp_path / "c").exists() and not (tmp_path / "big").exists()
    from lmladder import neural_ladder

    with pytest.raises(LadderError, match="data.canonical"):
        neural_ladder.check("gpt", {"tokenizer": "char", "data": {"canonical": True}}, "cpu")
    with pytest.raises(LadderError, match="at most"):
        neural_ladder.check("gpt", {"tokenizer": "bpe", "bpe_vocab": 8192, "data": {"canonical": True}}, "cpu")
