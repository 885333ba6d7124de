"""The named starting points of a neural run (`lmladder train --preset NAME`): each a model kind
and values for the config's sections, under the config file and the options (lmladder.config)."""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    # nanoGPT's "baby GPT" for Tiny Shakespeare characters (config/train_shakespeare_char.py)
    "gpt-char": {"model_kind": "gpt", "model": dict(n_layer=6, n_head=6, n_embd=384, block_size=256,
                                                     dropout=0.2, bias=False),
                 "optim": dict(batch_size=64, lr=1e-3, min_lr=1e-4, warmup_steps=100, beta2=0.99),
                 "run": dict(max_steps=5000, eval_interval=250)},
    # GPT-2 small: 124M parameters, context 1024, ~0.5M tokens a step; the residual stream in bf16 on
    # a GPU: a 6% faster step on an H100 (benchmarks/results/gpu-train-2026-11-23.md). No biases, as
    # nanoGPT trains and times it: their gradients' sums were 4.3% of an H100's step (--bias: GPT-2's).
    # Micro-batches of 128 (51 GB) were 3.5% faster than 64 (27 GB) on an H100; where the estimate
    # (train.memory_needed) does not fit the GPU, the trainer takes 64, 32, ... instead
    "gpt2-124m": {"model_kind": "gpt", "model": dict(n_layer=12, n_head=12, n_embd=768, block_size=1024,
                                                      dropout=0.0, bias=False, residual_dtype="autocast"),
                  "optim": dict(batch_size=512, micro_batch_size=128, lr=6e-4, min_lr=6e-5, warmup_steps=700,
                                beta2=0.95),
                  "run": dict(max_steps=20000, eval_interval=1000, eval_batch_size=32, compile=True)},
    # small enough for CPU tests
    "gpt-tiny": {"model_kind": "gpt", "model": dict(n_layer=2, n_head=2, n_embd=32, block_size=32, dropout=0.0,
                                                     bias=True),
                 "optim": dict(batch_size=8, lr=3e-3, min_lr=3e-4, warmup_steps=5),
                 "run": dict(max_steps=20, eval_interval=10, log_interval=5, eval_batch_size=256)},
    # Bengio et al. 2003 on characters: 16 units of context, 30-dimensional C
    "mlp": {"model_kind": "mlp", "model": dict(block_size=16, n_embd=30, n_hidden=512, direct=True),
            "data": dict(seq_len=128),
            "optim": dict(batch_size=128, lr=3e-3, min_lr=3e-4, warmup_steps=100, weight_decay=0.0),
            "run": dict(max_steps=5000, eval_interval=500)},
}
DEFAULT_PRESET = {"gpt": "gpt-char", "mlp": "mlp"}
