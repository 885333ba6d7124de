"""A neural run's configuration: what `lmladder train` reads, saves with every run and resumes.

Four sections, each a dataclass: [model] GPTConfig or MLPConfig (the architecture), [optim]
OptimConfig (batch, learning-rate schedule, optimizer), [data] DataConfig (split, training window)
and [run] RunConfig (when to stop, evaluate, checkpoint; device, kernels). Every field is a key of
a TOML file and an option of `lmladder train` (`n_layer` -> `--n-layer`, its help written with `opt`).

Later sources override earlier ones: the field defaults, the preset (lmladder.presets), the config file, the
command-line options (`resolve`). Nothing here imports torch (`lmladder train --help` is fast).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

from lmladder import registry
from lmladder.errors import LadderError
from lmladder.kernels import FUSED_GELU_MIN_TOKENS, FUSED_HEAD_MIN_VOCAB
from lmladder.presets import DEFAULT_PRESET, PRESETS  # the named starting points, in their own module
from lmladder.splits import SplitSpec


def opt(default: Any, help: str, resumable: bool = False) -> Any:
    """A config field with its help, the help of its `lmladder train` option. resumable: an
    [optim] or [run] field that `--resume` may change (RESUMABLE)."""
    return field(default=default, metadata={"help": help, "resumable": resumable})


# the help of the fields GPTConfig and MLPConfig share word for word
VOCAB_HELP = ("Output size, at least the tokenizer's (default: the tokenizer's, for a GPT padded up to a "
              "multiple of 64 for faster matmuls).")
DROPOUT_HELP = "Dropout probability while training."


@dataclass
class GPTConfig:
    block_size: int = opt(1024, "The longest context the model sees, in tokens.")
    # the class default: GPT-2's 50,257 padded up to a multiple of 64
    vocab_size: int = opt(50304, VOCAB_HELP)
    n_layer: int = opt(12, "Transformer blocks.")
    n_loop: int = opt(1, "Passes through the blocks, weights shared (Dehghani et al. 2019): n_layer x n_loop deep.")
    n_head: int = opt(12, "Attention heads (n_embd must be a multiple of them).")
    n_embd: int = opt(768, "Embedding width, the residual stream's.")
    dropout: float = opt(0.0, DROPOUT_HELP)
    bias: bool = opt(True, "Biases in the Linear and LayerNorm layers, as GPT-2 has; without them a step is "
                           "a little faster.")
    position: str = opt("learned", "learned position embeddings (GPT-2's table, transformer.wpe) or rotary "
                                   "ones (no table).")
    residual_dtype: str = opt("float32", "The residual stream's dtype under autocast: float32 (as GPT-2 under "
                                         "autocast, nanoGPT) or autocast (its dtype, bf16 on a GPU: half the memory "
                                         "traffic of the adds and layer norms, a faster step).")

    def __post_init__(self) -> None:
        if self.n_head > 0 and self.n_embd % self.n_head:  # n_head < 1 is check()'s to report
            raise ValueError(f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")
        for name, value, choices in (("position", self.position, POSITIONS),
                                     ("residual_dtype", self.residual_dtype, RESIDUAL_DTYPES)):
            if value not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)} (got {value!r})")
        if self.position == "rotary" and self.n_head > 0 and (self.n_embd // self.n_head) % 2:
            raise ValueError(f"rotary positions need an even head size (n_embd / n_head = {self.n_embd // self.n_head})")

    depth = property(lambda self: self.n_layer * self.n_loop, doc="Blocks a position goes through.")


POSITIONS = ("learned", "rotary")
RESIDUAL_DTYPES = ("float32", "autocast")


@dataclass
class MLPConfig:
    """Bengio et al. (2003), "A Neural Probabilistic Language Model": its n, m, h and W."""

    block_size: int = opt(16, "How many previous tokens the model sees (n in Bengio et al. 2003, who used 5 "
                              "words).")
    vocab_size: int = opt(256, VOCAB_HELP)
    n_embd: int = opt(30, "The width of each token's feature vector in C (m in Bengio et al. 2003: 30 to 100).")
    n_hidden: int = opt(512, "Hidden tanh units (h in Bengio et al. 2003: 50 to 100 on word vocabularies).")
    direct: bool = opt(True, "The direct connections W from the embeddings to the output.")
    dropout: float = opt(0.0, DROPOUT_HELP)
    pad_id: int = opt(0, "The tokenizer's end-of-text id, set by the trainer (not an option).")


MODEL_CONFIGS = {"gpt": GPTConfig, "mlp": MLPConfig}
MODEL_KINDS = registry.NEURAL  # the rung registry's neural kinds: one config class each above
HIDDEN_MODEL_FIELDS = ("pad_id",)  # set from the tokenizer, never by hand


@dataclass
class OptimConfig:
    batch_size: int = opt(64, "Sequences per optimizer step, over all processes together.")
    micro_batch_size: int = opt(0, "Sequences per forward pass in each process, their gradients accumulated "
                                   "(0: the whole share at once). A preset's (one not given as an option or in a "
                                   "config file) is fitted to each process's share and to the GPU's memory.")
    lr: float = opt(1e-3, "Peak learning rate, reached at the end of the warmup.", resumable=True)
    min_lr: float = opt(1e-4, "Learning rate at the end of the schedule.", resumable=True)
    warmup_steps: int = opt(100, "Steps of linear warmup.", resumable=True)
    schedule: str = opt("cosine", "cosine (down to min_lr over the run), or wsd (warmup, stable, then a linear "
                                  "decay over the last 30%).", resumable=True)
    weight_decay: float = opt(0.1, "Decoupled weight decay (a step shrinks a matrix by lr x this).", resumable=True)
    optimizer: str = opt("adamw", "adamw, or muon: a GPT's block matrices by orthogonalised momentum (Jordan et al. "
                                  "2024, lmladder/train/muon.py), the embeddings, norms and biases by AdamW.")
    muon_lr: float = opt(0.02, "Muon's peak learning rate; the schedule scales it as it scales --lr.", resumable=True)
    beta1: float = opt(0.9, "AdamW's beta1.")
    beta2: float = opt(0.99, "AdamW's beta2.")
    grad_clip: float = opt(1.0, "Clip the global gradient norm to this (0: no clipping).", resumable=True)
    ema: float = opt(0.0, "Decay of a moving average of the weights, which is evaluated and kept (0: none).")


@dataclass
class DataConfig:
    split: str = opt("", "TRAIN,VAL,TEST fractions, e.g. 0.9,0.05,0.05 (default: the corpus's; lmladder.splits "
                         "has the forms).")
    seq_len: int = opt(0, "Training window in tokens (0: the model's block_size; a GPT's is at most it, an "
                          "MLP's at least it).")
    token_dropout: float = opt(0.0, "BPE only: split each training token into the two its merge joined with this "
                                    "probability, the halves again likewise (BPE-dropout's effect; "
                                    "lmladder/tokensplit.py); 0: none. Val and test are never split.")
    token_dropout_steps: int = opt(0, "BPE only: token dropout falls linearly from 1 (every token split to single "
                                      "bytes) to its set value over these first steps; 0: none.")
    input_noise: float = opt(0.0, "Replace each training input unit by a uniformly random one with this probability, "
                                  "the targets kept (Xie et al. 2017's noising); 0: none.")
    canonical: bool = opt(False, "BPE only: score, sample and compress with each next token renormalised over those "
                                 "that can follow the last one in an encoding (lmladder/canonical.py).")


@dataclass
class RunConfig:
    max_steps: int = opt(0, "Stop after this many optimizer steps (0: no step limit).", resumable=True)
    max_tokens: int = opt(0, "Stop after this many training tokens (0: no token limit).", resumable=True)
    time_budget: float = opt(0.0, "Stop after this many seconds of training (0: no time limit).", resumable=True)
    eval_interval: int = opt(250, "Steps between full passes over val (0: only at the end).", resumable=True)
    patience: int = opt(0, "Stop once this many passes over val in a row have not bettered the best one (0: "
                           "never); the best val's weights are the ones kept either way.", resumable=True)
    eval_batch_size: int = opt(64, "Windows per batch when evaluating and scoring.", resumable=True)
    log_interval: int = opt(10, "Steps between progress updates and metrics lines.", resumable=True)
    checkpoint_interval: int = opt(1000, "Steps between saves of latest/ (0: none by steps; it is always saved "
                                         "at the end).", resumable=True)
    # 300 s: a kill -9 loses at most 5 minutes; gpt2-124m's latest/ (1.5 GB) took 14-17 s to save
    checkpoint_seconds: float = opt(300.0, "Also save latest/ this long after the last save, the first time at the "
                                           "first evaluation or after a minute (0: not by time).", resumable=True)
    seed: int = opt(1337, "Seed of the weights and the batches.")
    device: str = opt("auto", "auto (a CUDA GPU if torch sees one), cpu, cuda or cuda:N.", resumable=True)
    # 0: the fastest on a free machine; beside a busy process 1 thread can be 80x faster (bench_threads.py)
    threads: int = opt(0, "CPU threads for torch's operators (0: torch's own count, the cores this process may use). "
                          "On a machine shared with busy processes, 1 can be many times faster. The count changes "
                          "the order of float sums, so a run's exact weights depend on it.", resumable=True)
    compile: bool = opt(False, "torch.compile the model with its loss (pays off on long GPU runs).", resumable=True)
    compile_mode: str = opt("default", "torch.compile's mode: default, or max-autotune-no-cudagraphs (slow to compile).")
    cuda_graph: bool = opt(True, "On one GPU, record the whole training step once and replay it as a CUDA "
                                 "graph (not with max-autotune; default: on).")
    attention: str = opt("auto", "CUDA attention kernel: auto (torch's choice), flash, cudnn, efficient or math.")
    dtype: str = opt("bfloat16", "Autocast dtype on CUDA: bfloat16, float16 or float32.")
    head_loss: str = opt("auto", "GPT: the head and the cross-entropy: fused (one pass that also writes the "
                                 "logits' gradient; a Triton kernel on a GPU, lmladder/kernels/headloss.py), "
                                 "fp8 (fused, its products in FP8: a GPU of compute capability 8.9+), plain "
                                 "(nn.Linear, then F.cross_entropy) or auto (fused on a GPU from a vocabulary "
                                 f"of {FUSED_HEAD_MIN_VOCAB:,} up, where it makes the step faster).", resumable=True)
    gelu_fusion: str = opt("auto", "GPT: the MLP: fused (GELU in the matrix products' epilogues, cuBLASLt's on "
                                   "a GPU, lmladder/kernels/fusedmlp.py), plain (Linear, GELU, Linear, compiled "
                                   "as separate kernels) or auto (fused on a GPU under bf16/fp16 from "
                                   f"{FUSED_GELU_MIN_TOKENS:,} tokens a micro-batch, where it was faster).",
                           resumable=True)
    fp8: bool = opt(False, "GPT on a GPU of compute capability 8.9+ (H100, H200): train the blocks' matrix products in "
                           "FP8 with per-tensor scales (lmladder/kernels/fp8.py); evaluation stays bf16.", resumable=True)


SECTIONS = ("model", "optim", "data", "run")
SECTION_TYPES = {"optim": OptimConfig, "data": DataConfig, "run": RunConfig}
# What --resume may change: when the run stops, evaluates, logs, saves, its device and kernels, the
# step size (read afresh each step: a diverged run resumes with a lower --lr); the rest is the run.
RESUMABLE = tuple(f.name for cls in SECTION_TYPES.values() for f in fields(cls) if f.metadata["resumable"])
ATTENTION_KERNELS, COMPILE_MODES = ("auto", "flash", "cudnn", "efficient", "math"), ("default", "max-autotune-no-cudagraphs")
SCHEDULES, OPTIMIZERS, DTYPES = ("cosine", "wsd"), ("adamw", "muon"), ("bfloat16", "float16", "float32")
HEAD_LOSSES, GELU_FUSIONS = ("auto", "fused", "fp8", "plain"), ("auto", "fused", "plain")


def model_config_type(kind: str):
    if kind not in MODEL_CONFIGS:
        raise LadderError(f"unknown neural model {kind!r}; choose one of {', '.join(MODEL_KINDS)}")
    return MODEL_CONFIGS[kind]


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


class Option(NamedTuple):
    """A config field as an option of `lmladder train`: `--name` (`--name/--no-name` for a bool)."""

    name: str
    type: type
    help: str


def option_fields() -> dict[str, list[Option]]:
    """section -> its settable fields, in order. [model] holds GPTConfig's and MLPConfig's fields
    once each: a field of one model has its help headed "GPT:" or "MLP:", a field both have and
    describe differently has both helps."""
    shared: dict[str, dict[str, dataclasses.Field]] = {}
    for kind, cls in MODEL_CONFIGS.items():
        for f in fields(cls):
            if f.name not in HIDDEN_MODEL_FIELDS:
                shared.setdefault(f.name, {})[kind] = f
    out = {"model": [Option(name, field_type(next(iter(by_kind.values()))), _model_help(by_kind))
                     for name, by_kind in shared.items()]}
    for section, cls in SECTION_TYPES.items():
        out[section] = [Option(f.name, field_type(f), f.metadata["help"]) for f in fields(cls)]
    return out


def _model_help(by_kind: dict[str, dataclasses.Field]) -> str:
    helps = {kind: f.metadata["help"] for kind, f in by_kind.items()}
    if len(helps) == len(MODEL_CONFIGS) and len(set(helps.values())) == 1:
        return next(iter(helps.values()))
    # "Transformer blocks." -> "GPT: transformer blocks."; an initialism keeps its capitals
    return " ".join(f"{kind.upper()}: {h[0].lower() + h[1:] if h[1:2].islower() else h}"
                    for kind, h in helps.items())


def field_type(f: dataclasses.Field) -> type:
    return {"int": int, "float": float, "bool": bool, "str": str}.get(str(f.type), type(f.default))


def of_type(value: Any, want: type) -> bool:
    """`value` (read from TOML or JSON) is a `want`: an int is a float too, a bool only a bool."""
    if isinstance(value, bool):
        return want is bool
    return isinstance(value, want) or (want is float and isinstance(value, int))


def read_config_file(path: str | Path) -> dict[str, dict[str, Any]]:
    from lmladder.textio import read_toml

    if Path(path).is_dir():
        raise LadderError(f"config file {path} is a folder, not a TOML file; give the path of a .toml file")
    data = read_toml(path, "config file")
    problems = [f"unknown section [{k}] (valid: {', '.join(SECTIONS)})" for k in data
                if k not in SECTIONS or not isinstance(data[k], dict)]
    if problems:
        raise LadderError(f"config file {path}: " + "; ".join(problems))
    return data


def resolve(model_kind: str | None, preset: str | None, file_values: dict[str, dict[str, Any]] | None,
            options: dict[str, dict[str, Any]]) -> TrainConfig:
    """Defaults < preset < config file < options, as a new TrainConfig (PRESETS, file_values and
    options are only read); every unknown key or bad value is reported at once."""
    if preset is not None and preset not in PRESETS:
        raise LadderError(f"unknown --preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if preset is not None and model_kind is not None and PRESETS[preset]["model_kind"] != model_kind:
        raise LadderError(f"preset {preset} is a {PRESETS[preset]['model_kind']} model, not --model {model_kind}")
    kind = model_kind or (PRESETS[preset]["model_kind"] if preset else None)
    if kind not in MODEL_KINDS:
        raise LadderError(f"unknown neural model {kind!r}; choose one of {', '.join(MODEL_KINDS)}")
    base = PRESETS[preset or DEFAULT_PRESET[kind]]
    types = {"model": model_config_type(kind), **SECTION_TYPES}
    values: dict[str, dict[str, Any]] = {s: dict(base.get(s, {})) for s in SECTIONS}  # copies: PRESETS stay
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
                want = field_type(valid[key])
                if not of_type(value, want):
                    article = "an" if want is int else "a"
                    problems.append(f"[{section}] {key} must be {article} {want.__name__} (got {value!r})")
                    continue
                values[section][key] = float(value) if want is float else value
    if problems:
        raise LadderError("; ".join(problems))
    try:
        config = TrainConfig(kind, types["model"](**values["model"]),
                             **{s: SECTION_TYPES[s](**values[s]) for s in SECTION_TYPES})
    except ValueError as exc:
        raise LadderError(str(exc)) from None
    check(config)
    return config


def resumed(saved: dict[str, Any], options: dict[str, Any]) -> TrainConfig:
    """A saved run's config (TrainConfig.to_dict) to continue it, with the RESUMABLE options
    (field name -> value) changed; any other option is refused unless it is the run's value."""
    was = {k: v for section in SECTIONS for k, v in TrainConfig.from_dict(saved).to_dict()[section].items()}  # + defaults
    changed = [k for k in options if k not in RESUMABLE and (k not in was or options[k] != was[k])]
    if changed:
        raise LadderError(f"--{changed[0].replace('_', '-')} cannot change on --resume (the run has "
                          f"{was.get(changed[0])!r}); only " + ", ".join(f"--{k.replace('_', '-')}" for k in RESUMABLE)
                          + " can")
    config = TrainConfig.from_dict(saved)
    for section, cls in SECTION_TYPES.items():
        mine = {f.name: options[f.name] for f in fields(cls) if f.name in options}
        setattr(config, section, dataclasses.replace(getattr(config, section), **mine))
    check(config)
    return config


# far past any real run (a larger one is a typo); a seed is a signed 64-bit integer, as torch's and numpy's take it
MAX_STEPS, MAX_TOKENS, MAX_LOOPS, MAX_SEED = 10**12, 10**15, 64, 2**63 - 1


def check(config: TrainConfig) -> None:
    """Every problem of the config at once, one message a field (the first found: a number that
    is not finite is only that), as one LadderError."""
    m, o, d, r = config.model, config.optim, config.data, config.run
    problems: dict[str, str] = {}
    bad = problems.setdefault
    for part in (m, o, d, r):  # every float finite, every size of the model at least 1
        for f in fields(part):
            value, kind = getattr(part, f.name), field_type(f)
            least = 0 if f.name == "vocab_size" else 1  # vocab_size 0: the tokenizer's
            if kind is float and not math.isfinite(value):
                bad(f.name, f"{f.name} must be a finite number (got {value})")
            elif part is m and kind is int and f.name not in HIDDEN_MODEL_FIELDS and value < least:
                bad(f.name, f"{f.name} must be at least {least} (got {value})")
    for name, value in (("batch_size", o.batch_size), ("eval_batch_size", r.eval_batch_size),
                        ("log_interval", r.log_interval)):
        if value < 1:
            bad(name, f"{name} must be at least 1 (got {value})")
    for name, value in (("micro_batch_size", o.micro_batch_size), ("seq_len", d.seq_len),
                        ("warmup_steps", o.warmup_steps), ("eval_interval", r.eval_interval),
                        ("checkpoint_interval", r.checkpoint_interval),
                        ("weight_decay", o.weight_decay), ("muon_lr", o.muon_lr), ("grad_clip", o.grad_clip),
                        ("time_budget", r.time_budget), ("patience", r.patience),
                        ("checkpoint_seconds", r.checkpoint_seconds), ("threads", r.threads)):
        if value < 0:
            bad(name, f"{name} must be >= 0 (got {value})")
    for name, value, most in (("max_steps", r.max_steps, MAX_STEPS), ("max_tokens", r.max_tokens, MAX_TOKENS),
                              ("token_dropout_steps", d.token_dropout_steps, MAX_STEPS)):
        if not 0 <= value <= most:
            bad(name, f"{name} must be " + (f">= 0 (got {value})" if value < 0 else f"at most {most:,} (got {value:,})"))
    if not 0 <= r.seed <= MAX_SEED:
        bad("seed", f"seed must be in [0, 2**63 - 1] (got {r.seed})")
    if "lr" not in problems and "min_lr" not in problems and (not (o.lr > 0) or not (0 <= o.min_lr <= o.lr)):
        bad("lr", f"lr must be > 0 and min_lr in [0, lr] (got lr {o.lr}, min_lr {o.min_lr})")
    for name, value in (("ema", o.ema), ("dropout", m.dropout), ("token_dropout", d.token_dropout),
                        ("input_noise", d.input_noise), ("beta1", o.beta1), ("beta2", o.beta2)):
        if not (0 <= value < 1):
            bad(name, f"{name} must be in [0, 1) (got {value})")
    if d.split:  # "" is the corpus's own, known once the corpus is loaded
        try:
            SplitSpec.parse(d.split)
        except LadderError as exc:
            bad("split", str(exc))
    for name, value, choices in (("schedule", o.schedule, SCHEDULES), ("optimizer", o.optimizer, OPTIMIZERS),
                                 ("compile_mode", r.compile_mode, COMPILE_MODES),
                                 ("attention", r.attention, ATTENTION_KERNELS), ("dtype", r.dtype, DTYPES)):
        if value not in choices:
            bad(name, f"{name} must be one of {', '.join(choices)} (got {value!r})")
    if o.optimizer == "muon" and config.model_kind != "gpt":
        bad("optimizer", "optimizer muon is for a GPT's block matrices; an MLP trains with adamw")
    for switch, choices, instead in (("head_loss", HEAD_LOSSES, "uses the plain loss"),
                                     ("gelu_fusion", GELU_FUSIONS, "has a tanh layer")):
        value = getattr(r, switch)
        if value not in choices:
            bad(switch, f"{switch} must be one of {', '.join(choices)} (got {value!r})")
        elif config.model_kind != "gpt" and value in ("fused", "fp8"):
            bad(switch, f"{switch} {value} is for a GPT; an {config.model_kind.upper()} {instead}")
    if config.model_kind == "gpt" and m.n_loop > MAX_LOOPS:
        bad("n_loop", f"n_loop must be at most {MAX_LOOPS} (got {m.n_loop}); a deeper model wants more n_layer")
    if config.model_kind == "gpt" and d.seq_len > m.block_size:
        bad("seq_len", f"seq_len {d.seq_len} is longer than the GPT's block_size {m.block_size}")
    if config.model_kind == "mlp" and config.seq_len < m.block_size:
        bad("seq_len", f"seq_len {config.seq_len} must be at least the MLP's context (block_size {m.block_size})")
    if not (r.max_steps or r.max_tokens or r.time_budget):
        bad("stop", "give a way to stop: --max-steps, --max-tokens or --time-budget")
    if problems:
        raise LadderError("; ".join(problems.values()))
