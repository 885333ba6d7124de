"""Where lmladder keeps things: downloaded corpora and caches under $LMLADDER_HOME, and its own
data files (the corpus registry, the default ladder) inside the package, so an installed
lmladder, run from any folder, has them."""

from __future__ import annotations

import os
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"


def home() -> Path:
    """$LMLADDER_HOME, or ~/.cache/lmladder; read at call time so tests can point it elsewhere."""
    value = os.environ.get("LMLADDER_HOME")
    return Path(value).expanduser() if value else Path.home() / ".cache" / "lmladder"


def corpora_dir() -> Path:
    return home() / "corpora"


def cache_dir(*parts: str) -> Path:
    return home().joinpath("cache", *parts)


def mirror() -> Path | None:
    value = os.environ.get("LMLADDER_MIRROR")
    return Path(value).expanduser() if value else None


def offline() -> bool:
    return os.environ.get("LMLADDER_OFFLINE", "") not in ("", "0")
