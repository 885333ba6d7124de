"""Training a sweep's runs through lmladder.train, each cached and resumable.

A run lives in $LMLADDER_HOME/cache/scale/KEY, KEY a digest of everything that makes its
numbers: the corpus and split, the run's config, the device type and lmladder's own code
(training_code_digest), so a change of any of them never reuses an old run. A finished
run leaves result.json there and is never trained again; one stopped by Ctrl-C or SIGTERM
leaves its latest/ checkpoint and continues from it on the next call; a run that fails (it
diverged, it does not fit the GPU, ...) is reported, recorded as failed and left out of the
fits, and is tried afresh next time.

What the trainer prints (its config, its progress lines) goes to the run's train.log, except on
a terminal, where its bar shows inside the sweep's; the sweep itself shows its bar, or one line
a run where stderr is a file or a pipe (lmladder.console.progress_style).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from lmladder.config import DataConfig, GPTConfig, OptimConfig, RunConfig, TrainConfig, check
from lmladder.errors import Interrupted
from lmladder.scale.plan import Recipe, RunSpec


def train_config(spec: RunSpec, recipe: Recipe, split: str, device: str, threads: int = 0) -> TrainConfig:
    """The run as lmladder train would take it: no dropout, no biases (as the counts in
    lmladder.scale.plan assume), val and test only at the end, a progress line every 5%."""
    config = TrainConfig(
        "gpt",
        GPTConfig(block_size=spec.block_size, vocab_size=spec.vocab_size, n_layer=spec.n_layer, n_head=spec.n_head,
                  n_embd=spec.n_embd, dropout=0.0, bias=False),
        OptimConfig(batch_size=spec.batch_size, micro_batch_size=0, lr=spec.lr, min_lr=spec.min_lr,
                    warmup_steps=spec.warmup_steps, schedule="cosine", weight_decay=recipe.weight_decay,
                    beta2=recipe.beta2, grad_clip=recipe.grad_clip),
        DataConfig(split=split),
        RunConfig(max_steps=spec.steps, eval_interval=0, log_interval=max(1, spec.steps // 20), checkpoint_interval=0,
                  seed=recipe.seed, device=device, threads=threads,
                  eval_batch_size=256 if device.startswith("cuda") else 64))
    check(config)
    return config


def training_code_digest() -> str:
    """sha256 of lmladder's source less the command line and this package: what a run computes
    is its config (in the key) run by the rest, so changing a fit or a report keeps the runs."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".toml") and "__pycache__" not in p.parts):
        rel = path.relative_to(root)
        if rel.parts[0] in ("cli", "scale"):
            continue
        digest.update(str(rel).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def run_key(corpus_sha256: str, split: str, config: TrainConfig) -> str:
    made_of = config.to_dict()
    made_of["run"] = {k: made_of["run"][k] for k in ("max_steps", "seed")}
    made_of["device"] = "cuda" if config.run.device.startswith("cuda") else "cpu"
    blob = json.dumps({"corpus": corpus_sha256, "split": split, "config": made_of, "code": training_code_digest()},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def run_folder(key: str) -> Path:
    from lmladder import home

    return home.cache_dir("scale", key)


@contextlib.contextmanager
def trainer_output(log: Path) -> Iterator[None]:
    """The trainer's stderr output appended to `log` (shown as it comes on a terminal instead)."""
    from lmladder.console import progress_style, stderr

    if progress_style() == "bar":
        yield
        return
    capture = stderr.capture()
    try:
        with capture:
            yield
    finally:
        if log.parent.is_dir():
            with open(log, "a", encoding="utf-8") as handle:
                handle.write(capture.get())


def _row(spec: RunSpec, key: str, **fields: Any) -> dict[str, Any]:
    base = {**spec.to_dict(), "key": key, "status": "failed", "val_bits_per_char": None, "test_bits_per_char": None,
            "train_seconds": None, "wall_seconds": None, "error": None, "cached": False}
    base.update(fields)
    return base


def train_one(corpus: Any, split: str, spec: RunSpec, recipe: Recipe, device: str, retrain: bool = False,
              threads: int = 0) -> dict[str, Any]:
    """One run: from the cache when it finished before, else trained (or continued) in its
    cache folder. A failure is returned as a row of status "failed"; Ctrl-C or SIGTERM raise
    Interrupted (the checkpoint stays for the next call)."""
    from lmladder.atomic import locked, write_json
    from lmladder.train import prepare, train

    config = train_config(spec, recipe, split, device, threads)
    key = run_key(corpus.sha256, split, config)
    folder = run_folder(key)
    done = folder / "result.json"
    if retrain:
        shutil.rmtree(folder, ignore_errors=True)
    if done.is_file():
        try:
            return dict(json.loads(done.read_text(encoding="utf-8")), cached=True)
        except (OSError, ValueError):
            pass
    start = time.perf_counter()
    with locked(folder, wait=True):  # another sweep training this very run: wait, then take its result
        if done.is_file() and not retrain:
            return dict(json.loads(done.read_text(encoding="utf-8")), cached=True)
        resume = (folder / "latest").is_dir()
        if not resume:
            shutil.rmtree(folder, ignore_errors=True)  # a run killed before its first checkpoint starts again
        try:
            with trainer_output(folder / "train.log"):
                job = prepare(corpus.name, "char", config, folder, resume=resume, device=device, fit_micro=True)
                result = train(job)
        except Interrupted:
            raise
        except Exception as exc:  # noqa: BLE001 -- any failure of one run is reported and the sweep goes on
            if os.environ.get("LMLADDER_DEBUG", "") not in ("", "0"):
                raise
            shutil.rmtree(folder, ignore_errors=True)
            return _row(spec, key, error=f"{type(exc).__name__}: {exc}".strip(),
                        wall_seconds=time.perf_counter() - start)
        if result["stopped"] != "finished":
            raise Interrupted(f"the sweep was stopped by {result['stopped']} in run {spec.name} at step "
                              f"{result['steps']:,}; finished runs are cached and this one continues from its "
                              "checkpoint: run the same command again", result["stopped"])
        test = result.get("test") or {}
        row = _row(spec, key, status="finished", val_bits_per_char=result["val_bits_per_char"],
                   test_bits_per_char=test.get("bits_per_char"), train_seconds=result["seconds"],
                   wall_seconds=time.perf_counter() - start)
        write_json(done, row)
    return row


def train_all(corpus: Any, split: str, specs: Sequence[RunSpec], recipe: Recipe, device: str, retrain: bool = False,
              threads: int = 0, on_run: Callable[[dict[str, Any]], None] | None = None,
              what: str = "scale sweep", jobs: int = 1) -> list[dict[str, Any]]:
    """Every run under one progress bar (the trainer's own bar nests inside it with one job),
    `jobs` of them at once in worker processes: small runs leave most of a GPU idle, and on one
    H200 three sweeps at once took 130 s where one alone took 83 s. Rows come back in the
    order of `specs`; on_run sees each as it finishes."""
    from lmladder.console import progress

    rows: list[dict[str, Any] | None] = [None] * len(specs)
    with progress("count") as bar:
        task = bar.add_task(what, total=len(specs))

        def finished(i: int, row: dict[str, Any]) -> None:
            rows[i] = row
            bar.advance(task)
            if on_run is not None:
                on_run(row)

        if jobs <= 1 or len(specs) <= 1:
            for i, spec in enumerate(specs):
                finished(i, train_one(corpus, split, spec, recipe, device, retrain, threads))
        else:
            _train_in_workers(corpus, split, specs, recipe, device, retrain, threads, jobs, finished)
    return [row for row in rows if row is not None]


def _train_in_workers(corpus, split, specs, recipe, device, retrain, threads, jobs, finished) -> None:
    """train_one for each spec in `jobs` spawned processes (a CUDA context does not survive a
    fork); a worker's Interrupted (Ctrl-C reaches every process of the group) stops the rest."""
    import multiprocessing
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))
    try:
        pending = {pool.submit(train_one, corpus, split, spec, recipe, device, retrain, threads): i
                   for i, spec in enumerate(specs)}
        while pending:
            done, _ = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                finished(pending.pop(future), future.result())  # a worker's Interrupted is raised here
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
