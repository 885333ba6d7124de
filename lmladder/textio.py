"""Reading text files: UTF-8 only, and every way a file can be unusable is a clear error."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from lmladder.errors import LadderError

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover
    import tomli as tomllib  # type: ignore[no-redef]


FIRST_BLOCK = 1 << 16  # read and checked for binary data before the rest of a file is read


def refuse_binary(data: bytes, source: str) -> None:
    nul = data.find(b"\x00")
    if nul >= 0:
        raise LadderError(
            f"{source} looks binary (NUL byte at offset {nul}); lmladder reads UTF-8 text files only"
        )


def decode_utf8(data: bytes, source: str) -> str:
    """Decode bytes as UTF-8, refusing binary data (NUL bytes) and invalid sequences."""
    refuse_binary(data, source)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise LadderError(
            f"{source} is not valid UTF-8 (byte offset {exc.start}, line {line}: {exc.reason}); "
            "convert it first, e.g. iconv -f latin1 -t utf-8"
        ) from None


def read_bytes(path: str | Path, name: str | None = None, text: bool = True) -> bytes:
    """A file's bytes, called `name` (default: its path) in errors. Only a regular file or a pipe
    is read (a device such as /dev/zero never ends); a text file (`text`) with a NUL byte in its
    first block is refused before the rest is read."""
    path = Path(path)
    name = name or str(path)
    if not path.exists():
        raise LadderError(f"{name} does not exist; check the path")
    if path.is_dir():
        raise LadderError(f"{name} is a folder, not a file")
    if not (path.is_file() or path.is_fifo()):  # a pipe ends; a device such as /dev/zero need not
        raise LadderError(f"{name} is not a regular file (a device or socket); save it to a file and give that")
    try:
        with open(path, "rb") as handle:
            head = handle.read(FIRST_BLOCK)
            if text:
                refuse_binary(head, name)
            return head + handle.read()
    except OSError as exc:
        raise LadderError(f"cannot read {name}: {exc.strerror}") from None


def read_text(path: str | Path) -> str:
    """A non-empty UTF-8 text file's contents, exactly (no newline or BOM translation)."""
    data = read_bytes(path)
    if not data:
        raise LadderError(f"{path} is empty; give a file with some text in it")
    return decode_utf8(data, str(path))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_toml(path: str | Path, what: str) -> dict[str, Any]:
    """A TOML file's tables; a missing or malformed file is a LadderError naming `what` it is."""
    path = Path(path)
    if not path.is_file():
        raise LadderError(f"{what} {path} does not exist")
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise LadderError(f"{what} {path} is not valid TOML: {exc}") from None
