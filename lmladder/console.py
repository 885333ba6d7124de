"""Where output goes: results to stdout, progress and logs to stderr (rich).

Progress: a bar on a terminal; plain lines where stderr is a file or a pipe (CI, nohup, a log),
for the commands that print them (training); nothing at all with LMLADDER_NO_PROGRESS=1."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
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

# into a file or a pipe a log line stays one line (rich would wrap it at 80 columns there)
stderr = Console(stderr=True, highlight=False, soft_wrap=not sys.stderr.isatty())


def log(message: str) -> None:
    """A log line on stderr (never on stdout, which carries results)."""
    stderr.print(message)


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
def progress(kind: str = "count") -> Iterator[Progress]:
    """A rich progress bar on stderr; `kind` is "count" (items) or "bytes" (transfers)."""
    columns = [TextColumn("[bold]{task.description}"), BarColumn()]
    if kind == "bytes":
        columns += [DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn()]
    else:
        columns += [MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=stderr, transient=True, disable=not progress_enabled()) as bar:
        yield bar
