"""The whole ladder on one corpus: every rung trained on the same train split and scored on
the same test split through lmladder.metrics, in one table.

A ladder file (TOML) lists `[[rung]]` tables, each with a `name`, a `kind` from the rung
registry (lmladder.registry) and that kind's settings.
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
import platform
import resource
import subprocess
import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Sequence

from lmladder import __version__, registry
from lmladder.home import DATA
from lmladder.errors import LadderError

DEFAULT_LADDER, DEFAULT_LADDER_NAME = DATA / "default-ladder.toml", "default"  # in the package; what manifests call it


def load_ladder(path: str | Path | None) -> list[dict[str, Any]]:
    """Read and check a ladder file: every problem is collected and reported at once."""
    from lmladder.textio import read_toml

    path = Path(path) if path else DEFAULT_LADDER
    if not path.is_file():
        raise LadderError(f"ladder file {path} {'is a folder, not a TOML file' if path.is_dir() else 'does not exist'}; "
                          f"the default ladder ({DEFAULT_LADDER}) is an example")
    data = read_toml(path, "ladder file")
    rungs = data.get("rung")
    if not isinstance(rungs, list) or not rungs:
        raise LadderError(f"ladder file {path} has no [[rung]] tables")
    problems, seen = [], set()
    for i, rung in enumerate(rungs, 1):
        name, kind = rung.get("name"), rung.get("kind")
        if not name or not isinstance(name, str):
            problems.append(f"rung {i} has no name (a string)" if not name else f"rung {i}'s name {name!r} is not a string")
            name = None
        elif name in seen:
            problems.append(f"rung name {name!r} is used twice")
        seen.add(name)
        if not isinstance(kind, str) or kind not in registry.KINDS:
            problems.append(f"rung {name or i}: unknown kind {kind!r} (valid kinds: {', '.join(registry.KINDS)})")
            continue
        allowed = registry.KINDS[kind].settings
        for key in rung:
            if key not in ("name", "kind") and key not in allowed:
                valid = ", ".join(allowed) or "none"
                problems.append(f"rung {name or i}: unknown setting {key!r} for kind {kind} (valid: {valid})")
        for key, required in allowed.items():
            if required and key not in rung:
                problems.append(f"rung {name or i}: kind {kind} needs the setting {key!r}")
    if problems:
        raise LadderError(f"ladder file {path}: " + "; ".join(problems))
    return rungs


def select(rungs: list[dict[str, Any]], only: Sequence[str]) -> list[dict[str, Any]]:
    """The rungs whose names match any of the shell-style patterns (all rungs without any); a
    pattern that matches nothing is an error, so a typo never runs an empty ladder."""
    if not only:
        return rungs
    unmatched = [p for p in only if not any(fnmatch.fnmatchcase(r["name"], p) for r in rungs)]
    if unmatched:
        names = ", ".join(repr(r["name"]) for r in rungs)
        raise LadderError(f"--only {unmatched[0]!r} matches no rung of the ladder (its rungs: {names})")
    return [r for r in rungs if any(fnmatch.fnmatchcase(r["name"], p) for p in only)]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _device() -> str:
    """The GPU's name when torch sees one, else the CPU's model and core count."""
    import os
    import sys

    if "torch" in sys.modules and sys.modules["torch"].cuda.is_available():
        return sys.modules["torch"].cuda.get_device_name()
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU: {model} ({os.cpu_count()} cores)"


def _torch_version() -> str | None:
    from importlib import metadata

    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return None


def git_commit() -> str | None:
    """The checkout's HEAD commit, with "-dirty" when tracked files differ from it (None outside git)."""
    git = lambda *a: subprocess.run(["git", *a], cwd=Path(__file__).parent, capture_output=True,  # noqa: E731
                                    text=True, timeout=5).stdout.strip()
    try:
        head = git("rev-parse", "HEAD")
        return head + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "") if head else None
    except (OSError, subprocess.SubprocessError):
        return None


@lru_cache(maxsize=1)
def code_digest() -> str:
    """sha256 of lmladder's own source (every .py and data file of the package), so a cached
    result never outlives a change of the code that made it."""
    import hashlib

    digest = hashlib.sha256()
    root = Path(__file__).resolve().parent
    for path in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".toml") and "__pycache__" not in p.parts):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _cache_folder(corpus: dict[str, Any], split: str, spec: dict[str, Any], profile: str) -> Path:
    """Where a rung's result lives: keyed by corpus, split, the rung's settings, the profile and
    the code (code_digest)."""
    import hashlib
    import json

    from lmladder import home

    key = json.dumps({"corpus": corpus["sha256"], "split": split, "rung": spec, "profile": profile,
                      "version": __version__, "code": code_digest()}, sort_keys=True)
    return home.cache_dir("bench", hashlib.sha256(key.encode()).hexdigest()[:24])


def _cached_row(folder: Path, name: str) -> dict[str, Any] | None:
    import json

    try:
        row = json.loads((folder / "result.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return dict(row, rung=name, cached=True) if isinstance(row, dict) and "bits_per_char" in row else None


COMPRESSED = ("compressed_bytes", "compressed_bits_per_char", "compress_seconds", "decompress_seconds")


def compressed_size(rung, kind: str, test: Sequence[str]) -> dict[str, Any]:
    """The test split (its documents joined) as a file: compressed by the rung itself
    (lmladder.compress) and given back byte for byte, or, for a compressor rung, by gzip, bz2
    or xz alone; its size, bits per character and times."""
    import bz2
    import gzip
    import lzma

    from lmladder import compress

    text = "".join(test)
    start = time.perf_counter()
    if kind == "compressor":
        data = rung.compress(text.encode("utf-8"))
        middle = time.perf_counter()
        back = {"gzip": gzip.decompress, "bz2": bz2.decompress, "xz": lzma.decompress}[rung.method](data).decode("utf-8")
    else:
        data = compress.compress(rung, text)
        middle = time.perf_counter()
        back = compress.decompress(data, rung, source="the compressed test split")
    if back != text:
        raise RuntimeError(f"the {kind} rung's compressed test split did not decompress to the same text")
    return {"compressed_bytes": len(data), "compressed_bits_per_char": 8 * len(data) / max(1, len(text)),
            "compress_seconds": middle - start, "decompress_seconds": time.perf_counter() - middle}


def run(corpus_name: str, ladder_path: str | None = None, profile: str = "cpu", split: str | None = None,
        on_rung: Callable[[dict], None] | None = None, baseline: dict[str, Any] | None = None,
        force: bool = False, only: Sequence[str] = (), compress: bool = False) -> dict[str, Any]:
    """Build and score every rung (or those whose names match one of the shell-style patterns
    `only`). A `baseline` (see load_baseline) is checked against the
    corpus and split before any rung is trained. Each rung's result is cached under
    $LMLADDER_HOME/cache/bench as soon as it is scored, so a second run (or one resumed after
    an interruption) reuses finished rungs unless `force`. With `compress`, each rung also
    compresses the test split (compressed_size); a cached row without that is built again."""
    from lmladder import corpora, metrics
    from lmladder.atomic import write_json

    if profile not in ("cpu", "gpu"):
        raise LadderError(f"unknown --profile {profile!r}; choose cpu or gpu")
    rungs = select(load_ladder(ladder_path), only)
    registry.check_rungs(rungs, profile)  # every rung's settings, before any rung builds
    corpus = corpora.load(corpus_name)
    splits = corpus.split(split)
    splits.require("train")
    test = splits.require("test")
    if baseline is not None:
        _same_data(baseline, corpus.identity(), str(splits.spec))
    results = []
    for spec in rungs:
        folder = _cache_folder(corpus.identity(), str(splits.spec), spec, profile)
        cached = None if force else _cached_row(folder, spec["name"])
        if cached is not None and compress and "compressed_bytes" not in cached:
            cached = None  # the model is not kept: build it again to compress with it
        if cached is not None and not compress:
            cached = {k: v for k, v in cached.items() if k not in COMPRESSED}
        if cached is not None:
            results.append(cached)
            if on_rung:
                on_rung(cached)
            continue
        builder = registry.KINDS[spec["kind"]].function("ladder")
        settings = {k: v for k, v in spec.items() if k not in ("name", "kind")}
        start = time.perf_counter()
        built = builder(spec["kind"], settings, splits, profile)
        train_seconds = time.perf_counter() - start
        start = time.perf_counter()
        m = metrics.evaluate(built.rung, test)
        row = {"rung": spec["name"], "kind": spec["kind"], **m.to_dict(), "size": built.size,
               "size_unit": built.size_unit, "train_seconds": train_seconds,
               "score_seconds": time.perf_counter() - start, "peak_rss_mb": _peak_rss_mb()}
        if not built.has_tokens:
            row["tokens"] = None
            row["token_perplexity"] = None
        row.pop("nll_nats")
        row["curve"] = built.curve
        row["train_curve"] = built.train_curve
        row["details"] = built.details
        if compress:
            row.update(compressed_size(built.rung, spec["kind"], test))
        write_json(folder / "result.json", row)
        row["cached"] = False
        results.append(row)
        if on_rung:
            on_rung(row)
    manifest = {
        "corpus": corpus.identity(), "split": str(splits.spec),
        "ladder": str(ladder_path) if ladder_path else DEFAULT_LADDER_NAME,
        "profile": profile, "only": list(only) or None, "compress": compress, "lmladder_version": __version__, "git_commit": git_commit(),
        "device": _device(), "torch": _torch_version(), "python": platform.python_version(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    return {"manifest": manifest, "results": results}


def markdown(report: dict[str, Any]) -> str:
    m = report["manifest"]
    packed = bool(m.get("compress"))
    lines = [f"Ladder on `{m['corpus']['name']}` (split {m['split']}, test set), lmladder {m['lmladder_version']}",
             "", "| rung | bits/char | bits/byte | word ppl | token ppl | size | train s | score s |"
             + (" file bytes | file bits/char | compress s | decompress s |" if packed else ""),
             "|---|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|---:|---:|" if packed else "")]
    for r in report["results"]:
        def f(v, d=3):
            return "-" if v is None else (f"{v:,.{d}f}" if isinstance(v, float) else f"{v:,}")
        lines.append(f"| {r['rung']} | {f(r['bits_per_char'])} | {f(r['bits_per_byte'])} | {f(r['word_perplexity'], 1)} "
                     f"| {f(r['token_perplexity'], 2)} | {f(r['size'])} | {f(r['train_seconds'], 2)} | {f(r['score_seconds'], 2)} |"
                     + (f" {f(r.get('compressed_bytes'))} | {f(r.get('compressed_bits_per_char'))} "
                        f"| {f(r.get('compress_seconds'), 2)} | {f(r.get('decompress_seconds'), 2)} |" if packed else ""))
    if packed:
        lines += ["", "File columns: the test split compressed as one file, by the rung itself (range coding with its "
                  "own probabilities, header included; decompressed and checked) or by gzip -9, bz2 -9, xz -9e alone."]
    return "\n".join(lines) + "\n"


def plot_ladder(report: dict[str, Any], path: Path) -> None:
    """Bits per character by rung (bars, bottom of the ladder at the top), compressors as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report["results"] if r["kind"] != "compressor"]
    refs = [r for r in report["results"] if r["kind"] == "compressor"]
    fig, ax = plt.subplots(figsize=(8, 0.45 * max(len(rows), 3) + 1.5))
    names = [r["rung"] for r in rows]
    values = [r["bits_per_char"] for r in rows]
    ax.barh(range(len(rows)), values, color="#4C72B0")
    for i, v in enumerate(values):
        ax.text(v, i, f" {v:.3f}", va="center", fontsize=8)
    for j, r in enumerate(refs):
        ax.axvline(r["bits_per_char"], color=f"C{j + 1}", linestyle="--", linewidth=1,
                   label=f"{r['rung']}: {r['bits_per_char']:.3f}")
    ax.set_yticks(range(len(rows)), names)
    ax.invert_yaxis()
    ax.set_xlabel("bits per character on the test split (lower is better)")
    m = report["manifest"]
    ax.set_title(f"lmladder on {m['corpus']['name']} (split {m['split']})")
    if refs:
        ax.legend(loc="lower right", fontsize=8, title="compressors", title_fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_curves(report: dict[str, Any], path: Path) -> bool:
    """Validation bits/char (solid, dots at each evaluation) and the training loss in bits/char
    (thin, every log interval) against training time, for the rungs that have them."""
    curves = [r for r in report["results"] if r.get("curve") or r.get("train_curve")]
    if not curves:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, row in enumerate(curves):
        color = f"C{i}"
        if row.get("train_curve"):
            t, v = zip(*row["train_curve"])
            ax.plot(t, v, color=color, linewidth=0.8, alpha=0.6, label=f"{row['rung']} train")
        if row.get("curve"):
            t, v = zip(*row["curve"])
            ax.plot(t, v, color=color, marker="o", linewidth=1.8, label=f"{row['rung']} val")
    ax.set_xlabel("training time (s)")
    ax.set_ylabel("bits per character")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def write_outputs(report: dict[str, Any], out: str | Path) -> None:
    import pyarrow as pa

    from lmladder import artifacts, schemas
    from lmladder.atomic import MARKER, atomic_dir, write_json, write_text

    with atomic_dir(out) as tmp:
        write_json(tmp / "results.json", report)
        write_text(tmp / "results.md", markdown(report))
        plot_ladder(report, tmp / "ladder.png")
        plot_curves(report, tmp / "curves.png")
        columns = [f.name for f in schemas.BENCH_RESULTS]
        table = pa.Table.from_pylist([{k: r.get(k) for k in columns} for r in report["results"]])
        schemas.write_table(table, tmp / "results.parquet", "bench_results",
                            {"corpus": report["manifest"]["corpus"]["name"], "split": report["manifest"]["split"]})
        write_json(tmp / "manifest.json", report["manifest"])
        write_json(tmp / MARKER, artifacts.header("lmladder-bench", manifest=report["manifest"]))


def load_baseline(path: str | Path) -> dict[str, Any]:
    import json

    try:
        baseline = json.loads(Path(path).read_text(encoding="utf-8"))
        if not all(isinstance(r["rung"], str) and 0 < float(r["bits_per_char"]) < float("inf")  # not NaN either
                   for r in baseline["results"]) or not baseline["manifest"]["corpus"]["sha256"]:
            raise ValueError(baseline["manifest"]["split"])
    except FileNotFoundError:
        raise LadderError(f"baseline {path} does not exist") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, UnicodeDecodeError):
        raise LadderError(f"baseline {path} is not an lmladder bench results.json (rungs named, bits/char > 0)") from None
    baseline["path"] = str(path)
    return baseline


def _same_data(baseline: dict[str, Any], corpus: dict[str, Any], split: str) -> None:
    m = baseline["manifest"]
    if m["corpus"]["sha256"] != corpus["sha256"] or m["split"] != split:
        raise LadderError(
            f"baseline {baseline['path']} is for corpus {m['corpus']['name']} (sha256 {m['corpus']['sha256'][:12]}) split "
            f"{m['split']}, not {corpus['name']} (sha256 {corpus['sha256'][:12]}) split {split}; compare like with like")


def check(report: dict[str, Any], baseline: dict[str, Any], tolerance: float) -> list[dict[str, Any]]:
    """Compare bits/char rung by rung with a baseline (marking regressions and missing rungs)."""
    _same_data(baseline, report["manifest"]["corpus"], report["manifest"]["split"])
    baseline_path, base_rows = baseline["path"], baseline["results"]
    now = {r["rung"]: r for r in report["results"]}
    rows, failed = [], False
    only = report["manifest"].get("only") or ()
    for b in base_rows:
        r = now.get(b["rung"])
        if r is None and only and not any(fnmatch.fnmatchcase(b["rung"], p) for p in only):
            rows.append({"rung": b["rung"], "baseline": b["bits_per_char"], "now": None, "change": None,
                         "status": "not run"})
            continue
        if r is None:
            rows.append({"rung": b["rung"], "baseline": b["bits_per_char"], "now": None, "change": None, "status": "missing"})
            failed = True
            continue
        change = (r["bits_per_char"] - b["bits_per_char"]) / b["bits_per_char"]
        worse = change > tolerance
        failed |= worse
        rows.append({"rung": b["rung"], "baseline": b["bits_per_char"], "now": r["bits_per_char"],
                     "change": change, "status": "WORSE" if worse else "ok"})
    for name in now:
        if name not in {b["rung"] for b in base_rows}:
            rows.append({"rung": name, "baseline": None, "now": now[name]["bits_per_char"], "change": None, "status": "new"})
    report["check"] = {"baseline": str(baseline_path), "tolerance": tolerance, "rows": rows, "passed": not failed}
    return rows
