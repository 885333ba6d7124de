"""Where output goes: results to stdout, progress and logs to stderr (rich)."""

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

stderr = Console(stderr=True, highlight=False)


def log(message: str) -> None:
    """A log line on stderr (never on stdout, which carries results)."""
    stderr.print(message)


def progress_enabled() -> bool:
    return os.environ.get("LMLADDER_NO_PROGRESS", "") in ("", "0") and sys.stderr.isatty()


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
