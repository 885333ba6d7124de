"""Where lmladder keeps things: downloaded corpora and caches under $LMLADDER_HOME, and its own
data files (the corpus registry, the default ladder) inside the package, so an installed
lmladder, run from any folder, has them."""

from __future__ import annotations

import os
from pathlib import Path

from lmladder.errors import LadderError

DATA = Path(__file__).resolve().parent / "data"


def home() -> Path:
    """$LMLADDER_HOME, or ~/.cache/lmladder; read at call time so tests can point it elsewhere.
    A home that is not a folder lmladder can write to (or create) is refused here, in one line."""
    value = os.environ.get("LMLADDER_HOME")
    path = Path(value).expanduser() if value else Path.home() / ".cache" / "lmladder"
    _check_home(path, "LMLADDER_HOME " if value else "the home folder (LMLADDER_HOME unset) ")
    return path


def _check_home(path: Path, what: str) -> None:
    fix = "set LMLADDER_HOME to a folder you can write to"
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise LadderError(f"{what}{path} is not writable; {fix}")
        return
    if path.exists():
        raise LadderError(f"{what}{path} is a file, not a folder; {fix}")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise LadderError(f"{what}{path} cannot be created: {parent} is a file, not a folder; {fix}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise LadderError(f"{what}{path} cannot be created: {parent} is not writable; {fix}")


def corpora_dir() -> Path:
    return home() / "corpora"


def cache_dir(*parts: str) -> Path:
    return home().joinpath("cache", *parts)


def mirror() -> Path | None:
    value = os.environ.get("LMLADDER_MIRROR")
    return Path(value).expanduser() if value else None


def offline() -> bool:
    return os.environ.get("LMLADDER_OFFLINE", "") not in ("", "0")
