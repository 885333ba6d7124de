"""Everything checked before the first step: the processes (Dist), the data, the tokenizer, the
config made whole (its vocabulary from the tokenizer, its micro-batch fitted), the memory the
run needs against the GPU's, and what the machine can run (machine_problems: threads, the
batch's and a CPU model's memory). Every bad input fails here, in one error, before any training.

Data: each split is a cached memory map of token ids (lmladder.tokens), loaded once here.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from lmladder import artifacts, canonical, checkpoint
from lmladder.atomic import MARKER, check_output_dir
from lmladder.config import TrainConfig
from lmladder.console import log
from lmladder.errors import LadderError
from lmladder.kernels import fp8_head, fused_head
from lmladder.neural import padded_vocab, pick_device
from lmladder.runtime import THREADS_PER_CORE, available_memory, usable_cores

# Dense bf16 peak of each GPU (TFLOP/s, no sparsity), matched against the device name in order.
PEAK_TFLOPS = (("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0), ("H200", 989.0), ("H800", 989.0),
               ("GH200", 989.0), ("B200", 2250.0), ("B100", 1750.0), ("A100", 312.0), ("A800", 312.0),
               ("L40S", 362.0), ("L40", 181.0), ("L4", 121.0), ("A10G", 70.0), ("A10", 125.0),
               ("RTX 4090", 165.0), ("RTX 3090", 71.0), ("V100", 125.0), ("T4", 65.0))


def peak_flops(device: str) -> float | None:
    """The device's dense bf16 peak in FLOP/s (for MFU), or None off a GPU or for a GPU not listed."""
    import torch

    if not device.startswith("cuda"):
        return None
    name = torch.cuda.get_device_name(torch.device(device))
    for key, tflops in PEAK_TFLOPS:
        if key in name:
            return tflops * 1e12
    return None


def memory_needed(config: TrainConfig, micro_batch: int) -> int:
    """A rough upper estimate of training memory in bytes: fp32 weights, grads and AdamW state
    (16 bytes a parameter), bf16 weight copies, and the activations of one micro-batch (about
    34 C bytes per token and layer with flash attention, and 10 bytes per logit; 4 with the
    fused head loss, which keeps only the logits' bf16 gradient)."""
    m = config.model
    vocab = m.vocab_size
    if config.model_kind == "gpt":
        per_token = m.depth * 34 * m.n_embd + (4 if fused_head(config, "cuda") else 10) * vocab  # GPU memory
    else:
        per_token = 4 * (m.block_size * m.n_embd + m.n_hidden) + 10 * vocab
    return int(18 * parameters_estimate(config) + micro_batch * config.seq_len * per_token)


def parameters_estimate(config: TrainConfig) -> int:
    """About how many parameters the config's model has (its vocab_size as it stands)."""
    m, vocab = config.model, config.model.vocab_size
    if config.model_kind == "gpt":
        return vocab * m.n_embd + m.block_size * m.n_embd + 12 * m.n_layer * m.n_embd ** 2
    return vocab * m.n_embd + (m.block_size * m.n_embd + 1) * (m.n_hidden + vocab) + m.n_hidden * vocab


def device_memory(device: str) -> int | None:
    """The GPU's memory in bytes; None off a GPU (a CPU run is not checked)."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_properties(torch.device(device)).total_memory
    return None


# --- the machine: checked before any long work (no torch) -----------------------------------

def gib(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB"


def machine_problems(config: TrainConfig, device: str | None = None) -> list[str]:
    """What this machine cannot run: more --threads than THREADS_PER_CORE a usable core; a batch
    whose token ids (step.batch_windows: int64, and an index as large) take over half the
    available memory; on a CPU (`device`), weights, gradients and AdamW state (16 bytes a
    parameter) over all of it."""
    r, o = config.run, config.optim
    problems, cores = [], usable_cores()
    if r.threads > THREADS_PER_CORE * cores:
        problems.append(f"threads must be at most {THREADS_PER_CORE * cores}, {THREADS_PER_CORE} x the {cores} usable "
                        f"cores of this machine (got {r.threads}); 0 is torch's own count")
    available = available_memory()
    if available is None:
        return problems
    batch = 2 * 8 * o.batch_size * (config.seq_len + 1)
    if batch > available / 2:
        problems.append(f"batch_size {o.batch_size:,}: its windows of {config.seq_len + 1:,} token ids need about "
                        f"{gib(batch)} of memory, more than half of the {gib(available)} this machine has available; "
                        f"lower --batch-size or {'--seq-len' if config.data.seq_len else '--block-size'}")
    weights = 16 * parameters_estimate(config)
    if device == "cpu" and weights > available:
        problems.append(f"this model's weights, gradients and optimizer state need about {gib(weights)} of memory, "
                        f"more than the {gib(available)} this machine has available; train a smaller model")
    return problems


# --- the processes ---------------------------------------------------------------------------


@dataclass
class Dist:
    """This process's place among the run's: rank of world, and its GPU on this host (local_rank)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """The process that writes the run's folder and logs."""
        return self.rank == 0


def init_distributed(device: str) -> tuple[Dist, str]:
    """Join torchrun's process group (NCCL on GPUs, gloo on CPUs), each process on its own GPU;
    outside torchrun, one process on `device`."""
    import torch
    import torch.distributed as td

    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Dist(), device
    rank, world, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))
    if device.startswith("cuda"):
        device = f"cuda:{local}"
        torch.cuda.set_device(device)
    if not td.is_initialized():
        td.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return Dist(rank, world, local), device


@contextlib.contextmanager
def cpu_threads(threads: int):
    """torch's CPU threads set to `threads` inside the block (0: torch's own count, left alone),
    and back to what they were after it."""
    import torch

    before = torch.get_num_threads()
    if threads and threads != before:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


# --- the run ---------------------------------------------------------------------------------


@dataclass
class Job:
    """A run, checked and ready: everything needed before the first step."""

    config: TrainConfig  # complete: the vocabulary and the micro-batch are the run's own
    corpus: Any  # lmladder.corpora.Corpus
    split: str
    tokenizer: Any
    train_ids: np.ndarray
    val_ids: np.ndarray | None
    val_chars: int
    test_docs: list[str]
    out: Path
    resume: dict[str, Any] | None  # the latest/ checkpoint's state when resuming
    device: str
    init_weights: dict[str, Any] | None = None  # --init-from: the weights the model starts from
    parents: tuple[np.ndarray, np.ndarray] | None = None  # --token-dropout: each token's merge (tokensplit)
    # `out` before the run: "absent" or "empty" (a run that fails before it saves any weights
    # leaves it so again, loop.discard_unsaved), or "full" (resumed, or it held anything: kept)
    out_before: str = "full"


def prepare(corpus_name: str, tokenizer_spec: str | None, config: TrainConfig, out: str | Path,
            resume: bool = False, dist: Dist | None = None, device: str | None = None,
            fit_micro: bool = False, init_weights: dict[str, Any] | None = None) -> Job:
    """Load and check everything; every bad input fails here, before any training. fit_micro:
    the micro-batch came from a preset or the defaults, not from the user, so where it does not
    divide a process's share of the batch its largest divisor below it is taken, and where it
    does not fit the GPU the largest half, quarter, ... of it that does (the same batch, by
    accumulation). `config` is left as it is; the Job holds the completed copy. init_weights:
    a state dict the model starts from instead of its random initialisation (fine-tuning)."""
    from lmladder.tokens import encoded_split
    from lmladder.tokensplit import parents_for

    out = Path(out)
    dist = dist or Dist()
    if resume:
        corpus, split, tokenizer, state = _resumed(corpus_name, tokenizer_spec, out)
    else:
        corpus, split, tokenizer, state = _fresh(corpus_name, tokenizer_spec, config, out)
    problems: list[str] = []
    config = with_vocabulary(config, tokenizer, problems)
    splits = corpus.split(split)
    train_ids = encoded_split(tokenizer, corpus, split, "train")
    if len(train_ids) < config.seq_len + 1:
        problems.append(f"the train split of {corpus.name} has {len(train_ids):,} tokens, shorter than one "
                        f"training window of {config.seq_len + 1}; use a longer corpus or a smaller --block-size")
    val_ids = encoded_split(tokenizer, corpus, split, "val") if any(splits["val"]) else None
    device = device or pick_device(config.run.device)
    config = _with_micro_batch(config, dist, device, fit_micro, problems)
    problems.extend(machine_problems(config, device))
    if config.run.fp8 or fp8_head(config):
        from lmladder.kernels.fp8 import fp8_problems

        o = config.optim
        problems.extend(fp8_problems(config, device, (o.micro_batch_size or o.batch_size // dist.world) * config.seq_len))
    parents = None
    try:
        parents = parents_for(config, tokenizer)
        if config.data.canonical:
            canonical.check(tokenizer)
    except LadderError as exc:
        problems.append(str(exc))
    if problems:
        raise LadderError("; ".join(problems))
    out_before = "full" if resume or (out.exists() and any(out.iterdir())) else "empty" if out.exists() else "absent"
    return Job(config, corpus, split, tokenizer, train_ids, val_ids, sum(len(d) for d in splits["val"]),
               list(splits["test"]), out, state, device, init_weights, parents, out_before)


def _resumed(corpus_name: str, tokenizer_spec: str | None, out: Path) -> tuple[Any, str, Any, dict]:
    """(corpus, split, tokenizer, latest/'s state) of the run saved in `out`, after checking that
    the corpus and any tokenizer given are the ones it was trained with."""
    from lmladder import corpora
    from lmladder.neural import saved_config
    from lmladder.tokens import load_tokenizer

    state = checkpoint.read(out / "latest")
    checkpoint.check_state(out / "latest", state)
    header = artifacts.read_header(out, "lmladder-model")
    saved_config(out, header)  # as the CLI checks it (resumed_config): a library caller's resume too
    _same_run(out, header.get("config"), state.get("config"))
    found = header.get("corpus")
    if not (isinstance(found, dict) and all(isinstance(found.get(k), str) for k in ("name", "sha256"))
            and isinstance(header.get("split"), str)):
        raise LadderError(f"{out / MARKER} is damaged (its corpus or split is missing or not text); restore it from "
                          "a copy, or train the run again")
    _check_run_parts(out)
    corpus = corpora.load(corpus_name)
    if corpus.sha256 != header["corpus"]["sha256"]:
        raise LadderError(f"{out} was trained on corpus {header['corpus']['name']} (sha256 "
                          f"{header['corpus']['sha256'][:12]}...), not {corpus.name} ({corpus.sha256[:12]}...); "
                          "resume on the same corpus")
    tokenizer = load_tokenizer(out / "tokenizer")
    if tokenizer_spec is not None:
        given = load_tokenizer(tokenizer_spec, corpus, header["split"])
        if given.identity() != tokenizer.identity():
            raise LadderError(f"--tokenizer {tokenizer_spec} is not the tokenizer {out} was trained with "
                              f"({tokenizer.kind}, sha256 {tokenizer.identity()['sha256'][:12]}...); "
                              "leave --tokenizer out when resuming")
    return corpus, header["split"], tokenizer, state


def _same_run(out: Path, run: Any, kept: Any) -> None:
    """The run's config (its lmladder.json, what a resume reads) and latest/'s (what its weights
    and optimizer state were trained with) agree on every field a resume may not change: else one
    was edited (an n_loop, say, is not in the weights' shapes), a LadderError naming the field."""
    from lmladder.config import RESUMABLE, SECTIONS

    if not isinstance(run, dict) or not isinstance(kept, dict):
        return
    pairs = [("model_kind", run.get("model_kind"), kept.get("model_kind"))]
    for section in SECTIONS:
        mine, theirs = run.get(section), kept.get(section)
        if isinstance(mine, dict) and isinstance(theirs, dict):  # a field one version has and one lacks is skipped
            pairs += [(k, mine[k], theirs[k]) for k in mine if k in theirs and k not in RESUMABLE]
    name, a, b = next((p for p in pairs if p[1] != p[2]), (None, None, None))
    if name is not None:
        raise LadderError(f"{out / MARKER} and {out / 'latest' / MARKER} disagree on {name} ({a!r} against {b!r}): "
                          "one was edited; restore it from a copy (latest/'s is the one its weights were trained "
                          "with), or train the run again")


def resumed_config(out: Path, header: dict[str, Any], options: dict[str, Any]) -> TrainConfig:
    """The config to continue the run in `out` with: its header's (`header`, its lmladder.json),
    checked as a new config is and as `lmladder score` checks a saved one (every field of its
    type, the values lmladder.config.check allows: a damaged file is refused, naming it), with
    the RESUMABLE options (field name -> value) changed (lmladder.config.resumed)."""
    from lmladder import config as conf
    from lmladder.neural import saved_config

    saved_config(Path(out), header)
    return conf.resumed(header["config"], options)


def _check_run_parts(out: Path) -> None:
    """What a resumed run writes besides latest/ and its header, checked before any training (a
    damaged one would otherwise fail at its first write, with latest/ already moved on):
    metrics.jsonl a file (or none), best/ a whole checkpoint folder (or none)."""
    metrics = out / "metrics.jsonl"
    if (metrics.exists() or metrics.is_symlink()) and not metrics.is_file():
        raise LadderError(f"{metrics} is not a file; the run's folder is damaged: move it out of the way (the "
                          "resumed run starts a new metrics.jsonl) and resume again")
    best = out / "best"
    if best.exists() or best.is_symlink():
        try:
            checkpoint.read(best, need_optimizer=False)
        except LadderError as exc:
            raise LadderError(f"the best weights' folder {best} is damaged: {exc}; restore it from a copy, or delete "
                              "it and resume again (its weights are lost; the run saves best/ again when val "
                              "betters the best so far, and names latest/'s weights until then)") from None


def _fresh(corpus_name: str, tokenizer_spec: str | None, config: TrainConfig,
           out: Path) -> tuple[Any, str, Any, None]:
    """(corpus, split, tokenizer, None) of a new run into `out`, which must not hold one."""
    from lmladder import corpora
    from lmladder.tokens import load_tokenizer

    check_output_dir(out)
    if (out / "latest").exists():
        raise LadderError(f"{out} already holds a training run; continue it with --resume {out} "
                          "or choose a new --out")
    corpus = corpora.load(corpus_name)
    split = str(corpus.split(config.data.split or None).spec)
    return corpus, split, load_tokenizer(tokenizer_spec or "char", corpus, split), None


def with_vocabulary(config: TrainConfig, tokenizer, problems: list[str]) -> TrainConfig:
    """The config with the tokenizer's vocabulary (a GPT's padded to a multiple of 64) where it
    asks for 0, and an MLP's padding id (the end-of-text id, so padding reads "before the document")."""
    m = config.model
    if m.vocab_size == 0:
        m = replace(m, vocab_size=padded_vocab(tokenizer.vocab_size) if config.model_kind == "gpt"
                    else tokenizer.vocab_size)
    elif m.vocab_size < tokenizer.vocab_size:
        problems.append(f"vocab_size {m.vocab_size} is smaller than the tokenizer's {tokenizer.vocab_size}")
    if config.model_kind == "mlp":
        m = replace(m, pad_id=tokenizer.eot_id)
    return replace(config, model=m)


def _with_micro_batch(config: TrainConfig, dist: Dist, device: str, fit_micro: bool,
                      problems: list[str]) -> TrainConfig:
    """The config with a micro-batch that divides each process's share of the batch and fits the
    GPU: fitted when fit_micro (logged), else checked (a problem when it does not)."""
    o = config.optim
    world = dist.world
    share = o.batch_size // world
    if fit_micro and o.micro_batch_size and share > 0 and not o.batch_size % world and share % o.micro_batch_size:
        fitted = max(d for d in range(1, min(o.micro_batch_size, share) + 1) if share % d == 0)
        if dist.main:
            log(f"micro_batch_size {o.micro_batch_size} does not divide each process's share of the batch "
                f"({share}): {fitted} instead")
        o = replace(o, micro_batch_size=fitted)
    if o.batch_size % world:
        problems.append(f"batch_size {o.batch_size} does not split evenly over {world} processes")
    elif o.micro_batch_size and share % o.micro_batch_size:
        problems.append(f"each process's share of the batch ({share}) is not a multiple of "
                        f"micro_batch_size {o.micro_batch_size}")
    config = replace(config, optim=o)
    available = device_memory(device)
    micro = o.micro_batch_size or share
    needed = memory_needed(config, micro)
    if fit_micro and available is not None and needed > available:
        smaller = micro
        while smaller % 2 == 0 and memory_needed(config, smaller) > available:
            smaller //= 2
        if memory_needed(config, smaller) <= available:
            if dist.main:
                log(f"micro_batch_size {micro} needs about {needed / 2**30:.1f} GiB of GPU memory, the GPU has "
                    f"{available / 2**30:.1f} GiB: micro-batches of {smaller} instead (the same batch of "
                    f"{o.batch_size}, accumulated)")
            config = replace(config, optim=replace(o, micro_batch_size=smaller))
        micro, needed = smaller, memory_needed(config, smaller)
    if available is not None and needed > available:
        advice = ("lower --micro-batch-size" if micro > 1
                  else "it does not fit even at micro_batch_size 1: train a smaller model")
        problems.append(f"this model needs about {needed / 2**30:.1f} GiB of GPU memory with micro_batch_size "
                        f"{micro}, but the GPU has {available / 2**30:.1f} GiB; {advice}")
    return config
