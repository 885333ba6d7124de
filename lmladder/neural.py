"""The neural rungs (GPT and MLP) as the rest of lmladder sees them: configs, presets, and a
rung object that scores documents through the one contract and samples text.

A run's configuration is four sections, each a dataclass, and every field is a command-line
option of `lmladder train` (`n_layer` -> `--n-layer`) and a key of a TOML config file:

    [model]  GPTConfig (lmladder.gpt) or MLPConfig (lmladder.mlp)
    [optim]  OptimConfig: batch, learning-rate schedule, AdamW
    [data]   DataConfig: split, training window
    [run]    RunConfig: when to stop, evaluate, checkpoint; device, compile

Later sources override earlier ones: the field defaults, the preset, the config file, the
command-line options.

Scoring: each document is the id sequence [eot] doc, and every unit of doc is predicted from the
units before it (never across documents), over windows of the model's context that overlap so
that each unit past the first window sees at least half a context (the MLP: its whole context).
End-of-text is not a unit of the text, so its probability is removed and the rest renormalised.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lmladder.errors import LadderError

MODEL_KINDS = ("gpt", "mlp")


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


def _chosen(config, switch: str) -> bool | None:
    """A GPT fusion switch (head_loss, gelu_fusion) as set: True (fused), False (plain, or not a
    GPT), None (auto: the caller decides)."""
    value = getattr(config.run, switch)
    if config.model_kind != "gpt" or value == "plain":
        return False
    return True if value == "fused" else None


def fused_head(config, device_type: str) -> bool:
    """Whether a run's GPT, on a device of this type (cuda, cpu, ...), takes its loss through
    lmladder.headloss: with auto only where its Triton kernel runs (off it, the torch version
    of the kernel makes float32 copies of the logits, and the compiled plain loss is better)."""
    chosen = _chosen(config, "head_loss")
    if chosen is not None:
        return chosen
    from lmladder.headloss import triton_usable

    return config.model.vocab_size >= FUSED_HEAD_MIN_VOCAB and triton_usable(device_type)


def fused_gelu(config, device_type: str, world: int = 1) -> bool:
    """Whether a run's GPT, on a device of this type, runs its MLPs through lmladder.fusedmlp:
    with auto only where cuBLASLt's epilogues run it: a GPU, bf16 or fp16 autocast, a width that
    is a multiple of 8, and FUSED_GELU_MIN_TOKENS tokens or more a micro-batch (each of `world`
    processes' share). Elsewhere it would be the same torch arithmetic as the compiled plain
    MLP's, hidden from the compiler."""
    chosen = _chosen(config, "gelu_fusion")
    if chosen is not None:
        return chosen
    o = config.optim
    tokens = (o.micro_batch_size or o.batch_size // world) * config.seq_len
    if (device_type != "cuda" or config.run.dtype not in ("bfloat16", "float16") or config.model.n_embd % 8
            or tokens < FUSED_GELU_MIN_TOKENS or tokens % 8):
        return False
    from lmladder import cublaslt

    return cublaslt.available()


SECTION_TYPES = {"optim": OptimConfig, "data": DataConfig, "run": RunConfig}
HIDDEN_MODEL_FIELDS = ("pad_id",)  # set from the tokenizer, never by hand


def model_config_type(kind: str):
    if kind == "gpt":
        from lmladder.gpt import GPTConfig

        return GPTConfig
    if kind == "mlp":
        from lmladder.mlp import MLPConfig

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
    from lmladder.gpt import GPTConfig
    from lmladder.mlp import MLPConfig

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


def padded_vocab(tokenizer_vocab: int, asked: int = 0) -> int:
    return asked if asked else 64 * math.ceil(tokenizer_vocab / 64)


def build_model(config: TrainConfig):
    if config.model_kind == "gpt":
        from lmladder.gpt import GPT

        return GPT(config.model)
    from lmladder.mlp import MLP

    return MLP(config.model)


def context_overlap(model_kind: str, block_size: int) -> int:
    """How many units of each scoring window (after the first) only serve as context."""
    return block_size - 1 if model_kind == "mlp" else block_size // 2


def window_plan(n: int, window: int, overlap: int) -> list[tuple[int, int]]:
    """(start, first scored position) of each window over a sequence of n ids; window k reads
    ids[start : start + window] and predicts ids[start + 1 : start + window + 1]; together they
    predict ids[1:] exactly once each."""
    if n < 2:
        return []
    stride = max(1, window - overlap)
    plan, start = [(0, 0)], 0
    while start + window < n - 1:
        start += stride
        plan.append((start, overlap))
    return plan


def window_logprobs(model, seqs: Sequence[np.ndarray], window: int, overlap: int, batch_size: int,
                    device, dtype=None, allowed: int | None = None, excluded: int | None = None) -> list[np.ndarray]:
    """ln P of ids[1:] of each sequence (float64), each id predicted from the ids before it,
    in batches of windows. Logits past `allowed` (padding of the vocabulary) and at `excluded`
    (end-of-text) are removed before the softmax."""
    import torch
    from torch.nn import functional as F

    jobs = []  # (sequence, start, first scored)
    for s, seq in enumerate(seqs):
        jobs.extend((s, start, first) for start, first in window_plan(len(seq), window, overlap))
    out = [np.zeros(max(0, len(seq) - 1)) for seq in seqs]
    autocast = (torch.autocast("cuda", dtype=dtype) if dtype is not None and torch.device(device).type == "cuda"
                else contextlib.nullcontext())
    for i in range(0, len(jobs), batch_size):
        part = jobs[i : i + batch_size]
        x = np.zeros((len(part), window), dtype=np.int64)
        y = np.zeros((len(part), window), dtype=np.int64)
        lengths = []
        for j, (s, start, _) in enumerate(part):
            chunk = np.asarray(seqs[s][start : start + window + 1], dtype=np.int64)
            x[j, : len(chunk) - 1] = chunk[:-1]
            y[j, : len(chunk) - 1] = chunk[1:]
            lengths.append(len(chunk) - 1)
        width = max(lengths)
        xt = torch.from_numpy(x[:, :width]).to(device)
        with torch.no_grad(), autocast:
            logits = model(xt)
        logits = logits.float()
        if allowed is not None:
            logits = logits[..., :allowed]
        if excluded is not None:
            logits[..., excluded] = -math.inf
        lp = F.log_softmax(logits, dim=-1)
        picked = lp.gather(-1, torch.from_numpy(y[:, :width]).to(device)[..., None])[..., 0]
        picked = picked.double().cpu().numpy()
        for j, (s, start, first) in enumerate(part):
            out[s][start + first : start + lengths[j]] = picked[j, first : lengths[j]]
    return out


class NeuralRung:
    """A trained GPT or MLP with its tokenizer: score(documents) and sample(...)."""

    def __init__(self, model, tokenizer, config: TrainConfig, device: str = "cpu"):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.config = config
        self.device = device
        self.kind = config.model_kind
        self.parameters = sum(p.numel() for p in model.parameters())

    @property
    def window(self) -> int:
        return self.config.model.block_size if self.kind == "gpt" else max(256, 2 * self.config.model.block_size)

    def score(self, documents: Sequence[str]):
        from lmladder.metrics import UnitScores

        tok = self.tokenizer
        encoded = tok.encode_batch(list(documents))
        seqs = [np.concatenate([[tok.eot_id], ids]).astype(np.int64) for ids in encoded]
        dtype = _autocast_dtype(self.config.run.dtype)
        overlap = context_overlap(self.kind, self.config.model.block_size)
        lps = window_logprobs(self.model, seqs, self.window, overlap, self.config.run.eval_batch_size,
                              self.device, dtype, tok.vocab_size, tok.eot_id)
        parts = [UnitScores(lp + tok.spelling_logprob(ids), len(doc), len(doc.encode("utf-8")))
                 for doc, ids, lp in zip(documents, encoded, lps)]
        return UnitScores.concat(parts)

    def sample(self, prompt: str = "", max_new_chars: int | None = None, settings=None, seed: int = 0,
               num_samples: int = 1, on_text=None, max_new_tokens: int | None = None) -> list[str]:
        """Continue `prompt` for `max_new_chars` characters or `max_new_tokens` tokens, or until
        a sample reaches the end of a document. A GPT decodes with a key-value cache
        (lmladder.decode); the MLP re-reads its short fixed window. Samples are drawn in parallel,
        each with its own generator; `on_text(i, piece)` sees sample i's text as it grows."""
        from lmladder import decode
        from lmladder.console import log
        from lmladder.sampling import SampleSettings, sample_rngs

        settings = settings or SampleSettings()
        if max_new_chars is None and max_new_tokens is None:
            max_new_chars = 200
        tok = self.tokenizer
        block = self.config.model.block_size
        prompt_ids = np.concatenate([[tok.eot_id], tok.encode(prompt)]).astype(np.int64)
        if len(prompt_ids) > block:
            log(f"[yellow]the prompt is {len(prompt_ids) - 1:,} tokens; the model sees only its last {block:,}[/]")
        tokens: list[list[int]] = [[] for _ in range(num_samples)]
        texts = [""] * num_samples

        def decoded(i: int) -> str:  # the same random spelling for an escape every time
            return tok.decode(tokens[i], rng=np.random.default_rng([seed, i, 1]))

        def on_tokens(ids: np.ndarray, alive: np.ndarray) -> bool:
            for i in np.flatnonzero(alive):
                tokens[i].append(int(ids[i]))
                text = decoded(i)
                if max_new_chars is not None:
                    text = text[:max_new_chars]
                if on_text and len(text) > len(texts[i]) and text.startswith(texts[i]):
                    on_text(int(i), text[len(texts[i]):])
                texts[i] = text
            return max_new_chars is not None and all(len(texts[i]) >= max_new_chars for i in np.flatnonzero(alive))

        limit = max_new_tokens if max_new_tokens is not None else 4 * max_new_chars + 16
        decode.generate(self.model, prompt_ids.tolist(), limit, settings, sample_rngs(seed, num_samples),
                        vocab_size=tok.vocab_size, stop_id=tok.eot_id, dtype=_autocast_dtype(self.config.run.dtype),
                        use_cache=self.kind == "gpt", on_tokens=on_tokens)
        return [prompt + t for t in texts]


def _autocast_dtype(name: str):
    import torch

    return {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(name)


def pick_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise LadderError(f"--device {name} asked for, but torch sees no CUDA GPU; use --device cpu")
    if name != "cpu" and not name.startswith("cuda"):
        raise LadderError(f"unknown --device {name!r}; use auto, cpu, cuda or cuda:N")
    return name


def load(folder: Path, header: dict[str, Any]) -> NeuralRung:
    """The rung saved in a training folder (artifacts.MODEL_LOADERS: kinds gpt and mlp)."""
    from lmladder import checkpoint
    from lmladder.tokens import load_tokenizer

    try:
        config = TrainConfig.from_dict(header["config"])
        weights = folder / header["weights"]
    except (KeyError, TypeError) as exc:
        raise LadderError(f"{folder} has a model header without a usable config ({exc}); retrain it") from None
    tokenizer = load_tokenizer(folder / "tokenizer")
    model = build_model(config)
    checkpoint.load_weights(model, weights)
    device = pick_device("auto")
    return NeuralRung(model.to(device), tokenizer, config, device)
