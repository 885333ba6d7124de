"""Time to quality on one GPU, lmladder and nanoGPT side by side in one run (issue 23).

    LMLADDER_MIRROR=/path/to/corpora PYTHONPATH=. python benchmarks/bench_ttq.py \\
        --nanogpt DIR [--explore muon-t12,adamw-t12,...] [--short auto|RECIPE] [--long auto|RECIPE]

Metric (both tools): wall time from launching the training process to the first validation
loss <= 1.47 nats/char on Tiny Shakespeare's last 10% (nanoGPT's split; lmladder --split
0.9,0.1,0), and the best validation loss printed within 60 s of launch. lmladder's val loss is
a full pass over the split every 50 steps; nanoGPT's is its own estimate (200 random batches,
every 250 iterations, config/train_shakespeare_char.py unchanged).

1. Python's bytecode cache is filled first (one import of torch and lmladder, one of torch's
   compiler), so neither tool pays for compiling .py files, as on any machine after a first run.
2. --explore: each recipe of bench_gpu.TTQ_RECIPES once; --short auto takes the fastest to
   1.47, --long auto the lowest val within 60 s. With nothing explored, auto is the measured
   recipe (SHORT, LONG: benchmarks/results/ttq-h200-2026-12-02-muon).
3. Side by side, alternating: nanoGPT with an empty compile cache (cold), lmladder's short and
   long recipes, nanoGPT again with the cache it left (warm), the short recipe twice more (a
   median of three).

--nanogpt DIR: a nanoGPT checkout (train.py, model.py, configurator.py, config/) whose
data/shakespeare_char/ holds train.bin, val.bin and meta.pkl made by its prepare.py.
Writes ttq.json (and each run's log) under $OUT; prints a short table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_gpu  # noqa: E402  (bench_gpu.time_to_quality runs lmladder's recipes)
from lmladder.bench import code_digest, git_commit  # noqa: E402

TARGET = 1.47
NANOGPT_STEP = re.compile(r"^step (\d+): train loss ([\d.]+), val loss ([\d.]+)")


def timed_lines(cmd: list[str], cwd: Path, env: dict, cap: float) -> tuple[float, list[tuple[float, str]], int]:
    """Run cmd; every stdout line with the seconds since launch; killed after `cap` seconds."""
    t0 = time.time()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[tuple[float, str]] = []

    def read() -> None:
        for line in proc.stdout:
            lines.append((time.time() - t0, line.rstrip()))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        proc.wait(timeout=cap)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    reader.join(timeout=5)
    return t0, lines, proc.returncode


def nanogpt(root: Path, cache: Path, cap: float, log: Path) -> dict:
    """nanoGPT's train_shakespeare_char as it is, compile cache in `cache` (empty: cold)."""
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(cache), TRITON_CACHE_DIR=str(cache / "triton"))
    out = Path(tempfile.mkdtemp(prefix="nanogpt-out-"))
    cold = not any(cache.glob("*"))
    _, lines, rc = timed_lines([sys.executable, "-u", "train.py", "config/train_shakespeare_char.py",
                                f"--out_dir={out}"], root, env, cap)
    log.write_text("\n".join(f"{t:8.2f} {text}" for t, text in lines) + "\n")
    vals = [(t, float(m.group(3)), int(m.group(1))) for t, text in lines if (m := NANOGPT_STEP.match(text))]
    return summary("nanoGPT " + ("cold" if cold else "warm") + " compile cache", vals, rc)


def summary(name: str, vals: list[tuple[float, float, int]], rc: int | None = None) -> dict:
    """(seconds since launch, val loss, step) rows -> the two numbers and where they came from."""
    first = next(((t, s) for t, v, s in vals if v <= TARGET), (None, None))
    within = [v for t, v, _ in vals if t <= 60.0]
    return {"name": name, "time_to_1.47_s": first[0], "step_at_1.47": first[1],
            "best_val_60s": min(within) if within else None, "evals": len(vals), "returncode": rc}


def lmladder(work: Path, recipe: str, tag: str) -> dict:
    result = bench_gpu.time_to_quality(work / tag, 55.0, [recipe])[recipe]
    return dict(result, name=f"lmladder {recipe}")


def warm_bytecode() -> dict:
    """Import what both tools import, so later processes read cached bytecode."""
    seconds = {}
    for name, code in (("torch+lmladder", "import torch, lmladder.train, lmladder.gpt, lmladder.cli"),
                       ("torch.compile", "import torch._dynamo, torch._inductor.compile_fx")):
        t0 = time.time()
        subprocess.run([sys.executable, "-c", code], check=False, capture_output=True)
        seconds[name] = time.time() - t0
    probe = subprocess.run([sys.executable, "-c", "import sys; print(sys.dont_write_bytecode)"], capture_output=True,
                           text=True)
    return {"first_import_s": seconds, "dont_write_bytecode": probe.stdout.strip()}


def spread(values: list[float | None]) -> dict:
    xs = [v for v in values if v is not None]
    return {"median": statistics.median(xs) if xs else None, "min": min(xs, default=None),
            "max": max(xs, default=None), "runs": values}


SHORT = "muon-do0.1-t14"  # 8.97 s to 1.47 (median of three), one H200, 2026-12-02
LONG = "muon-l6-do0.2-wd3-ctx512-noise0.05"  # best val within 60 s 1.3514, the same run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nanogpt", type=Path, help="a prepared nanoGPT checkout (leave out: lmladder only)")
    ap.add_argument("--explore", default="", help="bench_gpu recipes to try first, comma-separated")
    ap.add_argument("--short", default="auto", help="the recipe timed to 1.47 (auto: the fastest explored)")
    ap.add_argument("--long", default="auto", help="the recipe for the best val in 60 s (auto: the best explored)")
    ap.add_argument("--cold-cap", type=float, default=95.0, help="seconds nanoGPT may run with a cold cache")
    ap.add_argument("--warm-cap", type=float, default=66.0, help="seconds nanoGPT may run with a warm cache")
    ap.add_argument("--explore-only", action="store_true", help="run the --explore recipes, write explore.json, stop")
    opts = ap.parse_args()
    names = [n for n in opts.explore.split(",") if n] + [n for n in (opts.short, opts.long) if n != "auto"]
    unknown = [n for n in names if n not in bench_gpu.TTQ_RECIPES]
    if unknown:  # before nanoGPT's minute with a cold cache, not after it
        ap.error(f"unknown recipe(s) {', '.join(unknown)}: the names are bench_gpu.TTQ_RECIPES' keys")
    out = Path(os.environ.get("OUT") or "bench-gpu-out")
    out.mkdir(parents=True, exist_ok=True)
    bench_gpu.OUT = out
    work = Path(tempfile.mkdtemp(prefix="lmladder-ttq-"))
    os.environ.setdefault("LMLADDER_HOME", str(work / "home"))
    os.environ["LMLADDER_NO_PROGRESS"] = "1"
    import torch

    report = {"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
              "torch": torch.__version__, "python": sys.version.split()[0], "date": dt.date.today().isoformat(),
              "git_commit": git_commit(), "lmladder_code": code_digest()[:16],
              "target_nats_per_char": TARGET, "bytecode": warm_bytecode()}
    bench_gpu.encode_tinyshakespeare()
    explored = bench_gpu.time_to_quality(work / "explore", 55.0, opts.explore.split(",")) if opts.explore else {}
    report["explored"] = explored
    if opts.explore_only:
        (out / "explore.json").write_text(json.dumps(report, indent=2) + "\n")
        for name, r in explored.items():
            print(f"{name:<44}{r['time_to_1.47_s'] or '-':>12}{r['best_val_60s'] or '-':>22}")
        return 0
    scored = {k: v for k, v in explored.items() if v["best_val_60s"] is not None}
    done = {k: v for k, v in explored.items() if v["time_to_1.47_s"] is not None}
    long = opts.long if opts.long != "auto" else min(scored, key=lambda k: scored[k]["best_val_60s"]) if scored else LONG
    short = opts.short if opts.short != "auto" else min(done, key=lambda k: done[k]["time_to_1.47_s"]) if done else SHORT
    runs: list[dict] = []
    cache = work / "inductor-cache"
    cache.mkdir()
    plan = [("nanogpt", opts.cold_cap), ("short", None), ("long", None), ("nanogpt", opts.warm_cap), ("short", None),
            ("short", None)]
    for k, (what, cap) in enumerate(plan):
        if what == "nanogpt":
            if opts.nanogpt is None:
                continue
            runs.append(nanogpt(opts.nanogpt.resolve(), cache, cap, out / f"nanogpt-{k}.log"))
        else:
            runs.append(lmladder(work, short if what == "short" else long, f"side-{k}"))
        print(f"side by side: {runs[-1]}", flush=True)
    mine_short = [r for r in runs if r["name"] == f"lmladder {short}"]
    mine_long = [r for r in runs if r["name"] == f"lmladder {long}"]
    report.update({"short_recipe": short, "long_recipe": long, "side_by_side": runs,
                   "time_to_1.47_s": spread([r["time_to_1.47_s"] for r in mine_short])["median"],
                   "best_val_60s": min((r["best_val_60s"] for r in mine_short + mine_long if r["best_val_60s"]),
                                       default=None),
                   "lmladder_time_to_1.47": spread([r["time_to_1.47_s"] for r in mine_short]),
                   "lmladder_best_val_60s": spread([r["best_val_60s"] for r in mine_long])})
    for state in ("cold", "warm"):
        theirs = [r for r in runs if r["name"] == f"nanoGPT {state} compile cache"]
        if theirs:
            report[f"nanogpt_{state}"] = theirs[0]
            t, mine = theirs[0]["time_to_1.47_s"], report["time_to_1.47_s"]
            report[f"speedup_vs_nanogpt_{state}"] = t / mine if t and mine else None
    (out / "ttq.json").write_text(json.dumps(report, indent=2) + "\n")
    f = lambda v, d=2: "-" if v is None else f"{v:,.{d}f}"  # noqa: E731
    print(f"\n{report['device']}, torch {report['torch']}; short {short}, long {long}")
    print(f"{'run':<44}{'to 1.47 (s)':>12}{'best val 60 s':>15}")
    for r in runs:
        print(f"{r['name']:<44}{f(r['time_to_1.47_s'], 1):>12}{f(r['best_val_60s'], 4):>15}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
