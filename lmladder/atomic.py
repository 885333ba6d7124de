"""Outputs are written under a temporary name and renamed, so nothing half-written is left."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from lmladder.errors import LadderError

MARKER = "lmladder.json"  # every folder lmladder writes carries one


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "wb") -> Iterator[Any]:
    """Open a temporary file beside `path`; on success fsync and rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it 0600; give it a new file's usual mode
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        _raise_write_error(exc, path)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_file(path, "w") as handle:
        handle.write(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def check_output_dir(path: str | os.PathLike, fmt: str | None = None, kind: str | None = None,
                     force: bool = False) -> Path:
    """Refuse an output folder lmladder must not write: one that exists and holds something
    lmladder did not write, the folder the user is in (or one above it), or a folder whose
    parent cannot be written. With `fmt` (what the command writes, e.g. "lmladder-model") and
    `kind`, an existing lmladder folder of another format or kind is refused whatever `force`
    says, and one of the same is replaced only with `force`. Checked before any long work."""
    given = Path(path)
    path = given.expanduser().resolve()
    here = Path.cwd().resolve()
    if path == here or path in here.parents:
        raise LadderError(f"--out {given} is the folder you are in (or one above it), which lmladder would replace; "
                          "name a new folder, e.g. --out runs/NAME")
    if path.exists():
        if not path.is_dir():
            raise LadderError(f"output {given} exists and is not a folder; choose another --out")
        if any(path.iterdir()):
            marker = path / MARKER
            if not marker.exists():
                raise LadderError(f"output folder {given} is not empty and was not written by lmladder; "
                                  "choose a new --out or empty it")
            if fmt is not None:
                _check_same_kind(given, marker, fmt, kind, force)
    _check_writable(path.parent if not path.exists() else path, given)
    return path


def _check_same_kind(given: Path, marker: Path, fmt: str, kind: str | None, force: bool) -> None:
    try:
        found = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        found = {}
    found = found if isinstance(found, dict) else {}
    what = lambda f, k: f"{f.removeprefix('lmladder-')}{f' ({k})' if k else ''}"  # noqa: E731
    if found.get("format") != fmt or (kind is not None and found.get("kind") != kind):
        raise LadderError(f"output folder {given} holds an lmladder {what(found.get('format') or '?', found.get('kind'))}, "
                          f"not a {what(fmt, kind)}; lmladder never replaces a folder of another kind: "
                          "choose another --out")
    if not force:
        raise LadderError(f"output folder {given} already holds an lmladder {what(fmt, kind)}; add --force to "
                          "replace it, or choose another --out")


def check_output_file(path: str | os.PathLike, force: bool = False) -> Path:
    """Refuse an output file that is a folder, exists (without `force`), or cannot be written:
    before any work, so bad input writes nothing."""
    given = Path(path)
    path = given.expanduser()
    if path.is_dir():
        raise LadderError(f"--out {given} is a folder; give a file name")
    if path.exists() and not force:
        raise LadderError(f"{given} already exists; add --force to replace it, or choose another --out")
    _check_writable(path.resolve().parent, given)
    return path


def _check_writable(folder: Path, given: Path) -> None:
    """Try to create a file where the output will go, so a read-only place fails now, not
    after the work."""
    existing = folder
    while not existing.exists():
        existing = existing.parent
    try:
        fd, probe = tempfile.mkstemp(prefix=".lmladder-probe.", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise LadderError(f"cannot write --out {given}: {exc.strerror} in {existing}; choose another --out") from None


@contextmanager
def locked(path: str | os.PathLike, wait: bool = False) -> Iterator[None]:
    """Hold an exclusive lock on the output `path` while writing it (a `.NAME.lock` file beside
    it, holding the owner's process id, removed when done), so two commands never write one
    folder at once: the second fails at once, or with `wait` waits for the first to finish.
    The folders above `path` that it makes for the lock are removed after it when they hold
    nothing, so a command that fails leaves no empty folders behind."""
    import fcntl

    path = Path(path).expanduser().resolve()
    made = path.parent  # the highest folder above path that is not there yet, or None
    while not made.parent.exists():
        made = made.parent
    made = None if made.exists() else made
    lock = path.with_name(f".{path.name}.lock")
    while True:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            handle = open(lock, "a+")
        except FileNotFoundError:  # another command's clean-up took an empty folder just made: again
            continue
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                handle.seek(0)
                owner = handle.read().strip() or "?"
                handle.close()
                raise LadderError(f"{path} is being written by another lmladder (process {owner}); wait for it "
                                  "to finish or choose another --out") from None
            fcntl.flock(handle, fcntl.LOCK_EX)  # until the holder is done
        try:
            same = os.fstat(handle.fileno()).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        handle.close()  # the holder before us removed the file we locked: lock the new one
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        lock.unlink(missing_ok=True)  # while still holding it, so nobody else is inside
        handle.close()
        folder = path.parent
        while made is not None and folder != made.parent:
            try:
                folder.rmdir()  # only an empty folder
            except OSError:
                break
            folder = folder.parent


def _usual_modes(folder: Path) -> None:
    """Give `folder` and everything in it a new folder's and file's usual modes (0755 and 0644
    under umask 022): mkdtemp makes the folder 0700, and a writer that renames a temporary file
    into place (safetensors) leaves the file 0600."""
    mask = _umask()
    for root, _, files in os.walk(folder):
        os.chmod(root, 0o777 & ~mask)
        for name in files:
            os.chmod(os.path.join(root, name), 0o666 & ~mask)


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Build a folder under a temporary name beside `path`, then swap it into place.

    The caller writes everything (including `lmladder.json`) into the yielded folder. An
    existing lmladder folder at `path` is replaced only once the new one is complete.
    """
    path = check_output_dir(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        _usual_modes(tmp)
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        _raise_write_error(exc, path)
        raise


def _raise_write_error(exc: BaseException, path: Path) -> None:
    """A full disk, a read-only place or a missing permission is the user's to fix: one error
    line (what was being written was removed, nothing half-written is left)."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM):
        raise LadderError(f"could not write {path}: {exc.strerror}; free some space or choose another place "
                          "(nothing was left half-written)") from None
