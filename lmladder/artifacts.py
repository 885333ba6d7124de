"""Self-describing folders: every folder lmladder writes carries `lmladder.json`.

    {"format": "lmladder-model", "format_version": 1, "kind": "unigram", ...}

`format` says what the folder is (a model, n-gram counts, a tokenizer, a bench run);
`format_version` changes when the layout does, and a folder of another version is refused
with a clear error rather than misread. Models are loaded by kind through lmladder.registry.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lmladder import __version__
from lmladder.atomic import MARKER
from lmladder.errors import LadderError

FORMAT_VERSION = 1

def header(fmt: str, **fields: Any) -> dict[str, Any]:
    return {"format": fmt, "format_version": FORMAT_VERSION, "lmladder_version": __version__, **fields}


def read_header(folder: str | Path, fmt: str, what: str = "model") -> dict[str, Any]:
    folder = Path(folder)
    if not folder.is_dir():
        raise LadderError(f"{folder} is not a folder; give a {what} folder written by lmladder")
    marker = folder / MARKER
    if not marker.is_file():
        raise LadderError(f"{folder} is not an lmladder {what} (no {MARKER} in it)")
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise LadderError(f"{marker} is corrupt (not JSON); rebuild the {what}") from None
    if not isinstance(data, dict) or data.get("format") != fmt:
        found = data.get("format") if isinstance(data, dict) else None
        raise LadderError(f"{folder} is not an lmladder {what} (it is {found or 'something else'})")
    if data.get("format_version") != FORMAT_VERSION:
        raise LadderError(
            f"{folder} was written by lmladder {data.get('lmladder_version', '?')} in format version "
            f"{data.get('format_version')}; this lmladder {__version__} reads version {FORMAT_VERSION}: rebuild it"
        )
    return data
