"""CPU threads against training speed (RunConfig.threads): the seconds N training steps of a
preset take at each torch thread count, alone or beside processes that keep a core busy, and
under OpenMP's two wait policies.

    python benchmarks/bench_threads.py --preset gpt-tiny --steps 100 --threads 1,2 --busy 0,1
    python benchmarks/bench_threads.py --cpus 0,1 ...     (pinned to two cores, as a 2-core machine)

Each measurement runs in a fresh process (OpenMP reads OMP_WAIT_POLICY when torch loads) on
random token ids (no corpus needed), after 3 warm-up steps; a busy process is `while True: pass`
pinned to the last of the cores used.

Seen 2026-12-01 on an H200 host's CPU (16 cores, torch 2.11; seconds, each run's, lowest first):

    16 cores, free          threads 1       2       4       8       16
    gpt-tiny, 100 steps     0.38    0.41    0.43    0.48    0.50
    gpt-char, 2 steps       29.8    19.1    13.9    10.9    7.7

    2 cores (--cpus 0,1)    OMP_WAIT_POLICY unset        PASSIVE
                            1 thread   2 threads         1 thread   2 threads
    gpt-tiny, 100 steps
      free                  0.37       0.39              0.42       0.59
      beside 1 busy         0.59       0.85, 52.0, 52.0  0.40       0.50
    gpt-char batch 8, 3 steps
      free                  5.4        3.1               5.5        3.8
      beside 1 busy         5.0        18.8              5.8        5.4

So torch's own count (the cores the process may use: 2 under `taskset -c 0,1`) is the fastest
on a free machine, and no cap at 8 (gpt-char keeps gaining to 16); beside a busy process, 2
threads spinning in OpenMP's default wait policy lose a scheduler slice at every barrier (52 s
for what 1 thread does in 0.6 s), which the passive policy (or --threads 1) avoids. The same
on the 2-core VM that made tests/data/golden (other work on it): gpt-tiny 100 steps 0.31 s at
1 thread, 3.5-10.6 s at 2, 11-25 s at 2 beside a busy process; 0.35-1.2 s at 2 with PASSIVE.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def child(preset: str, threads: int, steps: int, warmup: int = 3, batch: int = 0) -> float:
    import numpy as np
    import torch

    from lmladder.config import resolve
    from lmladder.neural import build_model
    from lmladder.train import Dist, TrainStep
    from lmladder.train.optim import training_optimizer
    from lmladder.train.step import draw_batch

    torch.set_num_threads(threads)
    optim = {"batch_size": batch} if batch else {}
    config = resolve(None, preset, None, {"model": {"vocab_size": 65}, "optim": optim, "run": {"device": "cpu"}})
    ids = np.random.default_rng(0).integers(0, 65, size=200_000)
    torch.manual_seed(0)
    model = build_model(config)
    optimizer, step_fn = training_optimizer(model, config, "cpu", False)
    trainer = TrainStep(model, optimizer, step_fn, None, config, "cpu", Dist(), False)
    for k in range(warmup + steps):
        if k == warmup:
            start = time.perf_counter()
        trainer(draw_batch(ids, k, config, 0, 1, "cpu"), 1e-3, k)
    trainer.mean_loss()
    return time.perf_counter() - start


def measure(preset: str, threads: int, steps: int, busy: int, cpus: list[int] | None, policy: str, warmup: int,
            batch: int) -> float:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy != "default":
        env["OMP_WAIT_POLICY"] = policy.upper()
    env["PYTHONPATH"] = str(REPO)
    pin = f"import os; os.sched_setaffinity(0, {cpus!r}); " if cpus else ""
    hog = (f"import os\nos.sched_setaffinity(0, [{cpus[-1]}])\n" if cpus else "") + "while True:\n    pass\n"
    hogs = [subprocess.Popen([sys.executable, "-c", hog]) for _ in range(busy)]
    try:
        time.sleep(0.5 if busy else 0)
        code = (f"{pin}import sys; sys.path.insert(0, {str(REPO / 'benchmarks')!r}); import bench_threads; "
                f"print(bench_threads.child({preset!r}, {threads}, {steps}, {warmup}, {batch}))")
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        return float(out.stdout.strip().splitlines()[-1])
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="gpt-tiny")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--batch", type=int, default=0, help="batch size (0: the preset's)")
    parser.add_argument("--threads", default="1,2", help="thread counts, comma-separated")
    parser.add_argument("--busy", default="0,1", help="numbers of busy processes beside the run, comma-separated")
    parser.add_argument("--policy", default="default", help="OMP_WAIT_POLICY values: default, active, passive")
    parser.add_argument("--cpus", default="", help="pin everything to these cores, e.g. 0,1")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--json", default="", help="also write the rows to this file")
    args = parser.parse_args()
    cpus = [int(c) for c in args.cpus.split(",")] if args.cpus else None
    rows = []
    for policy in args.policy.split(","):
        for busy in (int(b) for b in args.busy.split(",")):
            for threads in (int(t) for t in args.threads.split(",")):
                times = [measure(args.preset, threads, args.steps, busy, cpus, policy, args.warmup, args.batch)
                         for _ in range(args.repeat)]
                row = {"preset": args.preset, "batch": args.batch or None, "steps": args.steps, "threads": threads,
                       "busy": busy, "policy": policy, "cpus": args.cpus or "all", "seconds": times}
                rows.append(row)
                print(f"{args.preset:9} batch {args.batch or '-':>3} {args.steps} steps  policy {policy:8} "
                      f"busy {busy}  threads {threads:2}  " + " ".join(f"{t:7.2f}" for t in times) + " s", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
