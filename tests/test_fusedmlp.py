"""The GPT's MLP with GELU inside its matrix products (lmladder.kernels.fusedmlp and
lmladder.kernels.cublaslt) against Linear -> GELU -> Linear."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lmladder import kernels
from lmladder.kernels import fusedmlp
from lmladder.config import resolve
from lmladder.gpt import GPT, GPTConfig, MLP

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="cuBLASLt's epilogues need a CUDA GPU")


def gelu_by_hand(u: float) -> float:
    return 0.5 * u * (1 + math.tanh(math.sqrt(2 / math.pi) * (u + 0.044715 * u ** 3)))


def test_fc_gelu_and_its_gradient_by_hand():
    """One token, one unit: u = 2 * 1 + 0.5, y = GPT-2's tanh GELU of 2.5; the backward step's
    g = (dout w_proj) * gelu'(u), with gelu' by a central difference."""
    u, y = fusedmlp.fc_gelu_torch(torch.tensor([[1.0]], dtype=torch.float64), torch.tensor([[2.0]], dtype=torch.float64),
                                  torch.tensor([0.5], dtype=torch.float64))
    assert u.item() == 2.5
    assert y.item() == pytest.approx(gelu_by_hand(2.5), rel=1e-12)
    g = fusedmlp.gelu_grad_torch(torch.tensor([[3.0]], dtype=torch.float64), torch.tensor([[-1.0]], dtype=torch.float64), u)
    slope = (gelu_by_hand(2.5 + 1e-6) - gelu_by_hand(2.5 - 1e-6)) / 2e-6
    assert g.item() == pytest.approx(-3.0 * slope, rel=1e-8)


def mlp_pair(bias: bool, seed: int = 0):
    torch.manual_seed(seed)
    mlp = MLP(GPTConfig(n_embd=16, n_head=2, bias=bias)).double()
    for p in mlp.parameters():
        torch.nn.init.normal_(p, std=0.3)
    return mlp


def output_and_grads(mlp, x, dout):
    x = x.detach().clone().requires_grad_()
    out = mlp(x)
    out.backward(dout)
    return [out.detach(), x.grad, *(p.grad.clone() for p in mlp.parameters())]


@pytest.mark.parametrize("bias", [True, False])
def test_fused_mlp_matches_the_modules(bias):
    """Output and the gradients of the input and of every weight and bias equal Linear -> GELU ->
    Linear's in float64 (a batch of 2 x 5 tokens, 16 wide, 64 inside)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 5, 16, generator=g, dtype=torch.float64)
    dout = torch.randn(2, 5, 16, generator=g, dtype=torch.float64)
    plain = output_and_grads(mlp_pair(bias), x, dout)
    fused_module = mlp_pair(bias)
    fused_module.fused_forward = fusedmlp.fused_mlp
    fused = output_and_grads(fused_module, x, dout)
    assert len(plain) == len(fused) == (6 if bias else 4)
    for a, b in zip(fused, plain):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_gpt_with_fused_mlps_compiled_and_not():
    """A GPT's loss and gradients are the same with use_fused_mlp, eager and through
    torch.compile (AOTAutograd's eager backend: the custom ops' fake versions give the shapes)."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=16, vocab_size=50, block_size=8)).double()
    idx = torch.randint(0, 50, (3, 8))

    def loss_and_grads(fn):
        model.zero_grad()
        loss = F.cross_entropy(fn(idx).reshape(-1, 50), idx.roll(1, 1).reshape(-1))
        loss.backward()
        return [loss.detach(), *(p.grad.clone() for p in model.parameters())]

    plain = loss_and_grads(model)
    model.use_fused_mlp(fusedmlp.fused_mlp)
    assert all(block.mlp.fused_forward is fusedmlp.fused_mlp for block in model.transformer.h)
    for fn in (model, torch.compile(model, backend="aot_eager")):
        for a, b in zip(loss_and_grads(fn), plain):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_custom_ops_pass_torch_opcheck():
    """The two custom ops' schemas, fake (meta) versions and dispatch are consistent."""
    g = torch.Generator().manual_seed(2)
    x, w, b = torch.randn(8, 16, generator=g), torch.randn(32, 16, generator=g), torch.randn(32, generator=g)
    torch.library.opcheck(fusedmlp.fc_gelu, (x, w, b))
    torch.library.opcheck(fusedmlp.fc_gelu, (x, w, None))
    u, _ = fusedmlp.fc_gelu_torch(x, w, b)
    torch.library.opcheck(fusedmlp.gelu_grad, (torch.randn(8, 16, generator=g), torch.randn(16, 32, generator=g), u))


@pytest.mark.parametrize("first,second", [("x", "x"), ("c_proj.weight", "c_fc.weight")])
def test_second_derivative_is_an_error(first, second):
    """The fused backward pass is not itself differentiable: a second derivative, through the
    input or between weights (whose paths run through saved activations), fails loudly."""
    mlp = mlp_pair(True)
    mlp.fused_forward = fusedmlp.fused_mlp
    x = torch.randn(3, 16, dtype=torch.float64, requires_grad=True)
    named = {"x": x, **dict(mlp.named_parameters())}
    (g,) = torch.autograd.grad(mlp(x).square().sum(), named[first], create_graph=True)
    with pytest.raises(RuntimeError):
        torch.autograd.grad(g.sum(), named[second])


def test_only_the_gradients_asked_for():
    """A frozen weight gets no gradient and the backward pass skips it."""
    mlp = mlp_pair(True)
    mlp.fused_forward = fusedmlp.fused_mlp
    mlp.c_fc.weight.requires_grad_(False)
    mlp(torch.randn(3, 16, dtype=torch.float64)).sum().backward()
    assert mlp.c_fc.weight.grad is None and mlp.c_fc.bias.grad is not None and mlp.c_proj.weight.grad is not None


@pytest.mark.parametrize("kind,preset,micro,device,fused", [
    ("auto", "gpt-tiny", 0, "cpu", False),  # off a GPU the compiled plain MLP does the same arithmetic
    ("fused", "gpt-tiny", 0, "cpu", True),
    ("plain", "gpt2-124m", 64, "cuda", False),
    ("auto", "gpt-char", 0, "cuda", False),  # 64 x 256 tokens a micro-batch: plain was faster
    ("auto", "mlp", 0, "cuda", False),
])
def test_gelu_fusion_policy(kind, preset, micro, device, fused):
    model = "mlp" if preset == "mlp" else "gpt"
    options = {} if model == "mlp" else {"run": {"gelu_fusion": kind}, "optim": {"micro_batch_size": micro}}
    assert kernels.fused_gelu(resolve(model, preset, None, options), device) is fused


def test_gelu_fusion_auto_on_a_gpu_by_micro_batch(monkeypatch):
    """auto: fused from FUSED_GELU_MIN_TOKENS tokens a micro-batch, where cuBLASLt runs."""
    from lmladder.kernels import cublaslt

    monkeypatch.setattr(cublaslt, "available", lambda device="cuda": True)
    for micro, fused in ((64, True), (32, False), (0, True)):  # 0: the whole batch of 512 sequences
        config = resolve("gpt", "gpt2-124m", None, {"optim": {"micro_batch_size": micro}})
        assert kernels.fused_gelu(config, "cuda") is fused
    shared = resolve("gpt", "gpt2-124m", None, {"optim": {"micro_batch_size": 0, "batch_size": 128}})
    assert kernels.fused_gelu(shared, "cuda", world=2) and not kernels.fused_gelu(shared, "cuda", world=4)
    fp32 = resolve("gpt", "gpt2-124m", None, {"run": {"dtype": "float32"}})
    assert not kernels.fused_gelu(fp32, "cuda")  # cuBLASLt's epilogues here are bf16/fp16 only
    monkeypatch.setattr(cublaslt, "available", lambda device="cuda": False)
    assert not kernels.fused_gelu(resolve("gpt", "gpt2-124m", None, {}), "cuda")


def test_epilogues_refused_off_a_gpu():
    x = torch.randn(8, 16, dtype=torch.bfloat16)
    assert not fusedmlp.epilogue_usable(x, torch.randn(32, 16, dtype=torch.bfloat16))


@CUDA
def test_epilogues_refused_for_odd_shapes_dtypes_and_layouts():
    def t(*shape, dtype=torch.bfloat16):
        return torch.randn(*shape, device="cuda").to(dtype)

    assert fusedmlp.epilogue_usable(t(8, 16), t(32, 16), t(32))
    assert not fusedmlp.epilogue_usable(t(6, 16), t(32, 16))  # rows not a multiple of 8
    assert not fusedmlp.epilogue_usable(t(8, 16), t(32, 16), t(30))
    assert not fusedmlp.epilogue_usable(t(0, 16), t(32, 16))  # empty
    assert not fusedmlp.epilogue_usable(t(8, 16, dtype=torch.float32), t(32, 16, dtype=torch.float32))
    assert not fusedmlp.epilogue_usable(t(16, 8).t(), t(32, 16))  # not contiguous
    x = t(8, 16)
    u, y = fusedmlp.fc_gelu(x[:6], t(32, 16), None)  # refused: torch's arithmetic, the same function
    torch.testing.assert_close(y, F.gelu(u, approximate="tanh"))


@CUDA
@pytest.mark.parametrize("rows,bias", [(4096, True), (1000, True), (1000, False)])
def test_cublaslt_epilogues_match_torch(rows, bias):
    """cuBLASLt's GELU_AUX(_BIAS) and DGELU products against torch's, in bf16 (u exactly; y and
    g to bf16 rounding)."""
    from lmladder.kernels import cublaslt

    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(rows, 768, device="cuda", dtype=torch.bfloat16, generator=g)
    w = torch.randn(3072, 768, device="cuda", dtype=torch.bfloat16, generator=g) * 0.03
    b = torch.randn(3072, device="cuda", dtype=torch.bfloat16, generator=g) * 0.1 if bias else None
    assert fusedmlp.epilogue_usable(x, w, b)
    u0, y0 = fusedmlp.fc_gelu_torch(x, w, b)
    u1, y1 = cublaslt.gelu_aux(x, w, b)
    torch.testing.assert_close(u1, u0, rtol=1e-2, atol=1e-2)  # the chosen algorithm may sum in another order
    torch.testing.assert_close(y1, y0, rtol=1e-2, atol=1e-2)
    dout = torch.randn(rows, 768, device="cuda", dtype=torch.bfloat16, generator=g)
    w2 = torch.randn(768, 3072, device="cuda", dtype=torch.bfloat16, generator=g) * 0.03
    torch.testing.assert_close(cublaslt.dgelu(dout, w2, u0), fusedmlp.gelu_grad_torch(dout, w2, u0),
                               rtol=1e-2, atol=2e-2)


@CUDA
def test_fused_mlp_on_the_gpu_in_a_cuda_graph():
    """Under bf16 autocast the fused block's output and gradients are near the plain block's (to
    1% of each tensor's largest entry: both round to bf16, in different places), and a recorded
    CUDA graph of forward + backward replays to the same numbers as eager calls."""
    torch.manual_seed(0)
    mlp = MLP(GPTConfig(n_embd=768, n_head=12)).cuda()
    x = torch.randn(4, 256, 768, device="cuda", requires_grad=True)
    dout = torch.randn(4, 256, 768, device="cuda")

    def run(fused):
        mlp.fused_forward = fusedmlp.fused_mlp if fused else None
        mlp.zero_grad(set_to_none=False)
        x.grad = None
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = mlp(x)
        out.backward(dout)
        return [out.detach().float().clone(), x.grad.clone(), *(p.grad.clone() for p in mlp.parameters())]

    plain, fused = run(False), run(True)
    for a, b in zip(fused, plain):
        assert (a - b).abs().max() <= 1e-2 * b.abs().max()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        run(True)  # warm-up on the side stream, as torch's graph recipe asks
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        mlp.fused_forward = fusedmlp.fused_mlp
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = mlp(x)
        out.backward(dout)
    grads = [x.grad, *(p.grad for p in mlp.parameters())]
    for g in grads:
        g.zero_()  # the recorded backward pass adds into these
    graph.replay()
    torch.cuda.synchronize()
    torch.testing.assert_close(out.float(), fused[0], rtol=0, atol=0)
    for a, b in zip(grads, fused[1:]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_the_fastest_algorithm_is_timed_once_and_kept(monkeypatch):
    """cublaslt._fastest's logic with a simulated GPU clock: each algorithm runs once untimed and
    3 times timed, the fastest is kept and never timed again; while a CUDA graph records, the
    heuristic's first is used, untimed and not kept."""
    from lmladder.kernels import cublaslt

    clock = [0.0]

    class Event:
        def __init__(self, enable_timing=False):
            self.at = None

        def record(self):
            self.at = clock[0]

        def synchronize(self):
            pass

        def elapsed_time(self, end):
            return end.at - self.at

    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: False)
    monkeypatch.setattr(cublaslt, "CHOSEN", {})
    monkeypatch.setattr(cublaslt, "TIMINGS", {})
    costs, calls = [3.0, 1.0, 2.0], []

    def call(algo):
        calls.append(algo)
        clock[0] += costs[algo]

    assert cublaslt._fastest("shape", [0, 1, 2], call) == 1
    assert cublaslt.TIMINGS["shape"] == [3.0, 1.0, 2.0]
    assert calls == [0] * 4 + [1] * 4 + [2] * 4
    calls.clear()
    assert cublaslt._fastest("shape", [0, 1, 2], call) == 1 and calls == []
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: True)
    assert cublaslt._fastest("another", [0, 1, 2], call) == 0 and calls == []
    assert "another" not in cublaslt.CHOSEN
