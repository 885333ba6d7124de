"""The blocks' products in FP8 while training (lmladder.kernels.fp8, `lmladder train --fp8`): the
same arithmetic torch._scaled_mm does on an H100, run here on the CPU, against float64 products."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lmladder import kernels
from lmladder.config import resolve
from lmladder.gpt import GPT, GPTConfig
from lmladder.kernels import fp8
from tests.conftest import assert_error, plays


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got.double() - want.double()).norm() / want.double().norm()).item()


def test_quantize_keeps_the_largest_value_and_three_mantissa_bits():
    """e4m3: max|t| lands on 448 exactly; every value at least 1/64 of it (a normal e4m3 number)
    comes back within half a unit in the last of 3 mantissa bits (1/16 relative)."""
    t = torch.tensor([0.001, -0.37, 1.3, 2.0, -5.5, 12.25])
    q, scale = fp8.quantize(t, fp8.E4M3)
    assert q.dtype == fp8.E4M3 and scale.dtype == torch.float32 and scale.dim() == 0
    assert q.float().abs().max().item() == 448.0
    back = q.float() * scale
    assert back[-1].item() == pytest.approx(12.25, rel=1e-6)
    big = t.abs() >= 12.25 / 64
    assert torch.all((back - t).abs()[big] <= t.abs()[big] / 16 + 1e-7)
    zeros, zscale = fp8.quantize(torch.zeros(4), fp8.E5M2)  # an all-zero gradient: no division by zero
    assert torch.all(zeros.float() == 0) and torch.isfinite(zscale)


def test_scaled_mm_refuses_the_layouts_the_gpu_refuses():
    a = torch.randn(32, 16).to(fp8.E4M3)
    b = torch.randn(16, 48).to(fp8.E4M3)  # row-major: cuBLAS wants the second operand column-major
    one = torch.tensor(1.0)
    with pytest.raises(ValueError, match="column-major"):
        fp8.scaled_mm(a, one, b, one, torch.float32)
    assert fp8.scaled_mm(a, one, fp8.column_major(b), one, torch.float32).shape == (32, 48)


def test_fp8_linear_and_its_gradients_are_close_to_float64():
    """(64 x 96) tokens by a (48 x 96) weight and a bias: output, input and weight gradients within
    FP8's precision of the float64 ones (e4m3 for the forward, e5m2 gradients), in the input's and
    weight's dtypes; the bias's gradient is autograd's own."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 32, 96, generator=g)
    w = torch.randn(48, 96, generator=g) * 0.1
    b = torch.randn(48, generator=g)
    dout = torch.randn(2, 32, 48, generator=g)

    def run(fn, dtype):
        xs, ws, bs = (t.to(dtype).requires_grad_() for t in (x, w, b))
        out = fn(xs, ws, bs)
        out.backward(dout.to(out.dtype))
        return out, xs.grad, ws.grad, bs.grad

    want = run(F.linear, torch.float64)
    got = run(fp8.fp8_linear, torch.float32)
    assert [t.dtype for t in got] == [torch.float32] * 4
    assert relative_error(got[0], want[0]) < 0.04  # e4m3: 2^-4 at worst per operand, averaged over 96 terms
    assert relative_error(got[1], want[1]) < 0.08  # e5m2 gradients: 2^-3 at worst
    assert relative_error(got[2], want[2]) < 0.08
    assert relative_error(got[3], want[3]) < 1e-6
    assert relative_error(got[0], want[0]) > 1e-4  # it really ran in FP8


def tiny_gpt(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=64, block_size=32, n_layer=1, n_head=2, n_embd=32, dropout=0.0))


def test_gpt_trains_in_fp8_and_evaluates_and_saves_as_before():
    """use_fp8: a training forward goes through the product, an evaluating one does not; the state
    dict is the plain model's; over 25 Adam steps on one batch its loss follows plain products'
    (within 0.02 nats at every step) down from ln 64. (torch's CPU FP8 product is a slow
    reference: a small model.)"""
    g = torch.Generator().manual_seed(3)
    idx = torch.randint(0, 64, (4, 16), generator=g)
    targets = torch.randint(0, 64, (4, 16), generator=g)
    calls = []

    def spy(x, weight, bias):
        calls.append(tuple(weight.shape))
        return fp8.fp8_linear(x, weight, bias)

    losses = {}
    for name, product in (("plain", None), ("fp8", spy)):
        model = tiny_gpt()
        model.use_fp8(product)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        losses[name] = []
        for _ in range(25):
            loss = F.cross_entropy(model(idx).flatten(0, 1), targets.flatten())
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses[name].append(loss.item())
        if name == "fp8":
            assert len(calls) == 25 * 4 and (96, 32) in calls and (32, 128) in calls
            calls.clear()
            model.eval()
            with torch.no_grad():
                model(idx)
            assert not calls  # evaluation: plain products
            assert list(model.state_dict()) == list(tiny_gpt().state_dict())
    assert losses["fp8"][0] > 4.1 > 3.0 > losses["fp8"][-1]  # from ln 64 = 4.16
    assert max(abs(a - b) for a, b in zip(losses["fp8"], losses["plain"])) < 0.02


def test_fp8_traces_through_the_compiler():
    """What `--compile` does with the FP8 products, on the CPU: Dynamo and AOTAutograd trace the
    forward and backward (the aot_eager backend, which runs the traced graphs as they are)."""
    model = tiny_gpt()
    model.use_fp8(fp8.fp8_linear)
    idx = torch.randint(0, 64, (4, 32))
    eager = model(idx)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    out = compiled(idx)
    out.float().square().mean().backward()
    assert torch.allclose(out, eager)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_fp8_problems_name_each_thing_in_the_way(monkeypatch):
    config = resolve("gpt", "gpt-char", None, {"run": {"fp8": True}})
    assert fp8.fp8_problems(resolve("gpt", "gpt-char", None, {}), "cpu", 64 * 256) == []  # not asked for
    (cpu,) = fp8.fp8_problems(config, "cpu", 64 * 256)
    assert "compute capability 8.9" in cpu and "on cpu" in cpu
    odd = resolve("gpt", "gpt-char", None, {"run": {"fp8": True, "gelu_fusion": "fused"},
                                            "model": {"n_embd": 392, "n_head": 8}})
    problems = fp8.fp8_problems(odd, "cpu", 4 * 250)
    assert any("multiple of 16 (got 392)" in p for p in problems)
    assert any("multiple of 16 tokens (got 1,000" in p for p in problems)
    assert any("--gelu-fusion fused" in p for p in problems)
    monkeypatch.setattr(torch.version, "hip", "6.2")
    (rocm,) = fp8.fp8_problems(config, "cuda", 64 * 256)
    assert "NVIDIA" in rocm and "ROCm" in rocm
    mlp = resolve("mlp", None, None, {"run": {"fp8": True}})
    assert fp8.fp8_problems(mlp, "cuda", 64) == ["--fp8 is for a GPT's products; an MLP trains in bf16 or float32"]


def test_fp8_leaves_the_mlp_unfused(monkeypatch):
    """gelu_fusion auto picks the fused MLP for gpt2-124m where cuBLASLt runs, but not with --fp8."""
    from lmladder.kernels import cublaslt

    monkeypatch.setattr(cublaslt, "available", lambda device="cuda": True)
    options = {"optim": {"micro_batch_size": 64}}
    assert kernels.fused_gelu(resolve("gpt", "gpt2-124m", None, options), "cuda")
    assert not kernels.fused_gelu(resolve("gpt", "gpt2-124m", None, dict(options, run={"fp8": True})), "cuda")


def test_train_fp8_on_a_cpu_is_refused_before_training(cli, tmp_path, fresh_home):
    corpus = plays(tmp_path, 20_000)
    out = tmp_path / "run"
    result = cli("train", corpus, "--preset", "gpt-tiny", "--fp8", "--device", "cpu", "--out", out)
    assert_error(result, "--fp8 needs a CUDA GPU of compute capability 8.9", "on cpu")
    assert not out.exists()
