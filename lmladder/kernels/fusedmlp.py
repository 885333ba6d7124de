"""The GPT's MLP (c_fc -> tanh GELU -> c_proj) with the GELU inside the matrix products.

Compiled as separate kernels, the MLP's elementwise work is three passes over its (N, 4C)
activations besides the matrix products: the forward GELU (read u, write y), the backward GELU
(read the gradient of y and u, write the gradient of u) and c_fc's bias gradient (a column sum
of that). At 64 x 1,024 tokens and C = 768 that is ~0.8 ms a block on an H100, a tenth of the
block. Here cuBLASLt's epilogues (cublaslt.py) do the GELU while each output tile is in
registers:

  forward   u = x W_fc^T + b_fc and y = gelu(u), both written by c_fc's product;
  backward  g = (dout W_proj) * gelu'(u), written by the product that makes dout W_proj.

On an H100 at 65,536 x 768 x 3,072 the forward product takes 0.56 ms where product + compiled
GELU took 0.72, the backward one 0.56 (+ 0.15 for the bias gradient's column sums) where
product + compiled GELU backward + sums took 0.99 (benchmarks/results/gpu-train-2026-11-23.md).
The rest (c_proj, the weight and input gradients) are plain products. Off a GPU the same two
steps are torch's (`fc_gelu_torch`, `gelu_grad_torch`), which the tests check against autograd.
The trainer hands `fused_mlp` to the model (GPT.use_fused_mlp) where lmladder.kernels.fused_gelu
says it pays.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from lmladder.precision import compute_dtype


def fc_gelu_torch(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """u = x w^T + b (N, F) and y = gelu(u), for x (N, C), w (F, C), b (F,) or None."""
    u = F.linear(x, w, b)
    return u, F.gelu(u, approximate="tanh")


def gelu_grad_torch(dout: torch.Tensor, w_proj: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """g = (dout w_proj) * gelu'(u) (N, F), for dout (N, C), w_proj (C, F), u (N, F)."""
    return torch.ops.aten.gelu_backward(dout @ w_proj, u, approximate="tanh")


def epilogue_usable(*tensors: torch.Tensor | None) -> bool:
    """Whether cuBLASLt's epilogues can take these operands: non-empty CUDA tensors of one dtype,
    bf16 or fp16, contiguous, 16-byte aligned, every size a multiple of 8."""
    from lmladder.kernels import cublaslt

    given = [t for t in tensors if t is not None]
    return (given[0].is_cuda and cublaslt.available(given[0].device)
            and all(t.dtype == given[0].dtype and t.dtype in (torch.bfloat16, torch.float16) and t.is_contiguous()
                    and t.numel() > 0 and t.data_ptr() % 16 == 0 and all(size % 8 == 0 for size in t.shape)
                    for t in given))


@torch.library.custom_op("lmladder::fc_gelu", mutates_args=())
def fc_gelu(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(u, y) of fc_gelu_torch: by cuBLASLt's GELU_AUX(_BIAS) epilogue where it runs, else torch."""
    if epilogue_usable(x, w, b):
        from lmladder.kernels import cublaslt

        return cublaslt.gelu_aux(x, w, b)
    return fc_gelu_torch(x, w, b)


@fc_gelu.register_fake
def _(x, w, b):
    u = x.new_empty(x.shape[0], w.shape[0])
    return u, torch.empty_like(u)


@torch.library.custom_op("lmladder::gelu_grad", mutates_args=())
def gelu_grad(dout: torch.Tensor, w_proj: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """g of gelu_grad_torch: by cuBLASLt's DGELU epilogue where it runs, else torch."""
    if epilogue_usable(dout, w_proj, u):
        from lmladder.kernels import cublaslt

        return cublaslt.dgelu(dout, w_proj, u)
    return gelu_grad_torch(dout, w_proj, u)


@gelu_grad.register_fake
def _(dout, w_proj, u):
    return torch.empty_like(u)


def column_sums(t: torch.Tensor) -> torch.Tensor:
    """A bias gradient: t's column sums, accumulated in float32 (float64 for float64), in t's dtype."""
    return t.sum(0, dtype=torch.promote_types(t.dtype, torch.float32)).to(t.dtype)


class FusedMLP(torch.autograd.Function):
    """c_proj(gelu(c_fc(x))) for x (N, C), all operands in one dtype; the backward pass returns
    the gradients of x, w_fc, b_fc, w_proj and b_proj (None for an absent bias or one not asked
    for). It is not itself differentiable: a second derivative is an error, not a wrong number."""

    @staticmethod
    def forward(ctx, x, w_fc, b_fc, w_proj, b_proj):
        u, y = fc_gelu(x, w_fc, b_fc)
        ctx.save_for_backward(x, w_fc, u, y, w_proj)
        ctx.biases = (b_fc is not None, b_proj is not None)
        return F.linear(y, w_proj, b_proj)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dout):
        x, w_fc, u, y, w_proj = ctx.saved_tensors
        need = ctx.needs_input_grad
        dout = dout.contiguous()
        g = gelu_grad(dout, w_proj, u) if any(need[:3]) else None
        return (g @ w_fc if need[0] else None, g.t() @ x if need[1] else None,
                column_sums(g) if need[2] else None, dout.t() @ y if need[3] else None,
                column_sums(dout) if need[4] else None)


def fused_mlp(x: torch.Tensor, c_fc: torch.nn.Linear, c_proj: torch.nn.Linear) -> torch.Tensor:
    """c_proj(gelu(c_fc(x))) for x (..., C) through FusedMLP, in the dtype a matrix product of x
    runs in (autocast's, under autocast)."""
    dtype = compute_dtype(x)

    def cast(t):
        return None if t is None else t.to(dtype)

    out = FusedMLP.apply(x.reshape(-1, x.shape[-1]).to(dtype), cast(c_fc.weight), cast(c_fc.bias),
                         cast(c_proj.weight), cast(c_proj.bias))
    return out.view(*x.shape[:-1], out.shape[-1])
