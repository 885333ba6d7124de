"""GPU kernels the trainer may run a GPT's step through, and when it does.

    headloss.py  the head (h W^T) and its cross-entropy as one autograd step that writes the
                 logits' gradient over the logits (a Triton kernel on a GPU, torch elsewhere)
    fusedmlp.py  the MLP (c_fc -> GELU -> c_proj) with the GELU inside the matrix products
    cublaslt.py  the cuBLASLt GELU epilogues fusedmlp.py calls, through ctypes
    fp8.py       the blocks' products in FP8 while training (--fp8), by torch._scaled_mm (the
                 head's are headloss.py's, with --head-loss fp8)

Each computes the same function as the plain modules (the tests check them against each other),
so the model (lmladder.gpt) never imports them: the trainer asks `fused_head` and `fused_gelu`
below, and hands the kernel to the model or the loss. Nothing here imports torch until a kernel
is asked for, so the policy is cheap to consult.
"""

from __future__ import annotations

# an H100's MLP forward + backward, fused against plain compiled, by (width, tokens a micro-batch)
# (benchmarks/bench_fused_mlp.py; runs Y and AE in benchmarks/results/gpu-train-2026-11-23.md):
# faster at 65,536 tokens (768: 0.91-0.92x the time, 512: 0.89-0.93x), mostly slower below
# (768 x 32,768: 0.93x and 1.20x, 1,024 x 32,768: 1.00-1.03x, 512 x 16,384: 1.12-1.63x)
FUSED_GELU_MIN_TOKENS = 65536
# below this vocabulary the plain loss, compiled with the model, is as fast or faster (an H100:
# benchmarks/results/gpu-train-2026-11-23.md)
FUSED_HEAD_MIN_VOCAB = 1024


def _chosen(config, switch: str) -> bool | None:
    """A GPT fusion switch (head_loss, gelu_fusion) as set: True (fused, or the fused head in
    FP8), False (plain, or not a GPT), None (auto: the caller decides)."""
    value = getattr(config.run, switch)
    if config.model_kind != "gpt" or value == "plain":
        return False
    return True if value in ("fused", "fp8") else None


def fp8_head(config) -> bool:
    """Whether a run's GPT takes its loss through headloss.py with the head's products in FP8."""
    return config.model_kind == "gpt" and config.run.head_loss == "fp8"


def fused_head(config, device_type: str) -> bool:
    """Whether a run's GPT, on a device of this type (cuda, cpu, ...), takes its loss through
    headloss.py: with auto only where its Triton kernel runs (off it, the torch version of the
    kernel makes float32 copies of the logits, and the compiled plain loss is better)."""
    chosen = _chosen(config, "head_loss")
    if chosen is not None:
        return chosen
    from lmladder.kernels.headloss import triton_usable

    return config.model.vocab_size >= FUSED_HEAD_MIN_VOCAB and triton_usable(device_type)


def fused_gelu(config, device_type: str, world: int = 1) -> bool:
    """Whether a run's GPT, on a device of this type, runs its MLPs through fusedmlp.py: with auto
    only where cuBLASLt's epilogues run it: a GPU, bf16 or fp16 autocast, a width that is a
    multiple of 8, and FUSED_GELU_MIN_TOKENS tokens or more a micro-batch (each of `world`
    processes' share), not with --fp8. Elsewhere it would be the same torch arithmetic as the
    compiled plain MLP's, hidden from the compiler."""
    chosen = _chosen(config, "gelu_fusion")
    if chosen is not None or config.run.fp8:  # the fused MLP's epilogues are bf16 products, not FP8 ones
        return bool(chosen)
    o = config.optim
    tokens = (o.micro_batch_size or o.batch_size // world) * config.seq_len
    if (device_type != "cuda" or config.run.dtype not in ("bfloat16", "float16") or config.model.n_embd % 8
            or tokens < FUSED_GELU_MIN_TOKENS or tokens % 8):
        return False
    from lmladder.kernels import cublaslt

    return cublaslt.available()
