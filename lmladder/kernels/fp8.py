"""A GPT block's matrix products in FP8 while it trains (`lmladder train --fp8`).

Each product y = x W^T (+ b) of c_attn, attn.c_proj, c_fc and mlp.c_proj becomes, with one scale
per tensor taken afresh from the tensor's largest magnitude at every call ("dynamic tensorwise
scaling", as torchao's float8 training and the DeepSeek-V3 report's FP8 recipe):

  forward   x and W in e4m3 (3 mantissa bits, range 448):     y  = (x/sx)(W/sw)^T * sx sw
  backward  the output's gradient g in e5m2 (2 bits, range 57,344):
            dx = (g/sg)(W/sw) * sg sw,   dW = (g/sg)^T (x/sx) * sg sx

through torch._scaled_mm, which on an H100/H200 (compute capability 8.9+) runs on the tensor
cores at twice the bf16 rate; it wants its first operand row-major and its second column-major,
every inner and outer size but the first a multiple of 16 (`scaled_mm` checks the layout on
every device, so the CPU tests check the GPU's). The forward keeps x and W in FP8 for the
backward (half the bytes of bf16). The weights themselves stay float32 and the optimizer is
untouched; evaluation, scoring and sampling use the ordinary products (lmladder.gpt.Linear only
hands a product here while the model trains), so a saved model is an ordinary model.

`torch._scaled_mm` also runs on a CPU (slowly), which is what the tests use.
"""

from __future__ import annotations

import torch

from lmladder.precision import compute_dtype

E4M3 = torch.float8_e4m3fn
E5M2 = torch.float8_e5m2
FP8_MIN_CAPABILITY = (8, 9)  # Ada (L40S, RTX 40xx) and Hopper (H100, H200) on


def quantize(t: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(q, scale): q = t / scale in `dtype`, with scale (float32, 0-d) = max|t| / the dtype's
    largest finite value, so that q * scale approximates t and the largest |t| is representable."""
    top = torch.finfo(dtype).max
    scale = torch.linalg.vector_norm(t.detach(), float("inf")).float().clamp(min=1e-30) / top  # one pass
    return (t.float() / scale).clamp(-top, top).to(dtype), scale


def scaled_mm(a: torch.Tensor, scale_a: torch.Tensor, b: torch.Tensor, scale_b: torch.Tensor,
              out_dtype: torch.dtype) -> torch.Tensor:
    """(a * scale_a) @ (b * scale_b) in out_dtype, for FP8 a (M, K) row-major and b (K, N)
    column-major, the layouts cuBLAS's FP8 products take."""
    if a.stride(-1) != 1 or b.stride(0) != 1:
        raise ValueError(f"an FP8 product takes a row-major and b column-major (strides {a.stride()}, {b.stride()})")
    return torch._scaled_mm(a, b, scale_a=scale_a, scale_b=scale_b, out_dtype=out_dtype)


def column_major(t: torch.Tensor) -> torch.Tensor:
    """t (R, C) with the same values laid out column by column."""
    return t.t().contiguous().t()


class FP8Linear(torch.autograd.Function):
    """x (N, K) W^T for W (M, K), with the products in FP8 (the module docstring); out_dtype is the
    forward's output dtype. Gradients come back in x's and W's dtypes."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, out_dtype: torch.dtype) -> torch.Tensor:
        xq, sx = quantize(x, E4M3)
        wq, sw = quantize(w, E4M3)
        ctx.save_for_backward(xq, sx, wq, sw)
        ctx.dtypes = (x.dtype, w.dtype)
        return scaled_mm(xq, sx, wq.t(), sw, out_dtype)  # wq (M, K) row-major: wq.t() is (K, M) column-major

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: torch.Tensor):
        xq, sx, wq, sw = ctx.saved_tensors
        x_dtype, w_dtype = ctx.dtypes
        gq, sg = quantize(g.contiguous(), E5M2)
        need = ctx.needs_input_grad
        dx = scaled_mm(gq, sg, column_major(wq), sw, x_dtype) if need[0] else None  # (N, M) @ (M, K)
        dw = scaled_mm(gq.t().contiguous(), sg, column_major(xq), sx, w_dtype) if need[1] else None  # (M, N) @ (N, K)
        return dx, dw, None


def fp8_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """F.linear(x, weight, bias) for x (..., K) with the products in FP8, the output in the dtype
    a product of x runs in (autocast's, under autocast)."""
    dtype = compute_dtype(x)
    y = FP8Linear.apply(x.reshape(-1, x.shape[-1]), weight, dtype)
    if bias is not None:
        y = y + bias.to(dtype)
    return y.view(*x.shape[:-1], weight.shape[0])


def fp8_problems(config, device: str, micro_tokens: int) -> list[str]:
    """What stops a run from training with --fp8 or --head-loss fp8 (an empty list: nothing): a GPT
    whose products' sizes are multiples of 16 (the head's vocabulary too), micro-batches of a
    multiple of 16 tokens, a CUDA GPU of compute capability 8.9 or newer, and for --fp8 not the
    fused GELU (its epilogues are bf16 products)."""
    head = config.run.head_loss == "fp8"
    names = [name for name, on in (("--fp8", config.run.fp8), ("--head-loss fp8", head)) if on]
    if not names:
        return []
    what = " and ".join(names)
    if config.model_kind != "gpt":
        return [f"{what} is for a GPT's products; an MLP trains in bf16 or float32"]
    problems = []
    if config.model.n_embd % 16:
        problems.append(f"{what} needs n_embd a multiple of 16 (got {config.model.n_embd})")
    if head and config.model.vocab_size % 16:
        problems.append(f"--head-loss fp8 needs a vocabulary of a multiple of 16 (got {config.model.vocab_size:,}: "
                        "pad it with --vocab-size, or use --head-loss fused)")
    if micro_tokens % 16:
        problems.append(f"{what} needs a micro-batch of a multiple of 16 tokens (got {micro_tokens:,}: "
                        "change --micro-batch-size or --block-size)")
    if config.run.fp8 and config.run.gelu_fusion == "fused":
        problems.append("--fp8 and --gelu-fusion fused do not go together (the fused MLP's epilogues are "
                        "bf16 products); use --gelu-fusion auto or plain")
    if not device.startswith("cuda"):
        problems.append(f"{what} needs a CUDA GPU of compute capability 8.9 or newer (H100, H200, L40S, RTX 40xx); "
                        f"this run is on {device}: leave {what} out")
    elif torch.version.hip:  # an AMD GPU's FP8 types are the fnuz ones, which these products do not use
        problems.append(f"{what} is written for NVIDIA GPUs (e4m3fn/e5m2 types); on a ROCm GPU leave {what} out")
    else:
        capability = torch.cuda.get_device_capability(torch.device(device))
        if capability < FP8_MIN_CAPABILITY:
            problems.append(f"{what} needs a GPU of compute capability 8.9 or newer (H100, H200, L40S, RTX 40xx); "
                            f"{torch.cuda.get_device_name(torch.device(device))} is {capability[0]}.{capability[1]}: "
                            f"leave {what} out")
    return problems
