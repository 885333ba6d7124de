"""Variants of ladder rungs side by side: each rung of a ladder file trained and scored by its own
`lmladder bench --only NAME` process, several at once on one machine (one GPU holds many small
GPTs; issue 23's explorations ran eight at a time).

    LMLADDER_MIRROR=/path/to/corpora PYTHONPATH=. python benchmarks/bench_variants.py LADDER.toml \\
        [--corpus tinyshakespeare] [--profile gpu] [--split SPEC] [--jobs 8] [--timeout 560]

The scores are those of each rung run alone, up to the run-to-run spread: a neural rung stops by
steps and patience, never by time (a profile that stops by time would not be comparable). Its
seconds, and the times its best val came at, are those of a shared machine. Writes variants.json
(every rung's results row, its best val and when, the manifest), variants.md (the table it
prints) and logs.tar.gz (each process's stderr) under $OUT (or ./bench-variants-out): three
files, whatever the number of rungs.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # children, when loaded by path
import children  # noqa: E402


def rung_names(ladder: Path) -> list[str]:
    from lmladder.corpora import tomllib  # tomli before Python 3.11

    rungs = tomllib.loads(ladder.read_text(encoding="utf-8")).get("rung") or []
    names = [r.get("name") for r in rungs if isinstance(r, dict)]
    if not names or not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
        raise ValueError(f"{ladder} needs [[rung]] tables with unique string names")
    if any(c in n for n in names for c in "*?[]"):
        raise ValueError(f"{ladder}: a rung name here may not hold *, ?, [ or ] (it is passed to --only)")
    return names


def run_one(name: str, ladder: Path, corpus: str, profile: str, work: Path, timeout: float,
            split: str | None = None) -> dict:
    """One rung alone: `lmladder bench --only NAME` in a home of its own; its results row, or
    an error with the tail of its stderr."""
    out, home = work / "out" / name.replace("/", "_"), work / "home" / name.replace("/", "_")
    home.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "lmladder", "bench", corpus, "--profile", profile, "--ladder", str(ladder),
           "--only", name, "--out", str(out), "--json", *(["--split", split] if split else [])]
    env = {**os.environ, "LMLADDER_HOME": str(home), "LMLADDER_NO_PROGRESS": "1"}
    started = time.time()
    try:
        proc = children.run(cmd, timeout, env=env)
        code, stderr = proc.returncode, proc.stderr
    except subprocess.TimeoutExpired as exc:
        code, stderr = -9, (exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or "")
        stderr += f"\ntimed out after {timeout} s"
    row: dict = {"rung": name, "wall_s": round(time.time() - started, 1), "stderr": stderr}
    results = out / "results.json"
    if code != 0 or not results.is_file():
        return {**row, "error": f"exit {code}: {stderr.strip().splitlines()[-1] if stderr.strip() else ''}"}
    report = json.loads(results.read_text(encoding="utf-8"))
    found = next(r for r in report["results"] if r["rung"] == name)
    curve = found.get("curve") or []
    best = min(curve, key=lambda p: p[1]) if curve else None
    return {**row, "manifest": report.get("manifest"), "result": found,
            "best_val_bits_per_char": best[1] if best else None, "best_val_at_s": best[0] if best else None}


def table(rows: list[dict]) -> str:
    lines = ["| rung | test bits/char | best val bits/char (at, s) | train s | size |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['rung']} | failed: {r['error'][:80]} | | | |")
            continue
        res, best = r["result"], r["best_val_bits_per_char"]
        val = f"{best:.4f} ({r['best_val_at_s']:.1f})" if best is not None else "-"
        lines.append(f"| {r['rung']} | {res['bits_per_char']:.4f} | {val} | {res['train_seconds']:.1f} | "
                     f"{res.get('size') or '-'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ladder", type=Path, help="a ladder file; each of its rungs is one variant")
    parser.add_argument("--corpus", default="tinyshakespeare")
    parser.add_argument("--profile", default="gpu", choices=["cpu", "gpu"])
    parser.add_argument("--split", default=None, help="the bench's split (default: the corpus's)")
    parser.add_argument("--jobs", type=int, default=0, help="processes at once (0: every rung at once)")
    parser.add_argument("--timeout", type=float, default=560.0, help="seconds a rung may take")
    opts = parser.parse_args(argv)  # argparse's own errors: a usage line and exit code 2
    try:
        if opts.jobs < 0 or not opts.timeout > 0:
            raise ValueError("--jobs must be >= 0 and --timeout > 0")
        names = rung_names(opts.ladder)
    except (ValueError, OSError) as exc:  # OSError: no such ladder file; ValueError: not TOML, or bad rungs
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    children.end_with_me()
    out = Path(os.environ.get("OUT") or "bench-variants-out")
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="lmladder-variants-"))
    ladder = opts.ladder.resolve()
    with ThreadPoolExecutor(max_workers=opts.jobs or len(names)) as pool:
        rows = list(pool.map(lambda n: run_one(n, ladder, opts.corpus, opts.profile, work, opts.timeout, opts.split),
                             names))
    with tarfile.open(out / "logs.tar.gz", "w:gz") as tar:
        for r in rows:
            data = r.pop("stderr").encode("utf-8")
            info = tarfile.TarInfo(f"{r['rung'].replace('/', '_')}.log")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    text = table(rows)
    (out / "variants.md").write_text(text, encoding="utf-8")
    (out / "variants.json").write_text(json.dumps({"ladder": opts.ladder.read_text(encoding="utf-8"),
                                                   "corpus": opts.corpus, "profile": opts.profile, "split": opts.split,
                                                   "jobs": opts.jobs or len(names), "rows": rows}, indent=1),
                                       encoding="utf-8")
    print(text, end="")
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
