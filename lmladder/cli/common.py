"""Small helpers the command modules share (output, JSON)."""

from __future__ import annotations

import json
import math
import sys
from typing import Any

import typer

JSON_OPTION = typer.Option(False, "--json", help="Print machine-readable JSON on stdout.")


def utf8_problem(value: str | None, what: str) -> str | None:
    """What is wrong with text given on the command line: bytes that are not UTF-8 (Python keeps
    them as lone surrogates, which no model, tokenizer or terminal can take); None if nothing."""
    try:
        (value or "").encode("utf-8")
    except UnicodeEncodeError:
        return f"{what} holds bytes that are not UTF-8 text (the terminal's or the shell's encoding is not UTF-8?); " \
               "give it in UTF-8, or in a UTF-8 file"
    return None


def _clean(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(_clean(obj), indent=2, ensure_ascii=False) + "\n")


def report(result: Any, json: bool, message: str) -> None:
    """A command's result: the JSON document with --json, else one line for a person."""
    if json:
        emit_json(result)
    else:
        typer.echo(message)


def stdout_console():
    """Rich output on stdout; when stdout is not a terminal (a pipe, a file, CI) tables get 140
    columns instead of rich's 80, so wide tables stay readable in logs."""
    from rich.console import Console

    return Console(highlight=False, width=None if sys.stdout.isatty() else 140)


def fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) >= 1e6:
            return f"{value:.3e}"
        return f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
