"""`lmladder compress RUN FILE` and `lmladder decompress FILE.llz`: a rung as a lossless
compressor (lmladder.compress), its bits per character as a real file size."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from lmladder.cli.common import JSON_OPTION, report
from lmladder.errors import LadderError

FORCE = typer.Option(False, "--force", help="Replace the output file if it exists.")


def _check_output(out: Path, given: str, force: bool, source: Path) -> None:
    """Refuse an output that would replace the input, or that check_output_file refuses:
    before any work, so nothing is written on bad input."""
    from lmladder.atomic import check_output_file

    if out.resolve() == source.resolve():
        raise LadderError(f"--out {given} is the input file; choose another --out")
    check_output_file(given, force)


def _write(out: Path, data: bytes) -> None:
    from lmladder.atomic import atomic_file

    with atomic_file(out) as handle:
        handle.write(data)


def compress(
    run: str = typer.Argument(..., help="A model folder written by lmladder (any rung kind)."),
    file: str = typer.Argument(..., help="The UTF-8 text file to compress."),
    out: Optional[str] = typer.Option(None, "--out", help="The compressed file (default: FILE.llz)."),
    block: Optional[int] = typer.Option(None, "--block", help="Units (characters, words or tokens) per block; blocks "
                                        "are decoded side by side. Default: 4,096 letters, 1,024 words, 8,192 tokens "
                                        "(each block start costs a few bits: ~0.2% at these lengths)."),
    device: str = typer.Option("auto", "--device", help="Neural rungs: auto (the run's own), cpu, cuda or cuda:N; "
                               "the file then decompresses only on the same kind of device."),
    threads: Optional[int] = typer.Option(None, "--threads", help="Neural rungs on a CPU: torch threads (default 1, at most "
                                          "4 x the usable cores); "
                                          "recorded, and used again to decompress."),
    force: bool = FORCE,
    json: bool = JSON_OPTION,
) -> None:
    """Compress a text file with a rung's own next-unit probabilities (range coding)."""
    from lmladder import compress as lib
    from lmladder import registry
    from lmladder.textio import decode_utf8, read_bytes

    if block is not None and block < 1:
        raise LadderError(f"--block must be at least 1 (got {block})")
    lib.check_threads(threads)
    source = Path(file)
    raw = read_bytes(source, file)
    text = decode_utf8(raw, str(source))
    target = Path(out) if out else source.with_name(source.name + lib.SUFFIX)
    _check_output(target, out or str(target), force, source)
    rung = registry.load_model(run)
    chosen = None
    if device != "auto":
        from lmladder.neural import pick_device

        chosen = pick_device(device)
    start = time.perf_counter()
    data = lib.compress(rung, text, run=str(Path(run).resolve()), block=block, device=chosen, threads=threads)
    seconds = time.perf_counter() - start
    _write(target, data)
    result = {"run": run, "file": file, "out": str(target), "chars": len(text), "bytes": len(raw),
              "compressed_bytes": len(data), "bits_per_char": 8 * len(data) / len(text) if text else None,
              "seconds": seconds}
    rate = f", {8 * len(data) / len(text):.4f} bits/char" if text else ""
    report(result, json, f"{file}: {len(raw):,} bytes -> {target} {len(data):,} bytes{rate} ({seconds:.2f} s)")


def decompress(
    file: str = typer.Argument(..., help="A .llz file made by `lmladder compress`."),
    out: Optional[str] = typer.Option(None, "--out", help="The text file (default: FILE without .llz)."),
    run: Optional[str] = typer.Option(None, "--run", help="The model folder it was compressed with (default: the "
                                      "path recorded in the file). Another run is refused."),
    force: bool = FORCE,
    json: bool = JSON_OPTION,
) -> None:
    """Give back the exact text of a .llz file, with the run that compressed it."""
    from lmladder import compress as lib
    from lmladder import registry
    from lmladder.atomic import MARKER
    from lmladder.textio import read_bytes

    source = Path(file)
    data = read_bytes(source, file, text=False)
    header, _ = lib.read(data, str(source))
    if out:
        target = Path(out)
    elif source.name.endswith(lib.SUFFIX) and len(source.name) > len(lib.SUFFIX):
        target = source.with_name(source.name[: -len(lib.SUFFIX)])
    else:
        raise LadderError(f"{file} does not end in {lib.SUFFIX}; name the output with --out")
    _check_output(target, out or str(target), force, source)
    folder = run or header["run"].get("path")
    if not folder:
        raise LadderError(f"{file} does not record where its run is; give it with --run")
    if run is None and not (Path(folder) / MARKER).is_file():
        raise LadderError(f"{file} was compressed with the run at {folder}, which is not there now; "
                          "give it with --run")
    rung = registry.load_model(folder)
    start = time.perf_counter()
    text = lib.decompress(data, rung, source=str(source), run=folder)
    seconds = time.perf_counter() - start
    raw = text.encode("utf-8")
    _write(target, raw)
    result = {"file": file, "run": folder, "out": str(target), "chars": len(text), "bytes": len(raw),
              "compressed_bytes": len(data), "seconds": seconds}
    report(result, json, f"{file}: {len(data):,} bytes -> {target} {len(raw):,} bytes ({seconds:.2f} s)")
