"""The fused head + cross-entropy (lmladder.kernels.headloss) against nn.Linear + F.cross_entropy."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lmladder.kernels.headloss import head_cross_entropy, rows_torch, triton_usable


def plain(h, w, y):
    return F.cross_entropy((h @ w.t()).reshape(-1, w.shape[0]).float(), y.reshape(-1))


def grads(loss_fn, h, w, y, scale=1.0):
    h, w = h.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    loss = loss_fn(h, w, y)
    (loss * scale).backward()
    return loss.detach(), h.grad, w.grad


def test_rows_by_hand():
    """Two rows over a vocabulary of 3: losses and the gradient written over the logits."""
    logits = torch.tensor([[0.0, 0.0, 0.0], [math.log(2.0), 0.0, 0.0]])
    rows = rows_torch(logits, torch.tensor([1, 0]), scale=0.5)
    assert rows.tolist() == pytest.approx([math.log(3.0), math.log(2.0)])  # uniform; p(0) = 2/4 in row 2
    torch.testing.assert_close(logits, torch.tensor([[1 / 6, 1 / 6 - 0.5, 1 / 6], [0.25 - 0.5, 0.125, 0.125]]))


@pytest.mark.parametrize("vocab", [3, 65, 130])
def test_matches_linear_and_cross_entropy(vocab):
    """Loss and both gradients (under a scaled backward, as gradient accumulation does) equal the
    plain route's in float64; each gradient row of the logits sums to 0."""
    g = torch.Generator().manual_seed(vocab)
    h = torch.randn(2, 7, 16, generator=g, dtype=torch.float64)
    w = torch.randn(vocab, 16, generator=g, dtype=torch.float64)
    y = torch.randint(0, vocab, (2, 7), generator=g)
    fused = grads(lambda h, w, y: head_cross_entropy(h, w, y, use_triton=False), h, w, y, scale=0.25)
    ref = grads(plain, h, w, y, scale=0.25)
    torch.testing.assert_close(fused[0].double(), ref[0].double(), rtol=1e-6, atol=1e-6)
    for a, b in zip(fused[1:], ref[1:]):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    logits = (h @ w.t()).reshape(-1, vocab)
    rows_torch(logits, y.reshape(-1), 1.0)
    torch.testing.assert_close(logits.sum(1), torch.zeros(14, dtype=torch.float64))


def test_autocast_runs_the_head_in_its_dtype(monkeypatch):
    """Under CPU bf16 autocast the head's product (and so the gradient written over it) is bf16,
    as nn.Linear's would be, and loss and gradients are near the float32 ones; without autocast
    it is float32."""
    from lmladder.kernels import headloss

    seen = []
    real = headloss.rows_torch
    monkeypatch.setattr(headloss, "rows_torch", lambda logits, *a: seen.append(logits.dtype) or real(logits, *a))
    g = torch.Generator().manual_seed(0)
    h, w = torch.randn(32, 16, generator=g), torch.randn(50, 16, generator=g)
    y = torch.randint(0, 50, (32,), generator=g)
    fused = lambda h, w, y: head_cross_entropy(h, w, y, use_triton=False)  # noqa: E731
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, dh, dw = grads(fused, h, w, y)
    ref = grads(plain, h, w, y)
    assert abs(loss.item() - ref[0].item()) < 0.05
    torch.testing.assert_close(dw, ref[2], rtol=0.05, atol=0.01)
    grads(fused, h, w, y)
    assert seen == [torch.bfloat16, torch.float32]


def test_auto_fuses_large_vocabularies_on_a_gpu_only(monkeypatch):
    from lmladder import kernels
    from lmladder.kernels import headloss
    from lmladder.config import resolve

    monkeypatch.setattr(headloss, "triton_usable", lambda device: torch.device(device).type == "cuda")

    def fused(vocab, kind="auto", model="gpt", device="cuda"):
        preset = "gpt-tiny" if model == "gpt" else "mlp"
        return kernels.fused_head(resolve(model, preset, None, {"model": {"vocab_size": vocab},
                                                               "run": {"head_loss": kind}}), device)

    assert not fused(128) and not fused(1023) and fused(1024) and fused(50304)
    assert not fused(50304, device="cpu") and fused(50304, "fused", device="cpu")  # measured on a GPU only
    assert fused(65, "fused") and not fused(50304, "plain") and not fused(50304, model="mlp")
    monkeypatch.setattr(headloss, "triton_usable", lambda device: False)  # a GPU without Triton
    assert not fused(50304) and fused(50304, "fused")


def test_backward_is_not_differentiable_twice():
    """The backward pass reuses the saved gradient; asking for a second derivative is an error,
    never a wrong number."""
    h = torch.randn(4, 8, requires_grad=True)
    w = torch.randn(10, 8, requires_grad=True)
    loss = head_cross_entropy(h, w, torch.randint(0, 10, (4,)), use_triton=False)
    (dh,) = torch.autograd.grad(loss, h, create_graph=True)
    with pytest.raises(RuntimeError):
        dh.sum().backward()


def tiny_gpt_loss(**run):
    """(loss, model): a 2-layer GPT with a vocabulary of 64, seeded alike at every call, and its
    loss on one (3, 32) batch through the trainer's loss_function, backward done."""
    from lmladder import neural
    from lmladder.config import resolve
    from lmladder.train import loss_function

    config = resolve("gpt", "gpt-tiny", None, {"model": {"vocab_size": 64}, "run": run})
    torch.manual_seed(0)
    model = neural.build_model(config)
    x = torch.randint(0, 64, (3, 33), generator=torch.Generator().manual_seed(1))
    loss = loss_function(model, config)(x[:, :-1], x[:, 1:])
    loss.backward()
    return loss.item(), model


def test_trained_gpt_loss_is_the_plain_one():
    """A GPT's loss through head_loss fused equals logits + cross_entropy (the trainer's two routes)."""
    (fused, a), (plain, b) = tiny_gpt_loss(head_loss="fused"), tiny_gpt_loss(head_loss="plain")
    assert fused == pytest.approx(plain, rel=1e-6)
    torch.testing.assert_close(a.transformer.wte.weight.grad, b.transformer.wte.weight.grad, rtol=1e-5, atol=1e-7)


@pytest.mark.skipif(not triton_usable(torch.device("cuda")), reason="needs a CUDA GPU with Triton")
@pytest.mark.parametrize("vocab,block,dtype", [(65, 8192, torch.bfloat16), (8192, 8192, torch.bfloat16),
                                               (50304, 8192, torch.bfloat16), (50304, 4096, torch.bfloat16),
                                               (65, 8192, torch.float32), (130, 64, torch.float64)])
def test_triton_rows_match_torch(vocab, block, dtype):
    """The Triton kernel (GPU), with the row in registers or read in blocks, against rows_torch
    on the same logits (bf16, as a GPU run's are; float32 and float64, as a direct call's may be)."""
    g = torch.Generator(device="cuda").manual_seed(0)
    logits = 4 * torch.randn(1000, vocab, device="cuda", generator=g).to(dtype)
    y = torch.randint(0, vocab, (1000,), device="cuda", generator=g)
    a, b = logits.clone(), logits.clone()
    from lmladder.kernels.headloss import rows_triton

    rows_a, rows_b = rows_triton(a, y, 1e-3, block), rows_torch(b, y, 1e-3)
    torch.testing.assert_close(rows_a, rows_b.float(), rtol=1e-5, atol=1e-4)  # the kernel's rows are float32
    torch.testing.assert_close(a.float(), b.float(), rtol=0.01, atol=1e-6)
