"""The head in FP8 (`--head-loss fp8`, lmladder.kernels.headloss.HeadCrossEntropyFP8): the e5m2
gradient by hand, the loss and gradients against float64 on the CPU (torch._scaled_mm's reference
products), the trainer's route, and the Triton kernel against the torch one on a GPU."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lmladder.kernels import headloss
from lmladder.kernels.headloss import GRAD_SCALE, head_cross_entropy, rows_torch_fp8, triton_usable
from tests.conftest import assert_error, plays
from tests.test_headloss import tiny_gpt_loss


def test_fp8_gradient_by_hand():
    """Row 1, uniform over 4 with target 2: 0.25 and -0.75 times 2^14 are e5m2 numbers (4,096 and
    -12,288), kept exactly. Row 2, logits (0, -30 ln 2) with target 0: the second probability is
    2^-30 (to 1 part in 10^9), which lands on e5m2's smallest step, 2^-16; the target's
    1 - 2^-30 is 1 in float32, so its gradient is 0 (as the bf16 head's). The transpose holds the
    same bytes."""
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, -30 * math.log(2.0), -1e9, -1e9]])
    rows, g = rows_torch_fp8(logits, torch.tensor([2, 0]))
    gt = headloss.transposed(g, use_triton=False)
    assert g.dtype == gt.dtype == torch.float8_e5m2 and g.shape == (2, 4) and gt.shape == (4, 2)
    assert g.float().tolist() == [[4096.0, 4096.0, -12288.0, 4096.0], [0.0, 2.0 ** -16, 0.0, 0.0]]
    assert torch.equal(gt.float(), g.float().t()) and gt.is_contiguous()
    assert rows.tolist() == pytest.approx([math.log(4.0), 0.0], abs=1e-6)  # log(1 + 2^-30), in float32
    assert GRAD_SCALE * 1.0 <= torch.finfo(torch.float8_e5m2).max  # |softmax - one_hot| <= 1 never saturates


def float64_head(h, w, y, scale):
    h, w = h.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    loss = F.cross_entropy(h @ w.t(), y)
    (loss * scale).backward()
    return loss.item(), h.grad, w.grad


def relative_error(got, want):
    return ((got.double() - want).norm() / want.norm()).item()


@pytest.mark.parametrize("autocast", [False, True])
def test_fp8_head_is_near_float64(autocast):
    """(96 x 64) hidden states, a vocabulary of 160, a backward scaled by 3 (as accumulation
    scales it): the loss within 1% and both gradients within FP8's precision (e4m3 inputs, the
    gradient in e5m2: about 3% here) of float64's, in the dtypes the inputs had (the hidden states'
    bf16 under autocast, the float32 weights' own)."""
    g = torch.Generator().manual_seed(0)
    h = torch.randn(96, 64, generator=g)
    w = torch.randn(160, 64, generator=g) * 0.2
    y = torch.randint(0, 160, (96,), generator=g)
    want = float64_head(h, w, y, 3.0)
    hs = (h.bfloat16() if autocast else h.clone()).requires_grad_()
    ws = w.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = head_cross_entropy(hs, ws, y, use_triton=False, fp8=True)
    (loss * 3.0).backward()
    assert loss.item() == pytest.approx(want[0], rel=0.01)
    assert hs.grad.dtype == hs.dtype and ws.grad.dtype == torch.float32
    assert relative_error(hs.grad, want[1]) < 0.06 and relative_error(ws.grad, want[2]) < 0.06
    plain = float64_head(h.bfloat16().float() if autocast else h, w, y, 3.0)  # what bf16 inputs alone cost
    assert relative_error(hs.grad, want[1]) > relative_error(plain[1].float(), want[1])  # FP8 is coarser, not free


def test_fp8_head_is_not_differentiable_twice():
    h = torch.randn(16, 16, requires_grad=True)
    w = torch.randn(32, 16, requires_grad=True)
    loss = head_cross_entropy(h, w, torch.randint(0, 32, (16,)), use_triton=False, fp8=True)
    (dh,) = torch.autograd.grad(loss, h, create_graph=True)
    with pytest.raises(RuntimeError):
        dh.sum().backward()


def test_trainer_takes_the_fp8_head_when_asked(monkeypatch):
    """loss_function with head_loss fp8 goes through HeadCrossEntropyFP8 (and fused through the
    bf16 one); the two losses agree to FP8's precision."""
    taken = []
    for cls in (headloss.HeadCrossEntropy, headloss.HeadCrossEntropyFP8):
        monkeypatch.setattr(cls, "apply", (lambda real, name: lambda *a: taken.append(name) or real(*a))(cls.apply,
                                                                                                         cls.__name__))
    fused, fp8 = tiny_gpt_loss(head_loss="fused")[0], tiny_gpt_loss(head_loss="fp8")[0]
    assert taken == ["HeadCrossEntropy", "HeadCrossEntropyFP8"]
    assert fp8 == pytest.approx(fused, rel=0.01)


def test_config_and_plan_refuse_what_the_fp8_head_cannot_run():
    from lmladder.config import resolve
    from lmladder.kernels.fp8 import fp8_problems
    from lmladder.errors import LadderError

    with pytest.raises(LadderError, match="head_loss fp8 is for a GPT"):
        resolve("mlp", None, None, {"run": {"head_loss": "fp8"}})
    char = resolve("gpt", "gpt-char", None, {"model": {"vocab_size": 65}, "run": {"head_loss": "fp8"}})
    problems = fp8_problems(char, "cpu", 64 * 256)
    assert any("--head-loss fp8 needs a vocabulary of a multiple of 16 (got 65" in p for p in problems)
    assert any("--head-loss fp8 needs a CUDA GPU" in p and "leave --head-loss fp8 out" in p for p in problems)
    both = resolve("gpt", "gpt-char", None, {"model": {"vocab_size": 64}, "run": {"head_loss": "fp8", "fp8": True}})
    assert fp8_problems(both, "cpu", 64 * 256) == [
        "--fp8 and --head-loss fp8 needs a CUDA GPU of compute capability 8.9 or newer (H100, H200, L40S, "
        "RTX 40xx); this run is on cpu: leave --fp8 and --head-loss fp8 out"]


@pytest.mark.skipif(not triton_usable(torch.device("cuda")), reason="needs a CUDA GPU with Triton")
@pytest.mark.parametrize("n,vocab,block,tile", [(1000, 50304, 8192, 128), (4096, 50304, 4096, 64),
                                                (333, 65, 8192, 32), (64, 8192, 8192, 128)])
def test_triton_fp8_rows_match_torch(n, vocab, block, tile):
    """The Triton kernels (the row read in blocks or whole; the transpose's last squares
    part-filled where n or the vocabulary is not a multiple of `tile`) against rows_torch_fp8
    on the same bf16 logits: the losses to float32 rounding; the e5m2 gradients equal but where
    the two exp functions round a value across a rounding boundary (one step, rarely); the
    transpose the same bytes."""
    g = torch.Generator(device="cuda").manual_seed(0)
    logits = 4 * torch.randn(n, vocab, device="cuda", generator=g).to(torch.bfloat16)
    y = torch.randint(0, vocab, (n,), device="cuda", generator=g)
    rows_a, g_a = headloss.rows_triton_fp8(logits, y, block)
    gt_a = headloss.transposed(g_a, True, tile)
    rows_b, g_b = rows_torch_fp8(logits, y)
    torch.testing.assert_close(rows_a, rows_b, rtol=1e-5, atol=1e-4)
    differ = g_a.float() != g_b.float()
    assert differ.float().mean().item() < 1e-3
    steps = (g_a.float() - g_b.float()).abs()[differ] / g_b.float().abs()[differ].clamp(min=2.0 ** -16)
    assert differ.sum() == 0 or steps.max().item() <= 0.5  # one e5m2 step is at most a quarter to a half
    assert torch.equal(gt_a.view(torch.uint8), g_a.view(torch.uint8).t())


def test_compiled_blocks_hand_the_fp8_head_its_e4m3_copy(monkeypatch):
    """With --compile the compiled part (the blocks, up to the head) also makes h's e4m3 copy and
    scale, so the compiler fuses them into the last layer norm; through AOT autograd's eager
    backend (no C++ compiler needed) the loss and the gradients are the uncompiled run's."""
    real, apply, given = torch.compile, headloss.HeadCrossEntropyFP8.apply, []
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: real(fn, backend="aot_eager", **kw))
    monkeypatch.setattr(headloss.HeadCrossEntropyFP8, "apply", lambda *a: given.append(a[4] is not None) or apply(*a))
    (eager, a), (compiled, b) = (tiny_gpt_loss(head_loss="fp8", compile=c) for c in (False, True))
    assert given == [True, True]  # the head never made its own copy
    assert compiled == pytest.approx(eager, rel=1e-6)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-6)


def test_train_with_the_fp8_head_on_a_cpu_is_refused_before_training(cli, tmp_path, fresh_home):
    corpus = plays(tmp_path, 20_000)
    out = tmp_path / "run"
    result = cli("train", corpus, "--preset", "gpt-tiny", "--head-loss", "fp8", "--device", "cpu", "--out", out)
    assert_error(result, "--head-loss fp8 needs a CUDA GPU of compute capability 8.9", "on cpu")
    assert not out.exists()
