"""A neural run's configuration: what `lmladder train` reads, saves with every run and resumes.

Four sections, each a dataclass; every field is a command-line option of `lmladder train`
(`n_layer` -> `--n-layer`, its help the comment beside the field) and a key of a TOML file:

    [model]  GPTConfig or MLPConfig: the architecture
    [optim]  OptimConfig: batch, learning-rate schedule, AdamW
    [data]   DataConfig: split, training window
    [run]    RunConfig: when to stop, evaluate, checkpoint; device, compile, kernels

Later sources override earlier ones: the field defaults, the preset, the config file, the
command-line options (`resolve`). Nothing here imports torch, so `lmladder train --help` is fast.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from lmladder.errors import LadderError

MODEL_KINDS = ("gpt", "mlp")

@dataclass
class GPTConfig:
    block_size: int = 1024  # the longest context the model sees
    vocab_size: int = 50304  # GPT-2's 50,257 padded up to a multiple of 64 for faster matmuls
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True  # biases in Linear and LayerNorm, as GPT-2 has; False is a little faster
    position: str = "learned"  # learned (GPT-2's table, transformer.wpe) or rotary (no table)
    # the residual stream's dtype under autocast: float32 (as GPT-2 under autocast, nanoGPT) or
    # autocast (its dtype, bf16 on a GPU: half the memory traffic of the adds and layer norms)
    residual_dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")
        if self.position not in POSITIONS:
            raise ValueError(f"position must be one of {', '.join(POSITIONS)} (got {self.position!r})")
        if self.residual_dtype not in RESIDUAL_DTYPES:
            raise ValueError(f"residual_dtype must be one of {', '.join(RESIDUAL_DTYPES)} (got {self.residual_dtype!r})")
        if self.position == "rotary" and (self.n_embd // self.n_head) % 2:
            raise ValueError(f"rotary positions need an even head size (n_embd / n_head = {self.n_embd // self.n_head})")


POSITIONS = ("learned", "rotary")
RESIDUAL_DTYPES = ("float32", "autocast")



@dataclass
class MLPConfig:
    block_size: int = 16  # n: how many previous units the model sees (the paper used 5 words)
    vocab_size: int = 256
    n_embd: int = 30  # m: the paper's feature vectors had 30 to 100 dimensions
    n_hidden: int = 512  # h: hidden tanh units (the paper: 50 to 100 on word vocabularies)
    direct: bool = True  # the direct connections W from the embeddings to the output
    dropout: float = 0.0
    pad_id: int = 0  # set to the tokenizer's end-of-text id




@dataclass
class OptimConfig:
    batch_size: int = 64  # sequences per optimizer step, over all processes together
    micro_batch_size: int = 0  # sequences per forward pass in each process; 0: the whole share
    lr: float = 1e-3
    min_lr: float = 1e-4  # where the schedule ends
    warmup_steps: int = 100
    schedule: str = "cosine"  # cosine, or wsd (warmup, stable, then a linear decay over the last 30%)
    weight_decay: float = 0.1  # decoupled, on matrices only (not biases, norms)
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0  # max global gradient norm; 0: no clipping
    ema: float = 0.0  # decay of a moving average of the weights that is evaluated and kept (0: none)


@dataclass
class DataConfig:
    split: str = ""  # TRAIN,VAL,TEST fractions; "": the corpus's default
    seq_len: int = 0  # training window; 0: the model's block_size


@dataclass
class RunConfig:
    max_steps: int = 0  # stop after this many optimizer steps (0: no step limit)
    max_tokens: int = 0  # ... or this many training tokens
    time_budget: float = 0.0  # ... or this many seconds of training
    eval_interval: int = 250  # steps between full passes over val (0: only at the end)
    eval_batch_size: int = 64
    log_interval: int = 10
    checkpoint_interval: int = 1000  # steps between saves of latest/ (also at the end)
    seed: int = 1337
    device: str = "auto"  # auto, cpu, cuda, cuda:N
    compile: bool = False  # torch.compile the model with its loss (pays off on long runs)
    compile_mode: str = "default"  # torch.compile's mode: default, or max-autotune-no-cudagraphs (slow to compile)
    cuda_graph: bool = True  # one GPU: record the whole training step once and replay it (not with max-autotune)
    attention: str = "auto"  # CUDA attention kernel: auto (torch's choice), flash, cudnn, efficient, math
    dtype: str = "bfloat16"  # autocast dtype on CUDA: bfloat16, float16 or float32
    # a GPT's head and cross-entropy: fused (one pass writes the logits' gradient over them; a
    # Triton kernel on a GPU, lmladder/headloss.py), plain (nn.Linear, then F.cross_entropy), or
    # auto: fused on a GPU from FUSED_HEAD_MIN_VOCAB outputs up, where it makes the step faster
    head_loss: str = "auto"
    # a GPT's MLP: fused (GELU in the matrix products' epilogues, cuBLASLt's on a GPU:
    # lmladder/fusedmlp.py), plain (Linear, GELU, Linear, compiled as separate kernels), or
    # auto: fused on a GPU from FUSED_GELU_MIN_TOKENS tokens a micro-batch, where it was faster
    gelu_fusion: str = "auto"


SECTIONS = ("model", "optim", "data", "run")
ATTENTION_KERNELS = ("auto", "flash", "cudnn", "efficient", "math")
COMPILE_MODES = ("default", "max-autotune-no-cudagraphs")
HEAD_LOSSES = ("auto", "fused", "plain")
GELU_FUSIONS = ("auto", "fused", "plain")
# an H100's MLP forward + backward, fused against plain compiled, by (width, tokens a micro-batch)
# (benchmarks/bench_fused_mlp.py; runs Y and AE in benchmarks/results/gpu-train-2026-11-23.md):
# faster at 65,536 tokens (768: 0.91-0.92x the time, 512: 0.89-0.93x), mostly slower below
# (768 x 32,768: 0.93x and 1.20x, 1,024 x 32,768: 1.00-1.03x, 512 x 16,384: 1.12-1.63x)
FUSED_GELU_MIN_TOKENS = 65536
# below this vocabulary the plain loss, compiled with the model, is as fast or faster (an H100:
# benchmarks/results/gpu-train-2026-11-23.md)
FUSED_HEAD_MIN_VOCAB = 1024


SECTION_TYPES = {"optim": OptimConfig, "data": DataConfig, "run": RunConfig}
HIDDEN_MODEL_FIELDS = ("pad_id",)  # set from the tokenizer, never by hand


def model_config_type(kind: str):
    if kind == "gpt":
        return GPTConfig
    if kind == "mlp":
        return MLPConfig
    raise LadderError(f"unknown neural model {kind!r}; choose one of {', '.join(MODEL_KINDS)}")


PRESETS: dict[str, dict[str, Any]] = {
    # nanoGPT's "baby GPT" for Tiny Shakespeare characters (config/train_shakespeare_char.py)
    "gpt-char": {"model_kind": "gpt", "model": dict(n_layer=6, n_head=6, n_embd=384, block_size=256,
                                                     dropout=0.2, bias=False),
                 "optim": dict(batch_size=64, lr=1e-3, min_lr=1e-4, warmup_steps=100, beta2=0.99),
                 "run": dict(max_steps=5000, eval_interval=250)},
    # GPT-2 small: 124M parameters, context 1024, ~0.5M tokens a step; the residual stream in bf16
    # on a GPU: a 6% faster step on an H100 (benchmarks/results/gpu-train-2026-11-23.md). No
    # biases, as nanoGPT trains it (train.py) and times it (bench.py): their gradients' column
    # sums were 4.3% of an H100's step; --bias gives GPT-2's own layout.
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


@dataclass
class TrainConfig:
    """Everything a run is made of, as saved with it."""

    model_kind: str
    model: Any  # GPTConfig or MLPConfig
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, Any]:
        return {"model_kind": self.model_kind, **{s: dataclasses.asdict(getattr(self, s)) for s in SECTIONS}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        kind = data["model_kind"]
        return cls(kind, model_config_type(kind)(**data["model"]),
                   **{s: SECTION_TYPES[s](**data[s]) for s in SECTION_TYPES})

    @property
    def seq_len(self) -> int:
        return self.data.seq_len or self.model.block_size


def option_fields() -> dict[str, list[tuple[str, type, Any]]]:
    """section -> [(field name, type, default)] for every settable field (the CLI's options)."""
    out: dict[str, list[tuple[str, type, Any]]] = {"model": []}
    seen = set()
    for cls in (GPTConfig, MLPConfig):
        for f in fields(cls):
            if f.name not in seen and f.name not in HIDDEN_MODEL_FIELDS:
                seen.add(f.name)
                out["model"].append((f.name, _type(f), f.default))
    for section, cls in SECTION_TYPES.items():
        out[section] = [(f.name, _type(f), f.default) for f in fields(cls)]
    return out


def _type(f) -> type:
    return {"int": int, "float": float, "bool": bool, "str": str}.get(str(f.type), type(f.default))


def read_config_file(path: str | Path) -> dict[str, dict[str, Any]]:
    from lmladder.textio import read_toml

    data = read_toml(path, "config file")
    problems = [f"unknown section [{k}] (valid: {', '.join(SECTIONS)})" for k in data
                if k not in SECTIONS or not isinstance(data[k], dict)]
    if problems:
        raise LadderError(f"config file {path}: " + "; ".join(problems))
    return data


def resolve(model_kind: str | None, preset: str | None, file_values: dict[str, dict[str, Any]] | None,
            options: dict[str, dict[str, Any]]) -> TrainConfig:
    """Defaults < preset < config file < options; every unknown key or bad value is reported at once."""
    if preset is not None and preset not in PRESETS:
        raise LadderError(f"unknown --preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if preset is not None and model_kind is not None and PRESETS[preset]["model_kind"] != model_kind:
        raise LadderError(f"preset {preset} is a {PRESETS[preset]['model_kind']} model, not --model {model_kind}")
    kind = model_kind or (PRESETS[preset]["model_kind"] if preset else None)
    if kind not in MODEL_KINDS:
        raise LadderError(f"unknown neural model {kind!r}; choose one of {', '.join(MODEL_KINDS)}")
    base = PRESETS[preset or DEFAULT_PRESET[kind]]
    types = {"model": model_config_type(kind), **SECTION_TYPES}
    values: dict[str, dict[str, Any]] = {s: dict(base.get(s, {})) for s in SECTIONS}
    values["model"].setdefault("vocab_size", 0)  # 0: the tokenizer's, filled in by the trainer
    problems = []
    for source, layer in (("config file", file_values or {}), ("options", options)):
        for section, entries in layer.items():
            valid = {f.name: f for f in fields(types[section]) if f.name not in HIDDEN_MODEL_FIELDS}
            for key, value in entries.items():
                if key not in valid:
                    where = f"[{section}] {key}" if source == "config file" else f"--{key.replace('_', '-')}"
                    if source == "options":
                        problems.append(f"{where} does not apply to a {kind} model")
                    else:
                        problems.append(f"unknown config key {where} (valid: {', '.join(valid)})")
                    continue
                want = _type(valid[key])
                if want is float and isinstance(value, int) and not isinstance(value, bool):
                    value = float(value)
                if not isinstance(value, want) or (want is int and isinstance(value, bool)):
                    problems.append(f"[{section}] {key} must be a {want.__name__} (got {value!r})")
                    continue
                values[section][key] = value
    if problems:
        raise LadderError("; ".join(problems))
    try:
        config = TrainConfig(kind, types["model"](**values["model"]),
                             **{s: SECTION_TYPES[s](**values[s]) for s in SECTION_TYPES})
    except ValueError as exc:
        raise LadderError(str(exc)) from None
    check(config)
    return config


def check(config: TrainConfig) -> None:
    m, o, r = config.model, config.optim, config.run
    problems = []
    for name, value in (("block_size", m.block_size), ("n_embd", m.n_embd), ("batch_size", o.batch_size),
                        ("eval_batch_size", r.eval_batch_size), ("log_interval", r.log_interval)):
        if value < 1:
            problems.append(f"{name} must be at least 1 (got {value})")
    for name, value in (("micro_batch_size", o.micro_batch_size), ("seq_len", config.data.seq_len),
                        ("warmup_steps", o.warmup_steps), ("max_steps", r.max_steps), ("max_tokens", r.max_tokens),
                        ("eval_interval", r.eval_interval), ("checkpoint_interval", r.checkpoint_interval),
                        ("weight_decay", o.weight_decay), ("grad_clip", o.grad_clip), ("time_budget", r.time_budget)):
        if value < 0:
            problems.append(f"{name} must be >= 0 (got {value})")
    if not (o.lr > 0) or not (0 <= o.min_lr <= o.lr):
        problems.append(f"lr must be > 0 and min_lr in [0, lr] (got lr {o.lr}, min_lr {o.min_lr})")
    if not (0 <= o.ema < 1):
        problems.append(f"ema must be in [0, 1) (got {o.ema})")
    if not (0 <= m.dropout < 1):
        problems.append(f"dropout must be in [0, 1) (got {m.dropout})")
    if o.schedule not in ("cosine", "wsd"):
        problems.append(f"schedule must be cosine or wsd (got {o.schedule!r})")
    if r.compile_mode not in COMPILE_MODES:
        problems.append(f"compile_mode must be one of {', '.join(COMPILE_MODES)} (got {r.compile_mode!r})")
    if r.attention not in ATTENTION_KERNELS:
        problems.append(f"attention must be one of {', '.join(ATTENTION_KERNELS)} (got {r.attention!r})")
    for switch, choices, instead in (("head_loss", HEAD_LOSSES, "uses the plain loss"),
                                     ("gelu_fusion", GELU_FUSIONS, "has a tanh layer")):
        value = getattr(r, switch)
        if value not in choices:
            problems.append(f"{switch} must be one of {', '.join(choices)} (got {value!r})")
        elif config.model_kind != "gpt" and value == "fused":
            problems.append(f"{switch} fused is for a GPT; an {config.model_kind.upper()} {instead}")
    if r.dtype not in ("bfloat16", "float16", "float32"):
        problems.append(f"dtype must be bfloat16, float16 or float32 (got {r.dtype!r})")
    if config.model_kind == "gpt" and config.data.seq_len > m.block_size:
        problems.append(f"seq_len {config.data.seq_len} is longer than the GPT's block_size {m.block_size}")
    if config.model_kind == "mlp" and config.seq_len < m.block_size:
        problems.append(f"seq_len {config.seq_len} must be at least the MLP's context (block_size {m.block_size})")
    if not (r.max_steps or r.max_tokens or r.time_budget):
        problems.append("give a way to stop: --max-steps, --max-tokens or --time-budget")
    if problems:
        raise LadderError("; ".join(problems))


# --- the model, built from a config --------------------------------------------------------


