"""One training step's mechanics: the batch it draws, the precision it runs in, its loss, its
micro-batches, and its recording as a CUDA graph.

- Data: optimizer step k draws `batch_size` random windows from a generator seeded by (seed, k);
  process r of W takes the r-th W-th of them, in micro-batches. So the global batch does not
  depend on W, and resuming at step k needs only k.
- Mixed precision: bf16 autocast and TF32 matmuls on CUDA; float32 on the CPU.
- Gradient accumulation: gradients are all-reduced only on the last micro-step of a step.
- One GPU: the whole step (every micro-batch's forward and backward, clipping, AdamW) is recorded
  once as a CUDA graph and replayed (GraphedStep); a small model's eager step is bound by the
  host launching its kernels.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

import numpy as np

from lmladder.config import RunConfig, TrainConfig
from lmladder.console import log
from lmladder.kernels import fp8_head, fused_head
from lmladder.tokensplit import dropout_at
from lmladder.train.optim import set_learning_rate


def batch_windows(ids: np.ndarray, seed: int, step: int, batch: int, seq_len: int,
                  parents: tuple[np.ndarray, np.ndarray] | None = None, token_dropout: float = 0.0) -> np.ndarray:
    """The `batch` windows of seq_len + 1 ids of optimizer step `step` (int64, (batch, seq_len + 1)),
    their tokens split by lmladder.tokensplit where token_dropout > 0 (parents: its merge table)."""
    starts = np.random.default_rng([seed, step]).integers(0, len(ids) - seq_len, size=batch)
    windows = np.asarray(ids[starts[:, None] + np.arange(seq_len + 1)], dtype=np.int64)
    if token_dropout > 0 and parents is not None:
        from lmladder.tokensplit import split_windows

        windows = split_windows(windows, parents, token_dropout, np.random.default_rng([seed, step, 1]))
    return windows


def draw_batch(ids: np.ndarray, step: int, config: TrainConfig, rank: int, world: int, device: str,
               parents: tuple[np.ndarray, np.ndarray] | None = None):
    """This process's share of step `step`'s batch: a CPU tensor (share, seq_len + 1), pinned
    for the copy to a GPU."""
    import torch

    share = config.optim.batch_size // world
    windows = batch_windows(ids, config.run.seed, step, config.optim.batch_size, config.seq_len, parents,
                            dropout_at(config.data, step))
    mine = torch.from_numpy(windows[rank * share : (rank + 1) * share])
    return mine.pin_memory() if device.startswith("cuda") else mine


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
    head (lmladder.kernels.fused_head) runs its blocks (compiled when the run compiles) and then
    lmladder.kernels.headloss, which writes the logits' gradient over the logits in the forward
    pass; otherwise the model and F.cross_entropy are compiled together, so the (B, T, V) logits
    are never written out in float32. A max-autotune mode times its candidate kernels in a
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
        from lmladder.kernels.headloss import head_cross_entropy, triton_usable
        from lmladder.precision import compute_dtype

        use_triton, fp8 = triton_usable(weight.device), fp8_head(config)

        def hidden(x):  # in the autocast dtype, as the head reads it (the cast fused into the layer norm)
            h = model(x, head=False)  # through DistributedDataParallel's forward when it wraps the GPT
            h = h.to(compute_dtype(h))
            if fp8:  # and the FP8 head's e4m3 copy of it, made by the compiled kernels
                from lmladder.kernels.fp8 import E4M3, quantize

                return h, quantize(h.detach(), E4M3)
            return h, None

        hidden = compiled(hidden)

        def loss(x, y):
            h, quantized = hidden(x)
            return head_cross_entropy(h, weight, y, use_triton, fp8, quantized)

        return loss

    skip = config.model.block_size - 1 if config.model_kind == "mlp" else 0

    def forward_loss(x, y):
        logits = model(x)
        return F.cross_entropy(logits[:, skip:].reshape(-1, logits.size(-1)).float(), y[:, skip:].reshape(-1))

    return compiled(forward_loss)


def graph_capable(device: str) -> bool:
    return device.startswith("cuda")


def use_cuda_graph(r: RunConfig, device: str, world: int) -> bool:
    """Whether the step is recorded as a CUDA graph: asked for, one process, a GPU, and not
    max-autotune, whose kernels inside the recorded step crashed the GPU (illegal memory access,
    H100, torch 2.11)."""
    return r.cuda_graph and world == 1 and graph_capable(device) and r.compile_mode == "default"


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


class TrainStep:
    """One optimizer step on this process's share of a batch: the forward and backward of each
    micro-batch (under DistributedDataParallel when there are several processes, all-reducing
    on the last), gradient clipping, AdamW, the weight average. Recorded as a CUDA graph at the
    first call when `graphed` (trained eagerly instead if recording fails). The training loss
    is summed on the device, so nothing waits for the GPU until `mean_loss` is read."""

    def __init__(self, model, optimizer, optimizer_step, average, config: TrainConfig, device: str, dist,
                 graphed: bool, noise_vocab: int = 0):
        import torch

        self.raw = model
        if dist.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            model = DDP(model, device_ids=[dist.local_rank] if device.startswith("cuda") else None)
        self.model = model
        self.world = dist.world
        self.optimizer, self.optimizer_step, self.average = optimizer, optimizer_step, average
        self.forward_loss = loss_function(model, config)
        self.autocast = training_autocast(device, config.run.dtype)
        o = config.optim
        share = o.batch_size // dist.world
        self.micro = o.micro_batch_size or share
        self.accum = share // self.micro
        self.grad_clip = o.grad_clip
        self.device, self.cuda = device, device.startswith("cuda")
        self.graphed, self.graph = graphed, None  # the GraphedStep, recorded at the first call
        # --input-noise: inputs replaced by ids drawn from [0, noise_vocab) (the tokenizer's, not the padding)
        self.noise, self.noise_vocab = config.data.input_noise, noise_vocab or config.model.vocab_size
        self.loss_sum = torch.zeros((), device=device)
        self.steps = 0  # taken since mean_loss was last read
        self.model.train()

    def __call__(self, batch, lr: float, step: int) -> None:
        """Train on `batch` (this process's share, on the CPU) as optimizer step `step`, at `lr`."""
        set_learning_rate(self.optimizer, lr)
        if self.average is not None:
            self.average.set_step(step)
        if self.graphed and self.graph is None:
            self.graph = self.record(batch.to(self.device))
        if self.graph is not None:
            self.graph(batch)
        else:
            self.compute(batch.to(self.device, non_blocking=True) if self.cuda else batch)
            self.optimizer.zero_grad(set_to_none=True)
        self.steps += 1

    def compute(self, batch) -> None:
        """Forward and backward of each micro-batch of `batch` (share, seq + 1), then AdamW."""
        import torch

        for k in range(self.accum):
            xy = batch[k * self.micro : (k + 1) * self.micro]
            last = k == self.accum - 1
            sync = self.model.no_sync() if self.world > 1 and not last else contextlib.nullcontext()
            x = xy[:, :-1]
            if self.noise > 0:
                noise = torch.randint_like(x, self.noise_vocab)
                x = torch.where(torch.rand(x.shape, device=x.device) < self.noise, noise, x)
            with sync, self.autocast:
                loss = self.forward_loss(x, xy[:, 1:])
            (loss / self.accum).backward()
            self.loss_sum.add_(loss.detach() / self.accum)
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.raw.parameters(), self.grad_clip, foreach=True if self.cuda else None)
        self.optimizer_step()
        if self.average is not None:
            self.average.update()

    def record(self, xy) -> GraphedStep | None:
        """The step recorded as a CUDA graph on the first batch `xy` (on the device); None, and
        eager steps from now on, when it cannot be."""
        try:
            return GraphedStep(self.compute, xy, self.raw, self.optimizer, self.loss_sum,
                               self.average.avg if self.average is not None else None)
        except Exception as exc:  # noqa: BLE001 - any failure to record: train without the graph
            self.graphed = False
            self.optimizer.zero_grad(set_to_none=True)
            log(f"[yellow]the training step could not be recorded as a CUDA graph ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:120]}); training without it[/]")
            return None

    def mean_loss(self) -> float:
        """The mean training loss of the steps since the last call (waits for the device)."""
        loss = float(self.loss_sum) / self.steps
        self.loss_sum.zero_()
        self.steps = 0
        return loss


class Aborted(KeyboardInterrupt):
    """A second SIGINT/SIGTERM (`signum`) while the run was finishing its step to stop."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Stopper:
    """Remembers the first SIGINT/SIGTERM instead of dying, so the loop can finish its step,
    save and stop; a second one aborts at once (Aborted, a KeyboardInterrupt, so that no
    `except Exception` swallows it), leaving the last checkpoint as it was. `announce`: say so
    on stderr at the first."""

    def __init__(self, announce: bool = True):
        self.signal: int | None = None
        self.announce = announce
        self.previous = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self.previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame):
        if self.signal is not None:
            raise Aborted(signum)
        self.signal = signum
        if self.announce:
            _say(f"\n{signal.Signals(signum).name}: stopping after this step and saving latest/ "
                 "(again to abort at once, without saving)\n")

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        return False


def _say(text: str) -> None:
    """Write to stderr from a signal handler: straight to the file descriptor, since the handler
    may have interrupted a write to sys.stderr, whose buffer is not reentrant."""
    try:
        os.write(sys.stderr.fileno(), text.encode())
    except (OSError, ValueError):  # no file descriptor (a test's captured stream): say nothing
        pass
