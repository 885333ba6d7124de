"""Training the neural rungs: one loop for the GPT and the MLP, on a CPU, a GPU, or several
GPUs through torchrun (DistributedDataParallel, NCCL on GPUs, gloo on CPUs).

- Data: each split is a cached memory map of token ids (lmladder.tokens). Optimizer step k
  draws `batch_size` random windows from a generator seeded by (seed, k); process r of W takes
  the r-th W-th of them, in micro-batches. So the global batch does not depend on W, and
  resuming at step k needs only k.
- Mixed precision: bf16 autocast and TF32 matmuls on CUDA; float32 on the CPU. AdamW (fused on
  CUDA) decays matrices only; the learning rate warms up linearly then follows a cosine (or
  warmup-stable-decay) to min_lr over the run's length in steps, tokens or seconds.
- Gradient accumulation: gradients are all-reduced only on the last micro-step of a step.
- One GPU: the whole step (every micro-batch's forward and backward, clipping, AdamW) is recorded
  once as a CUDA graph and replayed (GraphedStep); a small model's eager step is bound by the
  host launching its kernels. A run that compiles nothing never imports torch._dynamo
  (skip_dynamo_imports): seconds of start-up.
- Evaluation: a deterministic pass over all of val in fixed windows (lmladder.neural), in nats
  per token and bits per character; the final model is scored on test through lmladder.metrics.
- Checkpoints (lmladder.checkpoint): latest/ every checkpoint_interval steps and at the end,
  best/ whenever val improves; SIGINT/SIGTERM save latest/ and stop; a loss that is not finite
  stops the run with an error, leaving the last good checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lmladder import artifacts, checkpoint
from lmladder.atomic import MARKER, check_output_dir, write_json
from lmladder.console import log, progress_enabled, stderr
from lmladder.errors import LadderError
from lmladder.config import TrainConfig
from lmladder.neural import (build_model, context_overlap, fused_gelu, fused_head, padded_vocab,
                             pick_device, window_logprobs)

# Dense bf16 peak of each GPU (TFLOP/s, no sparsity), matched against the device name in order.
PEAK_TFLOPS = (("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0), ("H200", 989.0), ("H800", 989.0),
               ("GH200", 989.0), ("B200", 2250.0), ("B100", 1750.0), ("A100", 312.0), ("A800", 312.0),
               ("L40S", 362.0), ("L40", 181.0), ("L4", 121.0), ("A10G", 70.0), ("A10", 125.0),
               ("RTX 4090", 165.0), ("RTX 3090", 71.0), ("V100", 125.0), ("T4", 65.0))


class TrainingDiverged(LadderError):
    exit_code = 1


def peak_flops(device: str) -> float | None:
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
        params = vocab * m.n_embd + m.block_size * m.n_embd + 12 * m.n_layer * m.n_embd ** 2
        per_token = m.n_layer * 34 * m.n_embd + (4 if fused_head(config, "cuda") else 10) * vocab  # GPU memory
    else:
        params = vocab * m.n_embd + (m.block_size * m.n_embd + 1) * (m.n_hidden + vocab) + m.n_hidden * vocab
        per_token = 4 * (m.block_size * m.n_embd + m.n_hidden) + 10 * vocab
    return int(18 * params + micro_batch * config.seq_len * per_token)


def device_memory(device: str) -> int | None:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_properties(torch.device(device)).total_memory
    return None


# --- distributed --------------------------------------------------------------------------


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> tuple[Dist, str]:
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


# --- the run --------------------------------------------------------------------------------


@dataclass
class Job:
    """A run, checked and ready: everything needed before the first step."""

    config: TrainConfig
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


def prepare(corpus_name: str, tokenizer_spec: str | None, config: TrainConfig, out: str | Path,
            resume: bool = False, dist: Dist | None = None, device: str | None = None,
            fit_micro: bool = False) -> Job:
    """Load and check everything; every bad input fails here, before any training. fit_micro:
    the micro-batch came from a preset or the defaults, not from the user, so where it does not
    divide a process's share of the batch its largest divisor below it is taken, and where it
    does not fit the GPU the largest half, quarter, ... of it that does (the same batch, by
    accumulation)."""
    from lmladder import corpora
    from lmladder.tokens import encoded_split, load_tokenizer

    out = Path(out)
    state = None
    if resume:
        state = checkpoint.read(out / "latest")
        header = artifacts.read_header(out, "lmladder-model")
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
        split = header["split"]
    else:
        check_output_dir(out)
        if (out / "latest").exists():
            raise LadderError(f"{out} already holds a training run; continue it with --resume {out} "
                              "or choose a new --out")
        corpus = corpora.load(corpus_name)
        split = str(corpus.split(config.data.split or None).spec)
        tokenizer = load_tokenizer(tokenizer_spec or "char", corpus, split)
    problems = []
    m = config.model
    if m.vocab_size == 0:
        m.vocab_size = padded_vocab(tokenizer.vocab_size) if config.model_kind == "gpt" else tokenizer.vocab_size
    elif m.vocab_size < tokenizer.vocab_size:
        problems.append(f"vocab_size {m.vocab_size} is smaller than the tokenizer's {tokenizer.vocab_size}")
    if config.model_kind == "mlp":
        m.pad_id = tokenizer.eot_id
    splits = corpus.split(split)
    train_ids = encoded_split(tokenizer, corpus, split, "train")
    if len(train_ids) < config.seq_len + 1:
        problems.append(f"the train split of {corpus.name} has {len(train_ids):,} tokens, shorter than one "
                        f"training window of {config.seq_len + 1}; use a longer corpus or a smaller --block-size")
    val_ids = encoded_split(tokenizer, corpus, split, "val") if any(splits["val"]) else None
    dist = dist or Dist()
    world = dist.world
    o = config.optim
    share = o.batch_size // world
    if fit_micro and o.micro_batch_size and share > 0 and not o.batch_size % world and share % o.micro_batch_size:
        fitted = max(d for d in range(1, min(o.micro_batch_size, share) + 1) if share % d == 0)
        if dist.main:
            log(f"micro_batch_size {o.micro_batch_size} does not divide each process's share of the batch "
                f"({share}): {fitted} instead")
        o.micro_batch_size = fitted
    if o.batch_size % world:
        problems.append(f"batch_size {o.batch_size} does not split evenly over {world} processes")
    elif o.micro_batch_size and share % o.micro_batch_size:
        problems.append(f"each process's share of the batch ({share}) is not a multiple of "
                        f"micro_batch_size {o.micro_batch_size}")
    device = device or pick_device(config.run.device)
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
            o.micro_batch_size = smaller
        micro, needed = smaller, memory_needed(config, smaller)
    if available is not None and needed > available:
        advice = ("lower --micro-batch-size" if micro > 1
                  else "it does not fit even at micro_batch_size 1: train a smaller model")
        problems.append(f"this model needs about {needed / 2**30:.1f} GiB of GPU memory with micro_batch_size "
                        f"{micro}, but the GPU has {available / 2**30:.1f} GiB; {advice}")
    if problems:
        raise LadderError("; ".join(problems))
    return Job(config, corpus, split, tokenizer, train_ids, val_ids, sum(len(d) for d in splits["val"]),
               list(splits["test"]), out, state, device)


def lr_at(o, progress: float, step: int) -> float:
    if step < o.warmup_steps:
        return o.lr * (step + 1) / o.warmup_steps
    p = min(1.0, max(0.0, progress))
    if o.schedule == "wsd":
        return o.lr if p < 0.7 else o.min_lr + (o.lr - o.min_lr) * (1 - p) / 0.3
    return o.min_lr + 0.5 * (o.lr - o.min_lr) * (1 + math.cos(math.pi * p))


def batch_windows(ids: np.ndarray, seed: int, step: int, batch: int, seq_len: int) -> np.ndarray:
    """The `batch` windows of seq_len + 1 ids of optimizer step `step` (int64, (batch, seq_len + 1))."""
    starts = np.random.default_rng([seed, step]).integers(0, len(ids) - seq_len, size=batch)
    return np.asarray(ids[starts[:, None] + np.arange(seq_len + 1)], dtype=np.int64)


def make_optimizer(model, o, device: str, capturable: bool = False):
    """AdamW, fused on CUDA; `capturable` (for a CUDA graph): the learning rate is a tensor on
    the device, set in place each step."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": o.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    lr = torch.tensor(o.lr, device=device) if capturable else o.lr
    return torch.optim.AdamW(groups, lr=lr, betas=(o.beta1, o.beta2), fused=device.startswith("cuda"),
                             capturable=capturable)


def adopt_optimizer_state(optimizer, device: str, capturable: bool) -> None:
    """After loading a state that any run saved (a CUDA-graph run on a GPU, a plain one on a
    CPU): this run's fused and capturable flags, a tensor learning rate only for a CUDA graph,
    and the step counters where those flags want them."""
    import torch

    fused = device.startswith("cuda")
    for group in optimizer.param_groups:
        group["fused"], group["capturable"] = fused, capturable
        lr = float(group["lr"])
        group["lr"] = torch.tensor(lr, device=device) if capturable else lr
    for state in optimizer.state.values():
        if "step" in state:
            step = torch.as_tensor(state["step"], dtype=torch.float32).detach().cpu()
            state["step"] = step.to(device) if fused or capturable else step


def skip_dynamo_imports() -> bool:
    """Let AdamW run without importing torch._dynamo; True when done.

    torch.optim wraps a few functions (add_param_group, zero_grad, state_dict, the functional
    adam; step through a graph-break helper) so that torch.compile leaves them alone, and each
    wrapper imports torch._dynamo on its first call: 6 s of start-up on a cold H100 host, 1.5 s
    warm, for nothing when nothing is compiled. This marks the wrapped functions as already
    handled (the attribute those wrappers cache their result in); `plain_step` then skips the
    graph-break helper. Only for runs that compile nothing: afterwards torch.compile would trace
    into these functions. If torch's layout is not the expected one, nothing changes."""
    import importlib
    import inspect

    import torch

    try:
        found = [v for cls in torch.optim.AdamW.__mro__ for v in vars(cls).values()]
        found += list(vars(importlib.import_module("torch.optim.adam")).values())
        marked = 0
        for value in found:
            inner = getattr(value, "__wrapped__", None)
            if inspect.isfunction(value) and inspect.isfunction(inner) \
                    and value.__code__.co_name in ("inner", "maybe_fallback"):
                setattr(inner, "__dynamo_disable", inner)
                marked += 1
        inspect.unwrap(torch.optim.AdamW.step)
    except (AttributeError, ImportError, TypeError, ValueError):
        return False
    return marked > 0


def plain_step(optimizer):
    """optimizer.step without its graph-break wrapper (outside compilation it only turns
    gradients off); see skip_dynamo_imports."""
    import inspect

    import torch

    raw = inspect.unwrap(type(optimizer).step)

    def step() -> None:
        with torch.no_grad():
            raw(optimizer)

    return step


def set_attention_kernel(name: str) -> None:
    """Let scaled_dot_product_attention use only the `name`d CUDA kernel (auto: any), with the
    plain (math) one as the fallback. Every flag is set, so an earlier run's choice never lingers."""
    import torch

    for kernel, enable in (("flash", torch.backends.cuda.enable_flash_sdp),
                           ("cudnn", torch.backends.cuda.enable_cudnn_sdp),
                           ("efficient", torch.backends.cuda.enable_mem_efficient_sdp)):
        enable(name in ("auto", kernel))
    torch.backends.cuda.enable_math_sdp(True)


def setup_cuda(attention: str) -> None:
    """A CUDA run's global settings: TF32 matmuls, and the attention kernel asked for."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    set_attention_kernel(attention)


def training_autocast(device: str, dtype_name: str):
    """The autocast context of a training step: the run's dtype on CUDA, none on a CPU."""
    import torch

    from lmladder.neural import _autocast_dtype

    dtype = _autocast_dtype(dtype_name)
    if device.startswith("cuda") and dtype is not None:
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast("cpu", enabled=False)


def loss_function(model, config: TrainConfig):
    """(x, y) (B, T) -> the mean cross-entropy of `model`'s predictions of y from x (an MLP's
    first block_size - 1 positions, which lack a full context, left out). A GPT with a fused
    head (neural.fused_head) runs its blocks (compiled when the run compiles) and then
    lmladder.headloss, which writes the logits' gradient over the logits in the forward pass;
    otherwise the model and F.cross_entropy are compiled together, so the (B, T, V) logits are
    never written out in float32. A max-autotune mode times its candidate kernels in a
    subprocess, so one that crashes (CUDA illegal memory access, seen on an H100) is skipped."""
    import torch
    import torch.nn.functional as F

    r = config.run
    if r.compile and r.compile_mode.startswith("max-autotune"):
        import torch._inductor.config as inductor_config

        inductor_config.autotune_in_subproc = True
    compiled = (lambda fn: torch.compile(fn, **({} if r.compile_mode == "default" else {"mode": r.compile_mode}))) \
        if r.compile else (lambda fn: fn)
    weight = getattr(model, "module", model).lm_head.weight if config.model_kind == "gpt" else None
    if fused_head(config, weight.device.type if weight is not None else "cpu"):
        from lmladder.headloss import compute_dtype, head_cross_entropy, triton_usable

        def hidden(x):  # in the autocast dtype, as the head reads it (the cast fused into the layer norm)
            h = model(x, head=False)  # through DistributedDataParallel's forward when it wraps the GPT
            return h.to(compute_dtype(h))

        hidden = compiled(hidden)
        use_triton = triton_usable(weight.device)
        return lambda x, y: head_cross_entropy(hidden(x), weight, y, use_triton)

    skip = config.model.block_size - 1 if config.model_kind == "mlp" else 0

    def forward_loss(x, y):
        logits = model(x)
        return F.cross_entropy(logits[:, skip:].reshape(-1, logits.size(-1)).float(), y[:, skip:].reshape(-1))

    return compiled(forward_loss)


class WeightAverage:
    """An exponential moving average of the weights (Polyak averaging), which evaluation, best/
    and the final model use: after step t, avg += w_t (weights - avg), w_t = 1 - min(decay,
    (1 + t) / (10 + t)), so the early average soon forgets the random start. Kept in float32 on
    the model's device; `update` runs inside the training step (so inside its CUDA graph), with
    w_t in a device tensor that `set_step` fills before each step, as the learning rate."""

    def __init__(self, model, decay: float):
        import torch

        named = list(model.named_parameters())  # a tied weight once
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self.avg = [p.detach().float().clone() for p in self.params]
        self.decay = decay
        self.weight = torch.ones((), device=self.params[0].device)

    def set_step(self, step: int) -> None:
        self.weight.fill_(1.0 - min(self.decay, (1 + step) / (10 + step)))

    def update(self) -> None:
        import torch

        with torch.no_grad():
            delta = torch._foreach_sub([p.float() for p in self.params], self.avg)
            torch._foreach_mul_(delta, self.weight)
            torch._foreach_add_(self.avg, delta)

    @contextlib.contextmanager
    def applied(self):
        """The model holds the average inside the block, its own weights again after it."""
        import torch

        with torch.no_grad():
            own = [p.detach().clone() for p in self.params]
            for p, a in zip(self.params, self.avg):
                p.copy_(a)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, o in zip(self.params, own):
                    p.copy_(o)

    def state_dict(self) -> dict[str, Any]:
        return dict(zip(self.names, self.avg))

    def load(self, path: Path) -> None:
        import torch

        state = checkpoint.load_tensors(path)
        if sorted(state) != sorted(self.names):
            raise LadderError(f"{path} does not fit the model of its config; resume from another checkpoint")
        with torch.no_grad():
            for name, a in zip(self.names, self.avg):
                a.copy_(state[name])


def graph_capable(device: str) -> bool:
    return device.startswith("cuda")


class GraphedStep:
    """The whole training step (forward, backward of every micro-batch, clipping, AdamW)
    recorded once as a CUDA graph and replayed: one launch a step instead of a thousand, which
    is what bounds small models. Inputs go through a fixed buffer (`xy`); gradients live in the
    graph's memory. The warm-up steps that recording needs are undone, so the run is the one
    it would be without the graph. Off a GPU (the tests) the same warm-up and undo happen and
    each replay runs the step eagerly."""

    def __init__(self, step_fn, xy, model, optimizer, loss_acc, keep: list | None = None):
        import torch

        self.xy = xy
        cuda = xy.device.type == "cuda"
        params = list(model.parameters()) + list(keep or [])  # keep: more tensors the step writes
        saved_params = [p.detach().clone() for p in params]
        saved_state = {p: {k: v.clone() for k, v in st.items() if torch.is_tensor(v)}
                       for p, st in optimizer.state.items()}
        saved_loss = loss_acc.clone()
        try:
            stream = torch.cuda.Stream() if cuda else None
            if cuda:
                stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream) if cuda else contextlib.nullcontext():
                for _ in range(3):
                    optimizer.zero_grad(set_to_none=True)
                    step_fn(xy)
            optimizer.zero_grad(set_to_none=True)
            if cuda:
                torch.cuda.current_stream().wait_stream(stream)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    step_fn(xy)
                self.replay = graph.replay
            else:
                def replay() -> None:
                    optimizer.zero_grad(set_to_none=True)
                    step_fn(xy)
                self.replay = replay
        finally:
            with torch.no_grad():
                for p, old in zip(params, saved_params):
                    p.copy_(old)
                for p, st in optimizer.state.items():  # back to the state before the warm-up
                    before = saved_state.get(p, {})
                    for k, v in st.items():
                        if k in before:
                            v.copy_(before[k])
                        elif torch.is_tensor(v):  # created by the warm-up: a fresh state is zeros
                            v.zero_()
                loss_acc.copy_(saved_loss)

    def __call__(self, batch) -> None:
        self.xy.copy_(batch, non_blocking=True)
        self.replay()


def evaluate(model, ids: np.ndarray, config: TrainConfig, device: str) -> tuple[float, float]:
    """(total nats, tokens) of predicting ids[1:] over all of `ids`, in fixed windows."""
    from lmladder.neural import _autocast_dtype

    model.eval()
    window = config.seq_len if config.model_kind == "mlp" else config.model.block_size
    overlap = context_overlap("mlp", config.model.block_size) if config.model_kind == "mlp" else 0
    lp = window_logprobs(model, [np.asarray(ids)], window, overlap, config.run.eval_batch_size, device,
                         _autocast_dtype(config.run.dtype))[0]
    model.train()
    return float(-lp.sum()), int(lp.size)


class Stopper:
    """Remembers SIGINT/SIGTERM instead of dying, so the loop can save and stop."""

    def __init__(self):
        self.signal: int | None = None
        self.previous = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self.previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame):
        self.signal = signum

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        return False


def train(job: Job, dist: Dist | None = None) -> dict[str, Any]:
    import torch

    dist = dist or Dist()
    config, out, device = job.config, job.out, job.device
    o, r = config.optim, config.run
    cuda = device.startswith("cuda")
    torch.manual_seed(r.seed + dist.rank)
    if cuda:
        setup_cuda(r.attention)
    model = build_model(config).to(device)
    if fused_gelu(config, torch.device(device).type, dist.world):
        model.use_fused_mlp()
    # max-autotune's kernels inside the recorded step crashed the GPU (illegal memory access, H100, torch 2.11)
    use_graph = r.cuda_graph and dist.world == 1 and graph_capable(device) and r.compile_mode == "default"
    quiet = not r.compile and skip_dynamo_imports()
    optimizer = make_optimizer(model, o, device, capturable=use_graph and cuda)
    optimizer_step = plain_step(optimizer) if quiet else optimizer.step
    average = WeightAverage(model, o.ema) if o.ema > 0 else None
    step, tokens_seen, best_val, elapsed_before = 0, 0, math.inf, 0.0
    if job.resume is not None:
        checkpoint.load_weights(model, out / "latest" / "model.safetensors")
        checkpoint.load_optimizer(optimizer, out / "latest")
        adopt_optimizer_state(optimizer, device, capturable=use_graph and cuda)
        if average is not None:
            average.load(out / "latest" / "ema.safetensors")
        step, tokens_seen = job.resume["step"], job.resume["tokens"]
        best_val, elapsed_before = job.resume.get("best_val") or math.inf, job.resume.get("elapsed", 0.0)
        if dist.world == 1:
            checkpoint.set_rng_state(job.resume["rng"])
        else:
            torch.manual_seed(hash((r.seed, dist.rank, step)) % 2**31)
    raw = model
    if dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        model = DDP(model, device_ids=[dist.local_rank] if cuda else None)
    share = o.batch_size // dist.world
    micro = o.micro_batch_size or share
    accum = share // micro
    seq = config.seq_len
    autocast = training_autocast(device, r.dtype)
    flops_per_token = raw.flops_per_token()
    peak = peak_flops(device)
    tokens_per_step = o.batch_size * seq
    nparams = sum(p.numel() for p in raw.parameters())

    forward_loss = loss_function(model, config)

    def save_header(weights: str | None, status: str, extra: dict | None = None) -> None:
        write_json(out / MARKER, artifacts.header(
            "lmladder-model", kind=config.model_kind, unit=job.tokenizer.kind, corpus=job.corpus.identity(),
            split=job.split, tokenizer=job.tokenizer.identity(), config=config.to_dict(), parameters=nparams,
            weights=weights, status=status, step=step, best_val=None if math.isinf(best_val) else best_val,
            **(extra or {})))

    def state() -> dict[str, Any]:
        return {"config": config.to_dict(), "step": step, "tokens": tokens_seen, "data_position": step,
                "best_val": None if math.isinf(best_val) else best_val, "elapsed": elapsed_before + clock()}

    best_weights = "best/model.safetensors" if (out / "best").exists() else None
    final_weights = "latest/ema.safetensors" if average is not None else "latest/model.safetensors"
    evaluated = average.applied if average is not None else contextlib.nullcontext
    if dist.main:
        out.mkdir(parents=True, exist_ok=True)
        if job.resume is None:
            job.tokenizer.save(out / "tokenizer")
            write_json(out / "config.json", config.to_dict())
            (out / "metrics.jsonl").unlink(missing_ok=True)
        save_header(best_weights, "training")
        log(f"[bold]{config.model_kind}[/] {nparams / 1e6:.2f}M parameters on {device}"
            + (f" x{dist.world}" if dist.world > 1 else "") + f"; {tokens_per_step:,} tokens a step, "
            f"{accum} micro-step(s) of {micro}; config (also in {out / 'config.json'}):")
        for section in ("model", "optim", "data", "run"):
            log(f"  [{section}] " + " ".join(f"{k}={v}" for k, v in config.to_dict()[section].items()))
    metrics_file = open(out / "metrics.jsonl", "a", encoding="utf-8") if dist.main else None

    def record(row: dict) -> None:
        if metrics_file is not None:
            metrics_file.write(json.dumps(row) + "\n")
            metrics_file.flush()

    start = time.perf_counter()
    clock = lambda: time.perf_counter() - start  # noqa: E731

    def progress_frac() -> float:
        fracs = [0.0]
        if r.max_steps:
            fracs.append(step / r.max_steps)
        if r.max_tokens:
            fracs.append(tokens_seen / r.max_tokens)
        if r.time_budget:
            fracs.append((elapsed_before + clock()) / r.time_budget)
        return max(fracs)

    time_frac = progress_frac()

    def run_eval() -> dict[str, Any] | None:
        nonlocal best_val, best_weights
        if job.val_ids is None or len(job.val_ids) < 2:
            return None
        with evaluated():
            nats, n = evaluate(raw, job.val_ids, config, device)
            row = {"step": step, "time": clock(), "unix": time.time(), "val_loss": nats / n,
                   "val_bits_per_char": nats / math.log(2) / max(1, job.val_chars), "val_tokens": n}
            if dist.main and row["val_loss"] < best_val:
                best_val = row["val_loss"]
                checkpoint.save(out / "best", raw, None, state())
                best_weights = "best/model.safetensors"
        record(row)
        return row

    def save_latest(status: str) -> None:
        if dist.main:
            checkpoint.save(out / "latest", raw, optimizer, state(), average and average.state_dict())
            save_header(best_weights or final_weights, status)

    loss_acc = torch.zeros((), device=device)

    def train_step(batch) -> None:
        """Forward and backward of each micro-batch of `batch` (share, seq + 1), then AdamW."""
        for k in range(accum):
            xy = batch[k * micro : (k + 1) * micro]
            last = k == accum - 1
            sync = model.no_sync() if dist.world > 1 and not last else contextlib.nullcontext()
            with sync, autocast:
                loss = forward_loss(xy[:, :-1], xy[:, 1:])
            (loss / accum).backward()
            loss_acc.add_(loss.detach() / accum)
        if o.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(raw.parameters(), o.grad_clip, foreach=True if cuda else None)
        optimizer_step()
        if average is not None:
            average.update()

    graphed = None  # a GraphedStep, recorded at the first step
    last_log = (step, clock())
    last_val = None
    stop_reason = None
    model.train()
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    bar = Progress(TextColumn("[bold]train"), BarColumn(), TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                   TextColumn("ETA"), TimeRemainingColumn(), console=stderr, transient=True,
                   disable=not (dist.main and progress_enabled()))
    with Stopper() as stopper, bar:
        task = bar.add_task("train", total=1000, info="")
        while True:
            done = (r.max_steps and step >= r.max_steps) or (r.max_tokens and tokens_seen >= r.max_tokens) \
                or (r.time_budget and time_frac >= 1.0)
            if done:
                stop_reason = "finished"
                break
            lr = lr_at(o, time_frac if r.time_budget else progress_frac(), step)
            for group in optimizer.param_groups:
                if torch.is_tensor(group["lr"]):
                    group["lr"].fill_(lr)
                else:
                    group["lr"] = lr
            if average is not None:
                average.set_step(step)
            windows = batch_windows(job.train_ids, r.seed, step, o.batch_size, seq)
            mine = torch.from_numpy(windows[dist.rank * share : (dist.rank + 1) * share])
            if cuda:
                mine = mine.pin_memory()
            if use_graph and graphed is None:
                try:
                    graphed = GraphedStep(train_step, mine.to(device), raw, optimizer, loss_acc,
                                          average.avg if average is not None else None)
                except Exception as exc:  # noqa: BLE001 - any failure to record: train without the graph
                    use_graph = False
                    optimizer.zero_grad(set_to_none=True)
                    log(f"[yellow]the training step could not be recorded as a CUDA graph ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:120]}); training without it[/]")
            if graphed is not None:
                graphed(mine)
            else:
                train_step(mine.to(device, non_blocking=True) if cuda else mine)
                optimizer.zero_grad(set_to_none=True)
            step += 1
            tokens_seen += tokens_per_step
            at_log = step % r.log_interval == 0 or (r.max_steps and step >= r.max_steps)
            if dist.world == 1:
                time_frac = progress_frac()
            elif at_log:  # every process must use the same learning rate: rank 0's clock decides
                t = torch.tensor([progress_frac(), float(stopper.signal or 0)], device=device)
                torch.distributed.broadcast(t, 0)
                time_frac = float(t[0])
                stopper.signal = int(t[1]) or stopper.signal
            if at_log:
                steps = step - last_log[0]
                train_loss = float(loss_acc) / steps
                loss_acc.zero_()
                if not math.isfinite(train_loss):
                    if dist.main:
                        save_header(best_weights or (final_weights if (out / "latest").exists() else None),
                                    "diverged")
                    raise TrainingDiverged(
                        f"the training loss became {train_loss} at step {step} (lr {lr:.3g}); stopped. The last good "
                        f"checkpoint is in {out / 'latest'}: lower --lr or raise --warmup-steps and --resume, or start again")
                now = clock()
                tps = steps * tokens_per_step / max(1e-9, now - last_log[1])
                mfu = tps * flops_per_token / peak if peak else None
                mem = torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None
                record({"step": step, "time": now, "unix": time.time(), "lr": lr, "train_loss": train_loss,
                        "tokens": tokens_seen, "tokens_per_s": tps, "mfu": mfu, "memory_gb": mem})
                last_log = (step, clock())
                info = f"step {step} loss {train_loss:.4f} {tps / 1e3:,.0f}k tok/s" + (f" MFU {mfu:.0%}" if mfu else "")
                if last_val:
                    info += f" val {last_val['val_loss']:.4f}"
                bar.update(task, completed=int(1000 * min(1.0, progress_frac())), info=info)
            if r.eval_interval and step % r.eval_interval == 0:
                last_val = run_eval() or last_val
            if r.checkpoint_interval and step % r.checkpoint_interval == 0:
                save_latest("training")
            if stopper.signal is not None and (dist.world == 1 or at_log):
                stop_reason = signal.Signals(stopper.signal).name
                break
    if stop_reason == "finished" and not (r.eval_interval and step % r.eval_interval == 0 and last_val):
        last_val = run_eval() or last_val
    save_latest("interrupted" if stop_reason != "finished" else "trained")
    if metrics_file is not None:
        metrics_file.close()
    result = {"out": str(out), "model": config.model_kind, "steps": step, "tokens": tokens_seen,
              "seconds": clock(), "parameters": nparams, "stopped": stop_reason,
              "val_loss": last_val["val_loss"] if last_val else None,
              "val_bits_per_char": last_val["val_bits_per_char"] if last_val else None,
              "best_val_loss": None if math.isinf(best_val) else best_val}
    if stop_reason != "finished":
        if dist.main:
            log(f"stopped by {stop_reason} at step {step}; checkpoint saved in {out / 'latest'}; "
                f"continue with --resume {out}")
        return result
    if dist.main and any(job.test_docs):
        from lmladder import metrics
        from lmladder.neural import load as load_rung

        rung = load_rung(out, artifacts.read_header(out, "lmladder-model"))
        scores = metrics.evaluate(rung, job.test_docs)
        result["test"] = scores.to_dict()
        save_header(best_weights or final_weights, "trained", {"test": scores.to_dict()})
    return result
