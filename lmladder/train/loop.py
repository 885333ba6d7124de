"""train(): the loop, read top to bottom.

Set-up: seed, build the model (its MLPs through lmladder.kernels.fusedmlp where
lmladder.kernels.fused_gelu says so), AdamW, the weight average, and a resumed run's weights,
optimizer, average and random state. Then each step:

    draw the batch    step.draw_batch: a function of (seed, step), so of no process count
    take the step     step.TrainStep: each micro-batch's forward and backward, clip, AdamW
    log               every log_interval steps: train loss, tokens/s, MFU -> metrics.jsonl
    evaluate          every eval_interval steps: all of val; best/ when it improves
    checkpoint        latest/ every checkpoint_interval steps and every checkpoint_seconds (the
                      first at the first evaluation or after a minute)
    stop?             at max_steps, max_tokens or time_budget, after `patience` passes over val
                      without a better one, or on SIGINT/SIGTERM

At the end: val (unless just done), latest/, and the kept model scored on test.

- Evaluation: a deterministic pass over all of val in fixed windows (lmladder.neural), in nats
  per token and bits per character (lmladder.metrics.bits_per_char); the final model is scored
  on test through lmladder.metrics.
- SIGINT/SIGTERM save latest/ and stop after the step; a second one aborts at once. A loss or
  weights that are not finite stop the run with an error, leaving the last checkpoint (never
  one of weights that are not finite); a new run that fails before its first checkpoint leaves
  no --out folder behind (discard_unsaved).
- CPU threads: RunConfig.threads (plan.cpu_threads), for the whole of train() (0: torch's own).
"""

from __future__ import annotations

import contextlib
import math
import shutil
import signal
import time
from typing import Any

import numpy as np

from lmladder import artifacts, canonical, checkpoint, metrics, runtime
from lmladder.config import RunConfig, TrainConfig
from lmladder.console import log, progress_style
from lmladder.errors import Interrupted, LadderError
from lmladder.kernels import fused_gelu
from lmladder.neural import build_model, context_overlap, window_logprobs
from lmladder.train.optim import WeightAverage, adopt_optimizer_state, lr_at, training_optimizer
from lmladder.train.plan import Dist, Job, cpu_threads, peak_flops
from lmladder.train.records import Checkpointer, MetricsLog, RunState, TrainingLog, saved_step
from lmladder.train.step import Stopper, TrainStep, draw_batch, setup_cuda, use_cuda_graph


def start_from(model, state: dict[str, Any]) -> None:
    """--init-from: the model's weights from a trained GPT's state (the head is tied to the
    token embedding, so a state without lm_head.weight is whole)."""
    import torch

    with torch.no_grad():
        missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        raise LadderError(f"--init-from: the weights do not fit the model (missing {missing[:3]}, unexpected "
                          f"{unexpected[:3]}); start from a GPT of the same architecture")


def train(job: Job, dist: Dist | None = None) -> dict[str, Any]:
    """Train the job's model until one of its limits (or a signal) stops it, checkpointing as it
    goes; returns the run's summary (steps, tokens, seconds, val and best val loss, why it
    stopped, and the test scores of a finished run). A second SIGINT/SIGTERM while it stops
    (or a Ctrl-C outside the loop) is an Interrupted error (exit 130 or 143) that says where
    the last checkpoint is."""
    dist = dist or Dist()
    with cpu_threads(job.config.run.threads):
        try:
            return _train(job, dist)
        except KeyboardInterrupt as exc:
            name = signal.Signals(getattr(exc, "signum", signal.SIGINT)).name
            saved = saved_step(job.out)
            where = (f"the last checkpoint, of step {saved:,}, is in {job.out / 'latest'}: continue it with "
                     f"--resume {job.out}" if saved is not None else "no checkpoint was saved")
            raise Interrupted(f"interrupted by {name}, at once and without saving; {where}", name) from None
        except Exception:
            if dist.main:
                discard_unsaved(job)
            raise


FRESH_FILES = frozenset({"config.json", "lmladder.json", "metrics.jsonl", "tokenizer"})  # Checkpointer.begin's


def discard_unsaved(job: Job) -> None:
    """A new run that failed (an error, not a signal) before it saved any weights leaves --out as
    it found it (Job.out_before): the folder it made is removed, an empty one emptied. A folder
    that held anything before, or holds anything but what the run's start wrote (latest/, best/,
    a file being written), is left as it is."""
    out = job.out
    if job.out_before == "full" or not out.is_dir():
        return
    entries = list(out.iterdir())
    if any(entry.name not in FRESH_FILES for entry in entries):
        return
    if job.out_before == "absent":
        shutil.rmtree(out, ignore_errors=True)
        return
    for entry in entries:
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _train(job: Job, dist: Dist) -> dict[str, Any]:
    import torch

    config, device = job.config, job.device
    o, r = config.optim, config.run

    # --- set-up: the model, its optimizer, and where a resumed run left off
    torch.manual_seed(r.seed + dist.rank)
    if device.startswith("cuda"):
        setup_cuda(r.attention)
    with torch.device(device):  # built where it trains: a GPU initialises the weights in ~ms
        model = build_model(config).to(device)
    runtime.mark("model")
    if job.init_weights is not None:
        start_from(model, job.init_weights)
    if fused_gelu(config, torch.device(device).type, dist.world):
        from lmladder.kernels.fusedmlp import fused_mlp

        model.use_fused_mlp(fused_mlp)
    if r.fp8:
        from lmladder.kernels.fp8 import fp8_linear

        model.use_fp8(fp8_linear)
    renormalise = canonical.for_run(config, job.tokenizer, device)  # val as the run will be scored
    graphed = use_cuda_graph(r, device, dist.world)
    capturable = graphed and device.startswith("cuda")  # AdamW's learning rate a device tensor the graph reads
    optimizer, optimizer_step = training_optimizer(model, config, device, capturable)
    average = WeightAverage(model, o.ema) if o.ema > 0 else None
    run = RunState()
    if job.resume is not None:
        run = restore_latest(job, model, optimizer, average, capturable, dist)
    trainer = TrainStep(model, optimizer, optimizer_step, average, config, device, dist, graphed,
                        noise_vocab=job.tokenizer.vocab_size)
    parameters = sum(p.numel() for p in model.parameters())
    tokens_per_step = o.batch_size * config.seq_len
    checkpoints = Checkpointer(job, model, optimizer, average, parameters, dist.main)
    checkpoints.begin(run, tokens_per_step, trainer.micro, trainer.accum, dist.world)
    metrics_log = MetricsLog(job.out / "metrics.jsonl" if dist.main else None)
    runtime.mark("ready")
    run.start_clock()
    startup = runtime.startup(through="data")  # a `lmladder train` process: seconds from its start to each stage
    run.progress = run.fraction_done(r)
    training_log = TrainingLog(metrics_log, run, r, tokens_per_step, model.flops_per_token(), peak_flops(device),
                               device, style=progress_style() if dist.main else "none")

    # --- the loop
    stopped, lr = "finished", lr_at(o, run.schedule_fraction(r), run.step)
    with Stopper(announce=dist.main) as stopper, training_log:
        if startup:  # written once SIGINT is the Stopper's: a row in metrics.jsonl means Ctrl-C saves
            metrics_log.write({"step": run.step, "startup": startup})
        while not run.finished(r):
            lr = lr_at(o, run.schedule_fraction(r), run.step)
            batch = draw_batch(job.train_ids, run.step, config, dist.rank, dist.world, device, job.parents)
            trainer(batch, lr, run.step)
            run.advance(tokens_per_step)
            at_log = run.step % r.log_interval == 0 or bool(r.max_steps and run.step >= r.max_steps)
            agree(run, r, stopper, dist, device, at_log)
            if at_log:
                train_loss = trainer.mean_loss()
                if not math.isfinite(train_loss):
                    raise checkpoints.diverged(run, f"the training loss became {train_loss}", lr)
                training_log.write(run, lr, train_loss)
            evaluated = bool(r.eval_interval and run.step % r.eval_interval == 0)
            if evaluated:
                validate(model, job, run, average, checkpoints, metrics_log, renormalise)
                if r.patience and out_of_patience(run, r, dist, device):
                    stopped = "patience"
                    break
            if checkpoints.due(run, evaluated):
                checkpoints.save_latest(run, "training", lr)
            if stopper.signal is not None and (dist.world == 1 or at_log):
                stopped = signal.Signals(stopper.signal).name
                break

    # --- the end: val, latest/, and a finished run's test scores
    done = stopped in ("finished", "patience")
    if done and not (r.eval_interval and run.step % r.eval_interval == 0 and run.last_val):
        validate(model, job, run, average, checkpoints, metrics_log, renormalise)
    checkpoints.save_latest(run, "trained" if done else "interrupted", lr)
    metrics_log.close()
    result = summary(job, run, parameters, stopped)
    result["startup"] = startup
    if stopped == "patience" and dist.main:
        log(f"stopped at step {run.step:,}: {run.stale} passes over val without a better one than "
            f"{run.best_val:.4f} (--patience {r.patience}); best/ holds its weights")
    if not done:
        if dist.main:
            log(f"stopped by {stopped} at step {run.step}; checkpoint saved in {job.out / 'latest'}; "
                f"continue with --resume {job.out}")
        return result
    if dist.main and any(job.test_docs):
        result["test"] = test_scores(job)
        checkpoints.mark_trained(run, result["test"])
    return result


def restore_latest(job: Job, model, optimizer, average, capturable: bool, dist: Dist) -> RunState:
    """Load latest/ (weights, AdamW state made this run's, the weight average) and the random
    state: one process's exactly; several processes are reseeded from (seed, rank, step)."""
    import torch

    latest = job.out / "latest"
    checkpoint.load_weights(model, latest / "model.safetensors")
    checkpoint.load_optimizer(optimizer, latest)
    adopt_optimizer_state(optimizer, job.device, capturable=capturable, o=job.config.optim)
    if average is not None:
        average.load(latest / "ema.safetensors")
    run = RunState.resumed(job.resume)
    if dist.world == 1:
        checkpoint.set_rng_state(job.resume["rng"])
    else:
        torch.manual_seed(hash((job.config.run.seed, dist.rank, run.step)) % 2**31)
    return run


def agree(run: RunState, r: RunConfig, stopper: Stopper, dist: Dist, device: str, at_log: bool) -> None:
    """Every process must use the same learning rate and stop together: one process reads its
    own clock each step; several take rank 0's clock, and any signal it caught, at each log step."""
    import torch

    if dist.world == 1:
        run.progress = run.fraction_done(r)
    elif at_log:
        t = torch.tensor([run.fraction_done(r), float(stopper.signal or 0)], device=device)
        torch.distributed.broadcast(t, 0)
        run.progress = float(t[0])
        stopper.signal = int(t[1]) or stopper.signal


def out_of_patience(run: RunState, r: RunConfig, dist: Dist, device: str) -> bool:
    """Whether `patience` passes over val in a row have not bettered the best (rank 0 keeps the
    count, RunState.stale, and every process takes its answer)."""
    stop = run.stale >= r.patience
    if dist.world > 1:
        import torch

        t = torch.tensor([float(stop)], device=device)
        torch.distributed.broadcast(t, 0)
        stop = bool(t[0])
    return stop


def validation_nats(model, ids: np.ndarray, config: TrainConfig, device: str, renormalise=None) -> tuple[float, int]:
    """(total nats, tokens) of predicting ids[1:] over all of `ids`, in fixed windows (renormalised
    by lmladder.canonical where the run is canonical)."""
    from lmladder.neural import _autocast_dtype

    model.eval()
    window = config.seq_len if config.model_kind == "mlp" else config.model.block_size
    overlap = context_overlap("mlp", config.model.block_size) if config.model_kind == "mlp" else 0
    lp = window_logprobs(model, [np.asarray(ids)], window, overlap, config.run.eval_batch_size, device,
                         _autocast_dtype(config.run.dtype), canonical=renormalise)[0]
    model.train()
    return float(-lp.sum()), int(lp.size)


def validate(model, job: Job, run: RunState, average: WeightAverage | None, checkpoints: Checkpointer,
             metrics_log: MetricsLog, renormalise=None) -> None:
    """A full pass over val with the weights the run keeps (the average's, when it keeps one):
    a metrics row, run.last_val, and best/ when it is the best yet. Nothing without val."""
    if job.val_ids is None or len(job.val_ids) < 2:
        return
    with average.applied() if average is not None else contextlib.nullcontext():
        nats, tokens = validation_nats(model, job.val_ids, job.config, job.device, renormalise)
        row = {"step": run.step, "time": run.clock(), "unix": time.time(), "val_loss": nats / tokens,
               "val_bits_per_char": metrics.bits_per_char(nats, max(1, job.val_chars)), "val_tokens": tokens}
        checkpoints.save_if_best(run, row["val_loss"])
    metrics_log.write(row)
    run.last_val = row


def test_scores(job: Job) -> dict[str, Any]:
    """The kept model, loaded back from the folder as any user would, scored on test."""
    from lmladder.neural import load as load_rung

    rung = load_rung(job.out, artifacts.read_header(job.out, "lmladder-model"))
    return metrics.evaluate(rung, job.test_docs).to_dict()


def summary(job: Job, run: RunState, parameters: int, stopped: str) -> dict[str, Any]:
    """What train() returns (and `lmladder train --json` prints)."""
    last = run.last_val or {}
    return {"out": str(job.out), "model": job.config.model_kind, "steps": run.step, "tokens": run.tokens,
            "seconds": run.clock(), "parameters": parameters,
            # a run out of patience finished by its own rule: its consumers treat it as finished
            "stopped": "finished" if stopped == "patience" else stopped, "out_of_patience": stopped == "patience",
            "val_loss": last.get("val_loss"), "val_bits_per_char": last.get("val_bits_per_char"),
            "best_val_loss": run.best_or_none()}
