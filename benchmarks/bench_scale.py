"""`lmladder scale` as a benchmark: a sweep, its prediction for a bigger run, and that run.

    # the committed CPU result (2 cores, ~10 minutes): 9 runs, a 4-layer, 128-wide target on 4
    # passes over the train split, trained and compared
    python benchmarks/bench_scale.py --out benchmarks/results/scale-cpu-tinyshakespeare-DATE
    # the truth check: on `markov` the fitted E against the source's exact entropy rate
    python benchmarks/bench_scale.py --corpus markov --sizes 1,2 --budgets 4e10,8e10,1.6e11,3.2e11 \\
        --target-layers 3 --target-tokens 3e6 --out benchmarks/results/scale-cpu-markov-DATE
    # on a GPU: the gpu profile's 13 runs (5.6e14 FLOPs), a 16-layer, 1024-wide target on 80M
    # tokens (under 4 passes over gutenberg-en's train split): 1.0e17 FLOPs, ~180x the sweep
    python benchmarks/bench_scale.py --device cuda --profile gpu --corpus gutenberg-en \\
        --target-layers 16 --target-tokens 80e6 --out benchmarks/results/scale-gpu-gutenberg-en-DATE

The target is a model of the profile's family (--target-layers k: k layers, width aspect x k)
given to `lmladder scale --target-config`, or a compute budget (--target-flops). Prints a short
table: the fits, the prediction with its interval, the verified loss and its relative error,
the compute ratio and (on a synthetic corpus) E against the truth.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from lmladder.scale.plan import PROFILES

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default="tinyshakespeare")
    ap.add_argument("--profile", default="cpu", choices=sorted(PROFILES))
    ap.add_argument("--sizes", help="depths of the sweep, e.g. 1,2,3 (default: the profile's)")
    ap.add_argument("--budgets", help="FLOPs of each IsoFLOP level, e.g. 1e11,2e11,4e11 (default: the profile's)")
    ap.add_argument("--min-steps", type=int, help="leave out planned runs of fewer steps (default: the profile's)")
    ap.add_argument("--target-layers", type=int, default=4, help="the target: this depth of the profile's family")
    ap.add_argument("--target-tokens", type=float, default=3.8e6, help="tokens to train the target on")
    ap.add_argument("--target-flops", type=float, help="instead: a compute budget (the fit picks N and D)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--bootstrap", type=int, default=200)
    ap.add_argument("--out", required=True)
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args(argv)

    family = PROFILES[args.profile].family
    command = [sys.executable, "-m", "lmladder", "scale", args.corpus, "--profile", args.profile, "--out", args.out, "--device", args.device,
               "--threads", str(args.threads), "--bootstrap", str(args.bootstrap), "--verify", "--json"]
    command += ["--sizes", args.sizes] if args.sizes else []
    command += ["--budgets", args.budgets] if args.budgets else []
    command += ["--min-steps", str(args.min_steps)] if args.min_steps else []
    command += ["--force"] if args.force else []
    with tempfile.TemporaryDirectory() as tmp:
        if args.target_flops:
            command += ["--target-flops", str(args.target_flops)]
        else:
            k = args.target_layers
            config = Path(tmp) / f"target-{k}x{family.aspect * k}.toml"
            config.write_text(f"[model]\nn_layer = {k}\nn_embd = {family.aspect * k}\n"
                              f"n_head = {family.aspect * k // family.head_size}\n")
            command += ["--target-config", str(config), "--target-tokens", str(args.target_tokens)]
        start = time.perf_counter()
        result = subprocess.run(command, stdout=subprocess.PIPE, text=True)  # progress and logs go to stderr as they come
    wall = time.perf_counter() - start
    if result.returncode != 0:
        return result.returncode
    report = json.loads(result.stdout)
    table(report, wall)
    return 0


def table(report: dict, wall: float) -> None:
    """The study in a dozen lines."""
    fits, p, v = report["fits"], report["prediction"], report["verification"]
    c, d = fits["compute"], fits["data"]
    runs = [r for r in report["runs"] if r["role"] == "fit"]
    lines = [f"corpus {report['manifest']['corpus']['name']}, {report['manifest']['device']}, {wall:.0f} s in all",
             f"sweep: {sum(r['status'] == 'finished' for r in runs)}/{len(runs)} runs, "
             f"{report['fit_flops']:.3g} FLOPs, {sum(r['train_seconds'] or 0 for r in runs):.0f} s of training",
             f"L(C)    E {c['E']:.4f}  A {c['A']:.4g}  alpha {c['alpha']:.4f}  (frontier: {len(c['frontier'])} runs)",
             f"L(N,D)  E {d['E']:.4f}  A {d['A']:.4g}  alpha {d['alpha']:.4f}  B {d['B']:.4g}  beta {d['beta']:.4f}"]
    if p is not None:
        t = p["target"]
        interval = f"[{p['interval'][0]:.4f}, {p['interval'][1]:.4f}]" if p["interval"] else "-"
        lines += [f"target  {t['n_layer']}x{t['n_embd']}, N {t['non_embedding_parameters']:,}, D {t['tokens']:,}, "
                  f"C {t['flops']:.3g} = {report['compute_ratio']:.1f}x the sweep",
                  f"predicted  {p['bits_per_char']:.4f} {interval} (L(N,D));  {p['by_compute']['bits_per_char']:.4f} (L(C))"]
    if v is not None and v["bits_per_char"] is not None:
        lines.append(f"verified   {v['bits_per_char']:.4f}: relative error {v['relative_error']:+.2%} (L(N,D)), "
                     f"{v['by_compute_relative_error']:+.2%} (L(C)); inside the interval: {v['within_interval']}")
    if report.get("truth"):
        tr = report["truth"]
        lines.append(f"truth      entropy rate {tr['entropy_bits_per_char']:.4f}: E of L(N,D) {tr['E_data_relative_error']:+.2%}, "
                     f"of L(C) {tr['E_compute_relative_error']:+.2%}")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
