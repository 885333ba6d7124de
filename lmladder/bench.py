"""The whole ladder on one corpus: every rung trained on the same train split and scored on
the same test split through lmladder.metrics, in one table.

A ladder file (TOML) lists `[[rung]]` tables, each with a `name`, a `kind` from RUNG_KINDS
and that kind's settings.
"""

from __future__ import annotations

import datetime as _dt
import platform
import resource
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from lmladder import __version__
from lmladder.errors import LadderError

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover
    import tomli as tomllib  # type: ignore[no-redef]

DEFAULT_LADDER = Path(__file__).resolve().parent.parent / "benchmarks" / "ladders" / "default.toml"


@dataclass
class Built:
    rung: Any  # has score(documents) -> UnitScores
    size: int | None
    size_unit: str | None
    has_tokens: bool = True


def _baseline(kind: str, settings: dict, splits, profile: str) -> Built:
    from lmladder import baselines

    rung = baselines.train(kind, splits.require("train"))
    return Built(rung, rung.parameters, "parameters")


def _compressor(kind: str, settings: dict, splits, profile: str) -> Built:
    from lmladder.compressors import CompressorRung

    return Built(CompressorRung(settings["method"], splits.require("train")), None, None, has_tokens=False)


# kind -> (builder, {setting: required?})
RUNG_KINDS: dict[str, tuple[Callable[..., Built], dict[str, bool]]] = {
    "uniform": (_baseline, {}),
    "unigram": (_baseline, {}),
    "compressor": (_compressor, {"method": True}),
}


def load_ladder(path: str | Path | None) -> list[dict[str, Any]]:
    """Read and check a ladder file: every problem is collected and reported at once."""
    path = Path(path) if path else DEFAULT_LADDER
    if not path.is_file():
        raise LadderError(f"ladder file {path} does not exist; see benchmarks/ladders/ for examples")
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise LadderError(f"ladder file {path} is not valid TOML: {exc}") from None
    rungs = data.get("rung")
    problems = []
    if not isinstance(rungs, list) or not rungs:
        raise LadderError(f"ladder file {path} has no [[rung]] tables")
    seen = set()
    for i, rung in enumerate(rungs, 1):
        name, kind = rung.get("name"), rung.get("kind")
        if not name:
            problems.append(f"rung {i} has no name")
        elif name in seen:
            problems.append(f"rung name {name!r} is used twice")
        seen.add(name)
        if kind not in RUNG_KINDS:
            problems.append(f"rung {name or i}: unknown kind {kind!r} (valid kinds: {', '.join(RUNG_KINDS)})")
            continue
        allowed = RUNG_KINDS[kind][1]
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


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def run(corpus_name: str, ladder_path: str | None = None, profile: str = "cpu", split: str | None = None,
        on_rung: Callable[[dict], None] | None = None, baseline: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build and score every rung. A `baseline` (see load_baseline) is checked against the
    corpus and split before any rung is trained."""
    from lmladder import corpora, metrics

    if profile not in ("cpu", "gpu"):
        raise LadderError(f"unknown --profile {profile!r}; choose cpu or gpu")
    rungs = load_ladder(ladder_path)
    corpus = corpora.load(corpus_name)
    splits = corpus.split(split)
    splits.require("train")
    test = splits.require("test")
    if baseline is not None:
        _same_data(baseline, corpus.identity(), str(splits.spec))
    results = []
    for spec in rungs:
        builder = RUNG_KINDS[spec["kind"]][0]
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
        results.append(row)
        if on_rung:
            on_rung(row)
    manifest = {
        "corpus": corpus.identity(), "split": str(splits.spec), "ladder": str(ladder_path or DEFAULT_LADDER),
        "profile": profile, "lmladder_version": __version__, "git_commit": _git_commit(),
        "device": platform.processor() or platform.machine(), "python": platform.python_version(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    return {"manifest": manifest, "results": results}


def markdown(report: dict[str, Any]) -> str:
    m = report["manifest"]
    lines = [f"Ladder on `{m['corpus']['name']}` (split {m['split']}, test set), lmladder {m['lmladder_version']}",
             "", "| rung | bits/char | bits/byte | word ppl | token ppl | size | train s | score s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report["results"]:
        def f(v, d=3):
            return "-" if v is None else (f"{v:,.{d}f}" if isinstance(v, float) else f"{v:,}")
        lines.append(f"| {r['rung']} | {f(r['bits_per_char'])} | {f(r['bits_per_byte'])} | {f(r['word_perplexity'], 1)} "
                     f"| {f(r['token_perplexity'], 2)} | {f(r['size'])} | {f(r['train_seconds'], 2)} | {f(r['score_seconds'], 2)} |")
    return "\n".join(lines) + "\n"


def write_outputs(report: dict[str, Any], out: str | Path) -> None:
    import pyarrow as pa

    from lmladder import artifacts, schemas
    from lmladder.atomic import MARKER, atomic_dir, write_json, write_text

    with atomic_dir(out) as tmp:
        write_json(tmp / "results.json", report)
        write_text(tmp / "results.md", markdown(report))
        table = pa.Table.from_pylist(report["results"])
        schemas.write_table(table, tmp / "results.parquet", "bench_results",
                            {"corpus": report["manifest"]["corpus"]["name"], "split": report["manifest"]["split"]})
        write_json(tmp / "manifest.json", report["manifest"])
        write_json(tmp / MARKER, artifacts.header("lmladder-bench", manifest=report["manifest"]))


def load_baseline(path: str | Path) -> dict[str, Any]:
    import json

    try:
        baseline = json.loads(Path(path).read_text(encoding="utf-8"))
        baseline["manifest"]["corpus"]["sha256"], baseline["manifest"]["split"]
        [(r["rung"], float(r["bits_per_char"])) for r in baseline["results"]]
    except FileNotFoundError:
        raise LadderError(f"baseline {path} does not exist") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, UnicodeDecodeError):
        raise LadderError(f"baseline {path} is not an lmladder bench results.json") from None
    baseline["path"] = str(path)
    return baseline


def _same_data(baseline: dict[str, Any], corpus: dict[str, Any], split: str) -> None:
    m = baseline["manifest"]
    if m["corpus"]["sha256"] != corpus["sha256"] or m["split"] != split:
        raise LadderError(
            f"baseline {baseline['path']} is for corpus {m['corpus']['name']} split {m['split']}, "
            f"not {corpus['name']} split {split}; compare like with like")


def check(report: dict[str, Any], baseline: dict[str, Any], tolerance: float) -> list[dict[str, Any]]:
    """Compare bits/char rung by rung with a baseline (marking regressions and missing rungs)."""
    _same_data(baseline, report["manifest"]["corpus"], report["manifest"]["split"])
    baseline_path, base_rows = baseline["path"], baseline["results"]
    now = {r["rung"]: r for r in report["results"]}
    rows, failed = [], False
    for b in base_rows:
        r = now.get(b["rung"])
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
