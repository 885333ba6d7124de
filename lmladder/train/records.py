"""What a run keeps as it goes: where it stands (RunState), its metrics (metrics.jsonl, and the
progress bar or plain progress lines), and its folder (Checkpointer).

Checkpoints (lmladder.checkpoint): latest/ every checkpoint_interval steps, every
checkpoint_seconds (the first at the first evaluation or after a minute, whichever is sooner)
and at the end, and never of weights that are not finite; best/ whenever val improves. The
folder's header (lmladder.json) names the weights to load as soon as any are saved (best/'s,
else latest/'s: the moving average's when the run keeps one) and the run's status (training,
trained, interrupted, diverged). Only the main process writes.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from rich.markup import escape

from lmladder import artifacts, checkpoint
from lmladder.atomic import MARKER, write_json, write_text
from lmladder.config import RunConfig
from lmladder.console import log, stderr
from lmladder.errors import LadderError

FIRST_CHECKPOINT_SECONDS = 60.0  # a run killed after its first minute leaves a checkpoint
PROGRESS_LINE_SECONDS = 5.0  # plain progress lines (stderr not a terminal): at most one this often


class TrainingDiverged(LadderError):
    exit_code = 1


def saved_step(out: Path) -> int | None:
    """The step of the run's latest/ checkpoint, None when it has none."""
    try:
        return int(json.loads((out / "latest" / MARKER).read_text(encoding="utf-8"))["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclass
class RunState:
    """Where a run stands: steps and tokens trained, the best val loss, and its time (seconds
    trained by the runs it resumes, plus this process's clock). `progress` is the fraction of
    the run done that every process agrees on (see loop.agree)."""

    step: int = 0
    tokens: int = 0
    best_val: float = math.inf
    stale: int = 0  # passes over val since the best one (RunConfig.patience)
    elapsed_before: float = 0.0
    progress: float = 0.0
    last_val: dict[str, Any] | None = None  # the latest val row
    started: float = field(default_factory=time.perf_counter)

    @classmethod
    def resumed(cls, saved: dict[str, Any]) -> "RunState":
        """The state latest/ saved (RunState.saved)."""
        return cls(step=saved["step"], tokens=saved["tokens"], best_val=saved.get("best_val") or math.inf,
                   stale=saved.get("stale", 0), elapsed_before=saved.get("elapsed", 0.0))

    def start_clock(self) -> None:
        """Training time counts from here (not the set-up's)."""
        self.started = time.perf_counter()

    def advance(self, tokens: int) -> None:
        """One optimizer step, of `tokens` tokens over all processes, done."""
        self.step += 1
        self.tokens += tokens

    def clock(self) -> float:
        """Seconds this process has trained."""
        return time.perf_counter() - self.started

    def fraction_done(self, r: RunConfig) -> float:
        """How far through its limits (steps, tokens, seconds) the run is, by this process's clock."""
        fracs = [0.0]
        if r.max_steps:
            fracs.append(self.step / r.max_steps)
        if r.max_tokens:
            fracs.append(self.tokens / r.max_tokens)
        if r.time_budget:
            fracs.append((self.elapsed_before + self.clock()) / r.time_budget)
        return max(fracs)

    def schedule_fraction(self, r: RunConfig) -> float:
        """The fraction the learning rate follows: of steps or tokens, the same in every process;
        under a time budget, the agreed one (each process's clock differs)."""
        return self.progress if r.time_budget else self.fraction_done(r)

    def finished(self, r: RunConfig) -> bool:
        return bool((r.max_steps and self.step >= r.max_steps) or (r.max_tokens and self.tokens >= r.max_tokens)
                    or (r.time_budget and self.progress >= 1.0))

    def best_or_none(self) -> float | None:
        return None if math.isinf(self.best_val) else self.best_val

    def saved(self, config) -> dict[str, Any]:
        """The state a checkpoint holds (the data position is the step: see step.batch_windows)."""
        return {"config": config.to_dict(), "step": self.step, "tokens": self.tokens, "data_position": self.step,
                "best_val": self.best_or_none(), "stale": self.stale, "elapsed": self.elapsed_before + self.clock()}


class MetricsLog:
    """metrics.jsonl: one JSON row a line (training rows every log_interval steps, val rows at
    each evaluation), flushed as written; None as the path (a process other than the main one)
    writes nothing."""

    def __init__(self, path: Path | None):
        self.file = open(path, "a", encoding="utf-8") if path is not None else None

    @staticmethod
    def keep_through(path: Path, step: int) -> None:
        """Drop the rows of steps after `step` (and a line cut short or damaged: not a JSON
        object, its step not a number): a resumed run continues from its checkpoint of that
        step and writes those rows again."""
        if not path.is_file():
            return
        kept = []
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            at = row.get("step", 0) if isinstance(row, dict) else None
            if isinstance(at, (int, float)) and not isinstance(at, bool) and at <= step:
                kept.append(line + "\n")
        write_text(path, "".join(kept))

    def write(self, row: dict[str, Any]) -> None:
        if self.file is not None:
            self.file.write(json.dumps(row) + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


class TrainingLog:
    """Every log_interval steps: a metrics row (train loss, learning rate, tokens/s, MFU, peak GPU
    memory since the previous row) and the progress: `style` (console.progress_style) "bar" for
    the bar on a terminal, "lines" for a plain line (where stderr is a file or a pipe) at the
    first log step, then at most every PROGRESS_LINE_SECONDS, and at the last step, or "none"
    (LMLADDER_NO_PROGRESS=1, or a process other than the main one)."""

    def __init__(self, metrics: MetricsLog, run: RunState, r: RunConfig, tokens_per_step: int,
                 flops_per_token: float, peak: float | None, device: str, style: str):
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.metrics, self.r = metrics, r
        self.tokens_per_step, self.flops_per_token, self.peak = tokens_per_step, flops_per_token, peak
        self.device = device
        self.last = (run.step, run.clock())  # the step and time of the previous row
        self.lines = style == "lines"
        self.line_at: float | None = None  # when the last plain line was printed
        self.start = run.fraction_done(r)  # where this process began (a resumed run is part done)
        self.bar = Progress(TextColumn("[bold]train"), BarColumn(), TextColumn("{task.fields[info]}"),
                            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=stderr,
                            transient=True, disable=style != "bar")
        self.task = self.bar.add_task("train", total=1000, info="")

    def __enter__(self) -> "TrainingLog":
        self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)

    def write(self, run: RunState, lr: float, train_loss: float) -> None:
        import torch

        now = run.clock()
        tps = (run.step - self.last[0]) * self.tokens_per_step / max(1e-9, now - self.last[1])
        mfu = tps * self.flops_per_token / self.peak if self.peak else None
        mem = torch.cuda.max_memory_allocated(self.device) / 2**30 if self.device.startswith("cuda") else None
        self.metrics.write({"step": run.step, "time": now, "unix": time.time(), "lr": lr, "train_loss": train_loss,
                            "tokens": run.tokens, "tokens_per_s": tps, "mfu": mfu, "memory_gb": mem})
        self.last = (run.step, run.clock())
        info = f"step {run.step} loss {train_loss:.4f} {tps / 1e3:,.0f}k tok/s" + (f" MFU {mfu:.0%}" if mfu else "")
        if run.last_val:
            info += f" val {run.last_val['val_loss']:.4f}"
        done = min(1.0, run.fraction_done(self.r))
        self.bar.update(self.task, completed=int(1000 * done), info=info)
        if self.lines and (self.line_at is None or now - self.line_at >= PROGRESS_LINE_SECONDS or done >= 1.0):
            self.line_at = now
            self.print_line(run, train_loss, tps, mfu, done, now)

    def print_line(self, run: RunState, train_loss: float, tps: float, mfu: float | None, done: float,
                   now: float) -> None:
        """step 200/400 loss 1.9312 val 2.0105 12.3k tok/s eta 0:00:31"""
        r = self.r
        line = f"step {run.step:,}" + (f"/{r.max_steps:,}" if r.max_steps else f" ({done:.0%})")
        line += f" loss {train_loss:.4f}"
        if run.last_val:
            line += f" val {run.last_val['val_loss']:.4f}"
        line += f" {tps / 1e3:,.1f}k tok/s" + (f" MFU {mfu:.0%}" if mfu else "")
        if done > self.start:
            line += f" eta {eta_text(now * (1.0 - done) / (done - self.start))}"
        stderr.print(line, markup=False, highlight=False)


def eta_text(seconds: float) -> str:
    """0:00:31, 3 days, 4:05:06; past what a timedelta holds (or not finite) "over 1,000 years"."""
    if not seconds < 1000 * 365.25 * 86400:  # also NaN
        return "over 1,000 years"
    return str(timedelta(seconds=round(seconds)))


class Checkpointer:
    """The run's folder: its header, latest/ (weights, AdamW, the weight average, RunState) and
    best/ (the weights of the best val loss, as evaluated). Only the main process writes."""

    def __init__(self, job, model, optimizer, average, parameters: int, main: bool):
        self.job, self.out, self.config = job, job.out, job.config
        self.model, self.optimizer, self.average = model, optimizer, average
        self.parameters, self.main = parameters, main
        self.final_weights = "latest/ema.safetensors" if average is not None else "latest/model.safetensors"
        self.saved_at = 0.0  # run.clock() at the last save of latest/ (0: training's start)
        self.saved_any = job.resume is not None  # latest/ holds this run (a resumed one's, from the start)
        self.best = checkpoint.BestWriter()

    def begin(self, run: RunState, tokens_per_step: int, micro: int, accum: int, world: int) -> None:
        """A fresh run's tokenizer and config.json (and no metrics of an earlier run), a resumed
        run's metrics trimmed to its checkpoint, the header (status training), and the run's size
        and config in the log."""
        if not self.main:
            return
        config, out = self.config, self.out
        out.mkdir(parents=True, exist_ok=True)
        if self.job.resume is None:
            self.job.tokenizer.save(out / "tokenizer")
            write_json(out / "config.json", config.to_dict())
            (out / "metrics.jsonl").unlink(missing_ok=True)
        else:
            MetricsLog.keep_through(out / "metrics.jsonl", run.step)
        self.write_header(run, "training", self.kept_weights())
        log(f"[bold]{config.model_kind}[/] {self.parameters / 1e6:.2f}M parameters on {self.job.device}"
            + (f" x{world}" if world > 1 else "") + f"; {tokens_per_step:,} tokens a step, "
            f"{accum} micro-step(s) of {micro}; config (also in {out / 'config.json'}):")
        for section in ("model", "optim", "data", "run"):
            log(escape(f"  [{section}] " + " ".join(f"{k}={v}" for k, v in config.to_dict()[section].items())))

    def write_header(self, run: RunState, status: str, weights: str | None, **extra: Any) -> None:
        """The folder's lmladder.json, once any best/ being written is on disk (it may name it)."""
        self.best.wait()
        job = self.job
        write_json(self.out / MARKER, artifacts.header(
            "lmladder-model", kind=self.config.model_kind, unit=job.tokenizer.kind, corpus=job.corpus.identity(),
            split=job.split, tokenizer=job.tokenizer.identity(), config=self.config.to_dict(),
            parameters=self.parameters, weights=weights, status=status, step=run.step,
            best_val=run.best_or_none(), **extra))

    def kept_weights(self) -> str | None:
        """The weights the header names: best/'s, else latest/'s, else None (none saved yet)."""
        self.best.wait()
        return next((name for name in ("best/model.safetensors", self.final_weights) if (self.out / name).is_file()),
                    None)

    def save_if_best(self, run: RunState, val_loss: float) -> None:
        """best/, when val_loss is the best yet (the main process keeps the record): the model's
        weights as they are now (the average's, inside WeightAverage.applied); the header names
        them from then on. Counts the passes since the best one (RunState.stale)."""
        if not self.main:
            return
        run.stale += 1
        if val_loss < run.best_val:
            first = not (self.out / "best").is_dir() and self.best.pending is None
            run.best_val, run.stale = val_loss, 0
            self.best.save(self.out / "best", self.model, run.saved(self.config))  # (in a thread)
            if first:  # the header names best/ from its first save on
                self.write_header(run, "training", "best/model.safetensors")

    def due(self, run: RunState, evaluated: bool) -> bool:
        """Whether latest/ is saved after this step (`evaluated`: val was just scored): every
        checkpoint_interval steps; with checkpoint_seconds, that long after the last save, and the
        first time at the first evaluation or after FIRST_CHECKPOINT_SECONDS if sooner."""
        r = self.config.run
        if r.checkpoint_interval and run.step % r.checkpoint_interval == 0:
            return True
        if not r.checkpoint_seconds:
            return False
        if not self.saved_any and (evaluated or run.clock() >= min(r.checkpoint_seconds, FIRST_CHECKPOINT_SECONDS)):
            return True
        return run.clock() - self.saved_at >= r.checkpoint_seconds

    def save_latest(self, run: RunState, status: str, lr: float) -> None:
        """latest/ and the header; a TrainingDiverged instead when the weights are not finite
        (latest/ keeps the last finite ones)."""
        import torch

        if self.main:
            if not bool(torch.stack([torch.isfinite(p).all() for p in self.model.parameters()]).all()):
                raise self.diverged(run, "the weights became NaN or infinite", lr)
            checkpoint.save(self.out / "latest", self.model, self.optimizer, run.saved(self.config),
                            self.average and self.average.state_dict())
            self.write_header(run, status, self.kept_weights())
        self.saved_at, self.saved_any = run.clock(), True

    def diverged(self, run: RunState, what: str, lr: float) -> TrainingDiverged:
        """The error that stops a run that diverged at this step (`what` happened), after the
        header says so: it names the last checkpoint if there is one, and how to continue it."""
        self.mark_diverged(run)
        saved = saved_step(self.out)
        if saved is None:
            advice = "No checkpoint was saved before it: start again with a lower --lr or a longer --warmup-steps"
        else:
            advice = (f"The last checkpoint, of step {saved:,}, is in {self.out / 'latest'}: continue from it "
                      f"with a lower --lr or a longer --warmup-steps (lmladder train --resume {self.out} --lr ...), "
                      "or start again")
        return TrainingDiverged(f"{what} at step {run.step} (lr {lr:.3g}); stopped. {advice}")

    def mark_diverged(self, run: RunState) -> None:
        """The header says the run diverged, and names the last good weights (if any were saved)."""
        if self.main:
            self.write_header(run, "diverged", self.kept_weights())

    def mark_trained(self, run: RunState, test: dict[str, Any]) -> None:
        """The header of a finished run, with its test scores."""
        if self.main:
            self.write_header(run, "trained", self.kept_weights(), test=test)
