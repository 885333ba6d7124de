"""A language model's head and its cross-entropy as one autograd step that writes the logits'
gradient over the logits themselves.

The plain route (logits = h W^T, then cross-entropy) reads the (N, V) logits once in the forward
pass (the log-sum-exp of each row) and once more in the backward pass, where it writes their
gradient as a second (N, V) tensor: at GPT-2's vocabulary and 64 x 1,024 tokens that is three
passes over 6.6 GB. Here the forward pass does both at once, row by row: the log-sum-exp, the
loss, then softmax - one_hot scaled by 1/N over the same buffer; the backward pass only
multiplies that gradient into the two matrix products. Two passes, no second buffer.

On a GPU with Triton the row kernel is Triton's; anywhere else it is the same arithmetic in torch
(`rows_torch`, which the tests check against F.cross_entropy). Under autocast the head runs in
the autocast dtype, as nn.Linear would, and the gradient is kept in it.

`--head-loss fp8` (a GPU of compute capability 8.9+) runs the head's three products in FP8
(`HeadCrossEntropyFP8`): h and W in e4m3 with a scale per tensor from its largest value, the
bf16 logits from one torch._scaled_mm; the row pass then writes the gradient in e5m2 instead of
over the logits: softmax - one_hot lies in [-1, 1], so a fixed scale (GRAD_SCALE) keeps every
probability down to 2^-30 and needs no pass to find the largest value. FP8 products want both
operands contiguous along the summed size, so the gradient is kept twice: (N, V) for dh = g W
and, transposed by a second kernel once the logits are freed, (V, N) for dW = g^T h. Memory: 3
bytes a logit at the peak (bf16 logits and g), 2 kept for the backward pass (the bf16 head keeps
its 2 and needs no more).
"""

from __future__ import annotations

import functools

import torch

from lmladder.precision import compute_dtype

# (softmax - one_hot) in [-1, 1] is stored in e5m2 times this (largest 16,384 of e5m2's 57,344):
# its smallest step, 2^-16, keeps probabilities from 2^-30 up
GRAD_SCALE = 2.0 ** 14


def softmax_rows(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, grad): each row's cross-entropy (N,) and softmax - one_hot(targets) (N, V), in
    float32 (or float64 for float64 logits)."""
    x = logits if logits.dtype == torch.float64 else logits.float()
    lse = torch.logsumexp(x, dim=1)  # (N,)
    rows = lse - x.gather(1, targets[:, None]).squeeze(1)
    grad = torch.exp(x - lse[:, None])
    grad.scatter_add_(1, targets[:, None], torch.full_like(lse[:, None], -1.0))
    return rows, grad


def rows_torch(logits: torch.Tensor, targets: torch.Tensor, scale: float) -> torch.Tensor:
    """Each row's cross-entropy (N,), in float32 (or float64 for float64 logits); `logits` (N, V)
    is overwritten with (softmax - one_hot(targets)) * scale, the gradient of scale * (sum of
    the rows' losses)."""
    rows, grad = softmax_rows(logits, targets)
    logits.copy_(grad.mul_(scale))
    return rows


BLOCK = 8192  # columns a program loads at once; a row up to this long is read once


@functools.cache
def _triton_kernels():
    import triton
    import triton.language as tl

    @triton.jit
    def head_loss_rows(logits_ptr, stride, targets_ptr, rows_ptr, out_ptr, out_stride, V, scale,
                       BLOCK: tl.constexpr):  # the gradient to out_ptr: the logits, or an e5m2 buffer
        row = tl.program_id(0).to(tl.int64)
        base = logits_ptr + row * stride
        out = out_ptr + row * out_stride
        target = tl.load(targets_ptr + row)
        x_target = tl.load(base + target).to(tl.float32)
        if BLOCK >= V:  # the whole row in one block: one read, one write
            cols = tl.arange(0, BLOCK)
            mask = cols < V
            x = tl.load(base + cols, mask=mask, other=float("-inf")).to(tl.float32)
            m = tl.max(x, 0)
            lse = m + tl.log(tl.sum(tl.exp(x - m), 0))
            grad = (tl.exp(x - lse) - tl.where(cols == target, 1.0, 0.0)) * scale
            tl.store(out + cols, grad.to(out_ptr.dtype.element_ty), mask=mask)
        else:  # a running max and sum of exp(x - max), then the row again for its gradient
            m = float("-inf")
            s = 0.0
            for start in range(0, V, BLOCK):
                cols = start + tl.arange(0, BLOCK)
                x = tl.load(base + cols, mask=cols < V, other=float("-inf")).to(tl.float32)
                m_new = tl.maximum(m, tl.max(x, 0))
                s = s * tl.exp(m - m_new) + tl.sum(tl.exp(x - m_new), 0)
                m = m_new
            lse = m + tl.log(s)
            blocks = tl.cdiv(V, BLOCK)
            for i in range(0, blocks):  # last block first: the most recently read are likeliest in cache
                cols = (blocks - 1 - i) * BLOCK + tl.arange(0, BLOCK)
                mask = cols < V
                x = tl.load(base + cols, mask=mask, other=0.0).to(tl.float32)
                grad = (tl.exp(x - lse) - tl.where(cols == target, 1.0, 0.0)) * scale
                tl.store(out + cols, grad.to(out_ptr.dtype.element_ty), mask=mask)
        tl.store(rows_ptr + row, lse - x_target)

    @triton.jit
    def head_loss_transpose(src_ptr, dst_ptr, R, C, BR: tl.constexpr, BC: tl.constexpr):
        r = tl.program_id(0) * BR + tl.arange(0, BR)
        c = tl.program_id(1) * BC + tl.arange(0, BC)
        mask = (r < R)[:, None] & (c < C)[None, :]
        tile = tl.load(src_ptr + r.to(tl.int64)[:, None] * C + c[None, :], mask=mask)
        tl.store(dst_ptr + c.to(tl.int64)[:, None] * R + r[None, :], tl.trans(tile), mask=tl.trans(mask))

    return head_loss_rows, head_loss_transpose


def triton_usable(device: torch.device | str) -> bool:
    """Whether the Triton kernel can run on `device` (or a device of that type)."""
    if torch.device(device).type != "cuda" or not torch.cuda.is_available():
        return False
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def rows_triton(logits: torch.Tensor, targets: torch.Tensor, scale: float, block: int = BLOCK) -> torch.Tensor:
    """rows_torch's result and overwrite, by one Triton program a row, which loads `block`
    columns at a time (8,192 and 8 warps: 6.1 ms for 65,536 x 50,304 bf16 logits on an H100,
    about 2/3 of its memory bandwidth)."""
    return _rows_kernel(logits, targets, logits, scale, block)


def _rows_kernel(logits: torch.Tensor, targets: torch.Tensor, out: torch.Tensor, scale: float,
                 block: int) -> torch.Tensor:
    """Each row's cross-entropy (N,) in float32, by the Triton row kernel, which writes (softmax -
    one_hot) * scale to `out` (N, V) in out's dtype: over the logits themselves, or a new buffer."""
    import triton

    n, v = logits.shape
    assert logits.stride(1) == 1 and out.stride(1) == 1 and targets.is_contiguous()
    rows = torch.empty(n, device=logits.device, dtype=torch.float32)
    block = min(block, triton.next_power_of_2(v))
    _triton_kernels()[0][(n,)](logits, logits.stride(0), targets, rows, out, out.stride(0), v, scale,
                               BLOCK=block, num_warps=max(1, min(8, block // 256)))
    return rows


def rows_torch_fp8(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, g): each row's cross-entropy (N,) in float32, and g = (softmax - one_hot) *
    GRAD_SCALE (N, V) in e5m2 (rounded to the nearest, ties to even); `logits` is left as it was."""
    rows, grad = softmax_rows(logits, targets)  # float32: the FP8 head's logits are never float64
    return rows, grad.mul_(GRAD_SCALE).to(torch.float8_e5m2)


def rows_triton_fp8(logits: torch.Tensor, targets: torch.Tensor, block: int = BLOCK
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """rows_torch_fp8's result by rows_triton's kernel, writing e5m2 to a new buffer."""
    g = torch.empty(logits.shape, device=logits.device, dtype=torch.float8_e5m2)
    return _rows_kernel(logits, targets, g, GRAD_SCALE, block), g


def transposed(g: torch.Tensor, use_triton: bool, tile: int = 128) -> torch.Tensor:
    """g (R, C) of one-byte values as a contiguous (C, R): on a GPU by a Triton kernel that moves
    the bytes (not the values) in `tile` x `tile` squares (3.6 ms for 131,072 x 50,304 on an
    H200; 4.4 ms at 64), elsewhere by torch."""
    if not use_triton:
        return g.t().contiguous()
    import triton

    r, c = g.shape
    gt = torch.empty(c, r, device=g.device, dtype=g.dtype)
    _triton_kernels()[1][(triton.cdiv(r, tile), triton.cdiv(c, tile))](g.view(torch.uint8), gt.view(torch.uint8),
                                                                       r, c, BR=tile, BC=tile, num_warps=4)
    return gt


class HeadCrossEntropy(torch.autograd.Function):
    """mean over rows of cross_entropy(h @ weight.T, targets); h (N, C), weight (V, C),
    targets (N,) int64."""

    @staticmethod
    def forward(ctx, h, weight, targets, use_triton: bool):
        dtype = compute_dtype(h)
        with torch.autocast(h.device.type, enabled=False):
            hc, wc = h.to(dtype), weight.to(dtype)
            logits = hc @ wc.t()  # (N, V), then its gradient in place
            n = logits.shape[0]
            rows = (rows_triton if use_triton else rows_torch)(logits, targets, 1.0 / n)
        ctx.save_for_backward(hc, wc, logits)
        ctx.dtypes = (h.dtype, weight.dtype)
        return rows.sum() / n

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        hc, wc, grad = ctx.saved_tensors
        h_dtype, w_dtype = ctx.dtypes
        dh = dw = None
        if ctx.needs_input_grad[0]:
            dh = (grad @ wc).to(h_dtype).mul_(grad_out)  # (N, C)
        if ctx.needs_input_grad[1]:
            dw = (grad.t() @ hc).to(w_dtype).mul_(grad_out)  # (V, C)
        return dh, dw, None, None


class HeadCrossEntropyFP8(torch.autograd.Function):
    """HeadCrossEntropy with its three products in FP8 (the module docstring); N, C and V must be
    multiples of 16. The logits are bf16 (or h's compute dtype where that is float16/float32)."""

    @staticmethod
    def forward(ctx, h, weight, targets, use_triton: bool, hq=None, sh=None):
        from lmladder.kernels.fp8 import E4M3, quantize, scaled_mm

        dtype = compute_dtype(h)
        with torch.autocast(h.device.type, enabled=False):
            if hq is None:  # else h's e4m3 copy and its scale came with it (from the compiled blocks)
                hq, sh = quantize(h.to(dtype), E4M3)
            wq, sw = quantize(weight, E4M3)
            logits = scaled_mm(hq, sh, wq.t(), sw, dtype if dtype != torch.float64 else torch.float32)
            n = logits.shape[0]
            rows, g = (rows_triton_fp8 if use_triton else rows_torch_fp8)(logits, targets)
            del logits  # before the transpose is made: 3 bytes a logit at the peak, not 4
            gt = transposed(g, use_triton)
            sg = torch.full((), 1.0 / (n * GRAD_SCALE), device=h.device, dtype=torch.float32)
        ctx.save_for_backward(hq, sh, wq, sw, g, gt, sg)
        ctx.dtypes = (h.dtype, weight.dtype)
        return rows.sum() / n

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        from lmladder.kernels.fp8 import column_major, scaled_mm

        hq, sh, wq, sw, g, gt, sg = ctx.saved_tensors
        h_dtype, w_dtype = ctx.dtypes
        dh = dw = None
        if ctx.needs_input_grad[0]:  # (N, V) @ (V, C)
            out = h_dtype if h_dtype in (torch.bfloat16, torch.float16) else torch.float32
            dh = scaled_mm(g, sg * grad_out, column_major(wq), sw, out).to(h_dtype)
        if ctx.needs_input_grad[1]:  # (V, N) @ (N, C)
            dw = scaled_mm(gt, sg * grad_out, column_major(hq), sh, torch.float32).to(w_dtype)
        return dh, dw, None, None, None, None


def head_cross_entropy(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                       use_triton: bool | None = None, fp8: bool = False, quantized: tuple | None = None
                       ) -> torch.Tensor:
    """The mean cross-entropy of predicting `targets` (...,) from hidden states h (..., C)
    through the head `weight` (V, C); with `fp8`, HeadCrossEntropyFP8's, given h's e4m3 copy
    and scale as `quantized` where they were made already (lmladder.kernels.fp8.quantize)."""
    if use_triton is None:
        use_triton = triton_usable(h.device)
    args = (h.reshape(-1, h.shape[-1]), weight, targets.reshape(-1).contiguous(), use_triton)
    if not fp8:
        return HeadCrossEntropy.apply(*args)
    hq, sh = quantized or (None, None)
    return HeadCrossEntropyFP8.apply(*args, None if hq is None else hq.reshape(-1, hq.shape[-1]), sh)
