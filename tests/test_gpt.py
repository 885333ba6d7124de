"""The GPT and MLP models, and the neural rung's scoring: shapes, causality, GPT-2's names, a
proper distribution."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lmladder.gpt import GPT, GPTConfig  # noqa: E402
from lmladder.mlp import MLP, MLPConfig  # noqa: E402
from lmladder.config import TrainConfig  # noqa: E402
from lmladder.errors import LadderError  # noqa: E402
from lmladder.neural import NeuralRung, window_logprobs, window_plan  # noqa: E402

TINY = GPTConfig(block_size=16, vocab_size=40, n_layer=2, n_head=2, n_embd=16)


def test_shapes_and_flops():
    torch.manual_seed(0)
    model = GPT(TINY)
    logits = model(torch.randint(0, 40, (3, 16)))
    assert logits.shape == (3, 16, 40)
    assert model.num_params() == sum(p.numel() for p in model.parameters()) - 16 * 16
    assert model.flops_per_token() == 6 * model.num_params() + 12 * 2 * 16 * 16
    with pytest.raises(ValueError):
        model(torch.zeros((1, 17), dtype=torch.long))
    with pytest.raises(ValueError):
        GPTConfig(n_embd=10, n_head=3)


def test_looped_blocks_are_the_unrolled_gpt():
    """n_loop 2 over 2 blocks is the 4-block GPT whose blocks 2 and 3 are copies of 0 and 1: the
    same logits, half the block parameters, the unrolled FLOPs."""
    torch.manual_seed(0)
    looped = GPT(dataclasses.replace(TINY, n_loop=2)).eval()
    plain = GPT(dataclasses.replace(TINY, n_layer=4)).eval()
    state = looped.state_dict()
    state.update({k.replace(f"h.{i}.", f"h.{i + 2}."): v for k, v in looped.state_dict().items()
                  for i in (0, 1) if k.startswith(f"transformer.h.{i}.")})
    plain.load_state_dict(state)
    x = torch.randint(0, 40, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(looped(x), plain(x), atol=0, rtol=0)
    assert looped.config.depth == 4 and looped.blocks() == [*looped.transformer.h] * 2
    assert looped.flops_per_token() == plain.flops_per_token()
    assert looped.num_params() == plain.num_params() - sum(p.numel() for p in plain.transformer.h[2:].parameters())


def test_n_loop_is_bounded():
    from lmladder.config import resolve

    for bad in (0, 65):
        with pytest.raises(LadderError, match="n_loop"):
            resolve("gpt", "gpt-tiny", {"model": {"n_loop": bad}, "run": {"max_steps": 1}}, {})


ROTARY = GPTConfig(block_size=16, vocab_size=40, n_layer=2, n_head=2, n_embd=16, position="rotary")


@pytest.mark.parametrize("make", [lambda: GPT(TINY), lambda: GPT(ROTARY), lambda: MLP(MLPConfig(block_size=4, vocab_size=40, n_embd=8,
                                                                           n_hidden=16))])
def test_causal(make):
    """Changing the unit at position j changes no prediction before j."""
    torch.manual_seed(1)
    model = make().eval()
    x = torch.randint(0, 40, (2, 16))
    y = x.clone()
    y[:, 9] = (y[:, 9] + 1) % 40
    a, b = model(x), model(y)
    assert torch.allclose(a[:, :9], b[:, :9], atol=1e-6)
    assert not torch.allclose(a[:, 9], b[:, 9])


def test_gpt2_parameter_names():
    names = set(GPT(TINY).state_dict())
    expected = {"transformer.wte.weight", "transformer.wpe.weight", "transformer.ln_f.weight",
                "transformer.ln_f.bias", "lm_head.weight"}
    for i in range(2):
        for part in ("ln_1", "attn.c_attn", "attn.c_proj", "ln_2", "mlp.c_fc", "mlp.c_proj"):
            expected |= {f"transformer.h.{i}.{part}.weight", f"transformer.h.{i}.{part}.bias"}
    assert names == expected
    model = GPT(TINY)
    assert model.lm_head.weight is model.transformer.wte.weight  # tied
    # rotary positions: the same names without the position table, and nothing else saved
    assert set(GPT(ROTARY).state_dict()) == expected - {"transformer.wpe.weight"}


def test_a_rotary_gpt_checked_on_the_meta_device_does_not_import_dynamo():
    """refuse_misfit builds a saved GPT on the meta device; a rotary GPT's tables are computed on
    the CPU there, so loading one does not pay torch._dynamo's import (seconds), and they are the
    CPU's tables whatever the device."""
    import subprocess
    import sys

    code = "\n".join([
        "import sys, torch",
        "from lmladder.gpt import GPT, GPTConfig",
        "from lmladder.neural import refuse_misfit",
        "c = GPTConfig(block_size=16, vocab_size=40, n_layer=1, n_head=2, n_embd=16, position='rotary')",
        "refuse_misfit(lambda: GPT(c), {}, 'x', 'y')",
        "assert GPT(c).transformer.h[0].attn.rotary.cos.shape == (16, 4)",
        "print('torch._dynamo' in sys.modules)",
        "with torch.device('meta'):",  # (its initialisers, not stubbed here, import it)
        "    assert GPT(c).transformer.h[0].attn.rotary.cos.is_meta"])
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "False", run.stderr[-2000:]


def test_rotary_positions_are_relative():
    """A query at i and a key at j score the same as at i + s and j + s; the turn keeps norms;
    position 0 is not turned."""
    from lmladder.gpt import Rotary

    torch.manual_seed(2)
    rot = Rotary(8, 32)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)
    score = lambda i, j: float((rot(q, torch.tensor([i])) * rot(k, torch.tensor([j]))).sum())  # noqa: E731
    for i, j, shift in ((5, 2, 7), (9, 9, 20), (3, 0, 28)):
        assert score(i, j) == pytest.approx(score(i + shift, j + shift), abs=1e-5)
    assert score(5, 2) != pytest.approx(score(5, 3), abs=1e-3)
    assert torch.allclose(rot(q, torch.tensor([11])).norm(), q.norm())
    assert torch.equal(rot(q, torch.tensor([0])), q)
    model = GPT(ROTARY)
    assert model.num_params() == sum(p.numel() for p in model.parameters())  # no table to leave out
    with pytest.raises(ValueError, match="position"):
        GPTConfig(position="absolute")
    with pytest.raises(ValueError, match="even head size"):
        GPTConfig(n_embd=6, n_head=2, position="rotary")


def test_window_plan_covers_every_target_once():
    for n in range(0, 60):
        for window, overlap in ((8, 4), (8, 0), (8, 7), (1, 0)):
            covered = []
            for start, first in window_plan(n, window, overlap):
                last = min(start + window, n - 1)
                covered.extend(range(start + first + 1, last + 1))
                assert first == 0 or first >= overlap
            assert covered == list(range(1, n)), (n, window, overlap)


class _Tok:
    """A stand-in tokenizer: ids 0..7 are letters a..h, 8 is eot."""

    kind, vocab_size, eot_id = "char", 9, 8

    def encode(self, text):
        return np.array([ord(c) - 97 for c in text], dtype=np.int64)

    def encode_batch(self, texts):
        return [self.encode(t) for t in texts]

    def spelling_logprob(self, ids):
        return np.zeros(len(ids))

    def decode(self, ids, rng=None):
        return "".join(chr(97 + i) for i in ids if i != 8)

    def stream_decoder(self, rng=None):
        return lambda unit: self.decode([unit], rng)


def _rung(kind="gpt"):
    torch.manual_seed(2)
    if kind == "gpt":
        cfg = TrainConfig("gpt", GPTConfig(block_size=8, vocab_size=64, n_layer=1, n_head=2, n_embd=16))
        model = GPT(cfg.model)
    else:
        cfg = TrainConfig("mlp", MLPConfig(block_size=3, vocab_size=9, n_embd=4, n_hidden=8, pad_id=8))
        model = MLP(cfg.model)
    cfg.run.eval_batch_size = 3
    return NeuralRung(model, _Tok(), cfg)


@pytest.mark.parametrize("kind", ["gpt", "mlp"])
def test_score_is_a_proper_distribution(kind):
    """Over the units a document can continue with (not eot, not the vocabulary's padding), the
    probabilities sum to 1, after any context."""
    rung = _rung(kind)
    for prefix in ("", "abc", "hgfedcbaabc"):
        total = sum(math.exp(rung.score([prefix + c]).logprob[-1]) for c in "abcdefgh")
        assert total == pytest.approx(1.0, abs=1e-6)


def test_score_matches_a_direct_forward_and_covers_long_documents():
    rung = _rung("gpt")
    doc = "abcdeh"  # shorter than the context: one forward pass over [eot] doc
    ids = torch.tensor([[8] + [ord(c) - 97 for c in doc]])
    logits = rung.model(ids)[0, :-1, :9].clone()
    logits[:, 8] = -math.inf
    expected = torch.log_softmax(logits, -1).gather(-1, ids[0, 1:, None])[:, 0].double().detach().numpy()
    s = rung.score([doc])
    np.testing.assert_allclose(s.logprob, expected, atol=1e-6)
    long_docs = ["abcdefgh" * 5, "", "h", "abc" * 11]
    s = rung.score(long_docs)
    assert s.logprob.shape == (sum(len(d) for d in long_docs),) and s.chars == s.logprob.size
    assert np.all(s.logprob < 0) and np.all(np.isfinite(s.logprob))
    # the same documents, scored one by one, give the same numbers (batching changes nothing)
    one_by_one = np.concatenate([rung.score([d]).logprob for d in long_docs])
    np.testing.assert_allclose(s.logprob, one_by_one, atol=1e-6)


def test_window_logprobs_deterministic():
    rung = _rung("gpt")
    seq = np.random.default_rng(0).integers(0, 9, 100)
    a = window_logprobs(rung.model, [seq], 8, 0, 4, "cpu")[0]
    b = window_logprobs(rung.model, [seq], 8, 0, 5, "cpu")[0]
    assert a.shape == (99,)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_sample_is_seeded_and_long_enough():
    from lmladder.generate import generate

    rung = _rung("gpt")
    a = generate(rung, "ab", max_new_chars=12, seed=3, num_samples=2)
    assert a == generate(rung, "ab", max_new_chars=12, seed=3, num_samples=2)
    assert a[0] == generate(rung, "ab", max_new_chars=12, seed=3, num_samples=1)[0]  # batching changes nothing
    # each sample has 12 new characters, or fewer where it reached the end of a document
    assert all(s.startswith("ab") and len(s) <= 14 for s in a)
    pieces = []
    streamed = generate(rung, "ab", max_new_chars=12, seed=3, num_samples=1, on_text=lambda i, p: pieces.append(p))
    assert "ab" + "".join(pieces) == streamed[0]


def test_residual_stream_dtype_under_autocast():
    """residual_dtype "autocast" keeps the stream between blocks in the autocast dtype (bf16 here,
    on the CPU); float32 keeps it in float32; without autocast the switch changes nothing."""
    def run(residual, autocast):
        torch.manual_seed(0)
        model = GPT(GPTConfig(block_size=16, vocab_size=40, n_layer=2, n_head=2, n_embd=16, residual_dtype=residual))
        seen = []
        for block in model.transformer.h:
            block.register_forward_hook(lambda mod, args, out: seen.append(out.dtype))
        idx = torch.randint(0, 40, (2, 16), generator=torch.Generator().manual_seed(3))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            logits = model(idx)
        return logits.float(), seen

    plain, plain_dtypes = run("float32", False)
    same, same_dtypes = run("autocast", False)
    assert torch.equal(plain, same) and plain_dtypes == same_dtypes == [torch.float32] * 2
    wide, wide_dtypes = run("float32", True)
    narrow, narrow_dtypes = run("autocast", True)
    assert wide_dtypes == [torch.float32] * 2 and narrow_dtypes == [torch.bfloat16] * 2
    assert not torch.equal(wide, narrow)
    torch.testing.assert_close(narrow, plain, atol=0.05, rtol=0.05)  # bf16 rounding, the same model
    with pytest.raises(ValueError, match="residual_dtype"):
        GPTConfig(residual_dtype="bfloat16")
