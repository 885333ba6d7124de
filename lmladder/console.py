"""Where output goes: results to stdout, progress and logs to stderr (rich).

Progress: a bar on a terminal; plain lines where stderr is a file or a pipe (CI, nohup, a log),
for the commands that print them (training); nothing at all with LMLADDER_NO_PROGRESS=1."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Any, Iterator

_made: dict[str, Any] = {}


def __getattr__(name: str) -> Any:
    """`stderr` (stderr_console()), made on first use."""
    if name != "stderr":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return stderr_console()


def stderr_console() -> Any:
    """The rich Console on stderr, made on first use (rich takes ~20 ms to import, which a
    command that logs nothing, such as `lmladder score`, should not pay)."""
    if "stderr" not in _made:
        from rich.console import Console

        # into a file or a pipe a log line stays one line (rich would wrap it at 80 columns there)
        _made["stderr"] = Console(stderr=True, highlight=False, soft_wrap=not sys.stderr.isatty())
    return _made["stderr"]


def log(message: str) -> None:
    """A log line on stderr (never on stdout, which carries results)."""
    stderr_console().print(message)


def progress_enabled() -> bool:
    """A progress bar: on a terminal, unless LMLADDER_NO_PROGRESS=1."""
    return progress_style() == "bar"


def progress_style() -> str:
    """How progress shows: bar (stderr is a terminal), lines (a file or a pipe: plain lines, for
    the commands that print them) or none (LMLADDER_NO_PROGRESS=1)."""
    if os.environ.get("LMLADDER_NO_PROGRESS", "") not in ("", "0"):
        return "none"
    return "bar" if sys.stderr.isatty() else "lines"


@contextmanager
def progress(kind: str = "count") -> Iterator[Any]:
    """A rich progress bar on stderr; `kind` is "count" (items) or "bytes" (transfers)."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = [TextColumn("[bold]{task.description}"), BarColumn()]
    if kind == "bytes":
        columns += [DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn()]
    else:
        columns += [MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=stderr_console(), transient=True, disable=not progress_enabled()) as bar:
        yield bar
