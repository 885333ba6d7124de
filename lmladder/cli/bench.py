"""`lmladder bench CORPUS`: the whole ladder in one comparable table."""

from __future__ import annotations

import math
from typing import List, Optional

import typer

from lmladder.cli.common import JSON_OPTION, emit_json, fmt, stdout_console


def bench(
    corpus: str = typer.Argument("tinyshakespeare", help="A registered corpus name, or a .txt file or folder."),
    ladder: Optional[str] = typer.Option(None, "--ladder", help="Ladder file (default: lmladder/data/default-ladder.toml, the whole ladder)."),
    profile: str = typer.Option("cpu", "--profile", help="cpu or gpu: how big the neural rungs are."),
    split: Optional[str] = typer.Option(None, "--split", help="TRAIN,VAL,TEST fractions (default: the corpus's)."),
    out: Optional[str] = typer.Option(None, "--out", help="Write results.json, results.md, results.parquet and a manifest here."),
    check: Optional[str] = typer.Option(None, "--check", help="A baseline results.json: exit 1 if any rung is worse."),
    tolerance: Optional[float] = typer.Option(None, "--tolerance", help="Relative bits/char worsening allowed by "
                                              "--check (default 0.01, i.e. 1%)."),
    force: bool = typer.Option(False, "--force", help="Retrain every rung instead of reusing cached results, and "
                               "replace bench results already in --out (never a folder of another kind)."),
    only: Optional[List[str]] = typer.Option(
        None, "--only", help="Run only the rungs whose names match this shell-style pattern (repeatable), "
                             "e.g. --only 'letter*' --only unigram."),
    compress: bool = typer.Option(False, "--compress", help="Also compress the test split with every rung (its own "
                                  "probabilities through a range coder; gzip, bz2, xz alone for the compressor rungs), "
                                  "decompress it and report the file's size. Costs about the scoring time again."),
    json: bool = JSON_OPTION,
) -> None:
    """Train every rung of a ladder on the train split and score all of them on the test split."""
    from lmladder import bench as lib
    from lmladder.atomic import check_output_dir
    from lmladder.console import log
    from lmladder.errors import GateFailure, LadderError

    if tolerance is not None and check is None:
        raise LadderError("--tolerance only applies to --check (the regression gate); give --check BASELINE.json "
                          "or leave --tolerance out")
    if tolerance is not None and not (math.isfinite(tolerance) and tolerance >= 0):
        raise LadderError(f"--tolerance must be a finite fraction >= 0, e.g. 0.01 for 1% (got {tolerance:g})")
    tolerance = 0.01 if tolerance is None else tolerance
    if out:
        check_output_dir(out, "lmladder-bench", None, force)
    baseline = lib.load_baseline(check) if check else None
    report = lib.run(corpus, ladder, profile, split, baseline=baseline, force=force, only=only or (), compress=compress,
                     on_rung=lambda r: log(f"{r['rung']}: {r['bits_per_char']:.4f} bits/char "
                                           f"({r['train_seconds']:.1f} s train, {r['score_seconds']:.1f} s score"
                                           f"{', cached' if r.get('cached') else ''})"
                                           f"{_file_note(r)}"
                                           f"{' ' + str(r['details']) if r.get('details') else ''}"))
    rows = lib.check(report, baseline, tolerance) if baseline else None
    if out:
        lib.write_outputs(report, out)
    if json:
        emit_json(report)
    else:
        from rich.table import Table

        m = report["manifest"]
        table = Table(title=f"ladder on {m['corpus']['name']} (test split of {m['split']})")
        files = ("file bytes", "file bits/char") if compress else ()
        for col in ("rung", "bits/char", "bits/byte", "word ppl", "token ppl", "size", "train s", "score s", *files):
            table.add_column(col, justify="left" if col == "rung" else "right")
        for r in report["results"]:
            extra = (fmt(r.get("compressed_bytes")), fmt(r.get("compressed_bits_per_char"))) if compress else ()
            table.add_row(r["rung"], fmt(r["bits_per_char"]), fmt(r["bits_per_byte"]), fmt(r["word_perplexity"], 1),
                          fmt(r["token_perplexity"], 2), fmt(r["size"]), fmt(r["train_seconds"], 2),
                          fmt(r["score_seconds"], 2), *extra)
        console = stdout_console()
        console.print(table)
        if rows is not None:
            gate = Table(title=f"check against {check} (tolerance {tolerance:.1%})")
            for col in ("rung", "baseline", "now", "change", "status"):
                gate.add_column(col)
            for r in rows:
                gate.add_row(r["rung"], fmt(r["baseline"]), fmt(r["now"]),
                             "-" if r["change"] is None else f"{r['change']:+.2%}", r["status"])
            console.print(gate)
    if rows is not None and not report["check"]["passed"]:
        bad = [r["rung"] for r in rows if r["status"] in ("WORSE", "missing")]
        raise GateFailure(f"bits/char regressed or went missing for: {', '.join(bad)}")


def _file_note(row: dict) -> str:
    if "compressed_bytes" not in row:
        return ""
    return (f"; test split as a file: {row['compressed_bytes']:,} bytes, {row['compressed_bits_per_char']:.4f} bits/char "
            f"({row['compress_seconds']:.1f} s compress, {row['decompress_seconds']:.1f} s decompress)")
