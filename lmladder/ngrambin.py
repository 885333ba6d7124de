"""The n-gram model's binary form: one file per model part, memory-mapped when loaded (nothing
is parsed or copied), queried with vectorised numpy lookups. The Parquet tables beside it stay
the readable, exchangeable form; this is the fast one (lmladder.ngramio writes both).

The tables form a trie, as in Heafield (2011), "KenLM: Faster and Smaller Language Model
Queries": the n-grams of order n are sorted by (context row in order n-1, last unit), so the
children of a context are one run of rows, found from the context's row by `start{n}`:

    ngram.bin (spelling-ngram.bin: a word model's speller)
      magic "LMLNGBIN", u32 format version, u32 length L of the directory, then L bytes of JSON:
        {"V", "order", "units": [the unit strings], "bytes": size of the whole file,
         "arrays": {name: [dtype, offset, count]}, "columns": {name: "f64" | "dict" | "const"}}
      then each array, little-endian, at an offset that is a multiple of 64:
        start{n}   n = 2..N  (rows of order n-1) + 1 entries, uint32: the children of context
                   row c of order n-1 are rows start{n}[c] .. start{n}[c+1] - 1 of order n
        words{n}   n = 2..N  the last unit of each n-gram, uint8 / uint16 / uint32 as V needs
        logp{n}    n = 1..N  ln p (kn) or the raw count (addk, mle); float64, or uint8/uint16
                   codes into logp{n}.values (a column with few distinct values), or one value
        backoff{n} n = 1..N-1 likewise: ln backoff (kn) or the context's total count
        rank{n}    for some orders (rank_orders): W = ceil(V / 64) uint64 words per context row of
                   order n-1, bit u set when (context, u) is an n-gram: its row is start{n}[c] +
                   cum{n}[c*W + u//64] + the set bits below u in word u//64, one gather and a
                   popcount instead of a binary search
        cum{n}     uint8/uint16, per word: the set bits of the context's words before it

Order 1's rows are the unit ids, so it has no words. The values are the float64s of the Parquet
tables, so scores are bit-identical to theirs. Bytes per n-gram (a letter 8-gram): 1 for the
unit, 8 for ln p, 2 for the backoff's code and 4 for the children's start, about 12 in all; the
bitmaps, 9 W bytes per context, go to the lowest orders that are not looked up in a dense table,
as far as a third of the rest's bytes allows (gutenberg-en's letter 8-gram: orders 4 to 6, 15 MB
on 126 MB, each lookup of those orders 1.5 to 2.4 times faster than the binary search). The
lookups themselves are lmladder.ngramtrie's.

The folder's lmladder.json records each file's size and CRC-32; loading checks the magic, the
version, the directory and the size, and the CRC-32 over the whole file (a few tens of ms for a
large model; `lmladder score` computes it in a thread while it scores, checked_later; a file
checked before and unchanged since is not read again, RECENT_NS), so a truncated, corrupt or
foreign binary is refused with a LadderError.
"""

from __future__ import annotations

import json
import mmap
import struct
import threading
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from lmladder.atomic import atomic_file
from lmladder.errors import LadderError
from lmladder.ngramtrie import Column, MappedTable, children_bitmaps, rank_orders, uint_for

MAGIC = b"LMLNGBIN"
VERSION = 1
ALIGN = 64
DICT_MAX = 1 << 16
RANK_SHARE = 1 / 3  # the children bitmaps may add at most this share to the file (ngramtrie.rank_orders)


def file_name(prefix: str = "") -> str:
    return f"{prefix}ngram.bin"


# --- writing -------------------------------------------------------------------------------


def _column(name: str, values: np.ndarray) -> tuple[str, dict[str, np.ndarray]]:
    """A float64 column as stored: one value, codes into its distinct values, or as it is."""
    values = np.ascontiguousarray(values, dtype=np.float64)
    if len(values) and np.all(values.view(np.uint64) == values[:1].view(np.uint64)):
        return "const", {f"{name}.values": values[:1]}
    sample = values[:: max(1, len(values) // 65536)]
    if len(values) > 16 and len(np.unique(sample.view(np.uint64))) <= DICT_MAX // 2:
        # distinct bit patterns (so -0.0 and NaN keep theirs), sorted
        distinct = np.unique(values.view(np.uint64))  # (a sort and a search: twice as fast as return_inverse)
        codes = np.searchsorted(distinct, values.view(np.uint64))
        if len(distinct) <= DICT_MAX:
            return "dict", {name: codes.astype(uint_for(len(distinct) - 1)), f"{name}.values": distinct.view(np.float64)}
    return "f64", {name: values}


def arrays(model) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The arrays (name -> array) and value columns' encodings of a model's binary form."""
    V, N = model.V, model.order
    out: dict[str, np.ndarray] = {}
    columns: dict[str, str] = {}
    first = model.tables[0]
    if first.rows != V or not np.array_equal(first.keys, np.arange(V, dtype=np.uint64)):
        raise RuntimeError("order 1 of an n-gram model must hold every unit, in id order")
    for n, t in enumerate(model.tables, 1):
        if n >= 2:
            keys = np.asarray(t.keys)
            ctx = keys // np.uint64(V)
            lower = model.tables[n - 2].rows
            start = np.zeros(lower + 1, dtype=np.int64)  # each context's first child: counted, not searched
            np.cumsum(np.bincount(ctx.astype(np.int64), minlength=lower), out=start[1:])
            out[f"start{n}"] = start.astype(uint_for(t.rows))
            out[f"words{n}"] = (keys - ctx * np.uint64(V)).astype(uint_for(V - 1))
        for name, values in ((f"logp{n}", t.logp), (f"backoff{n}", t.backoff)):
            if name.startswith("backoff") and n == N:
                continue  # the longest n-grams are never contexts
            columns[name], parts = _column(name, values)
            out.update(parts)
    budget = RANK_SHARE * sum(a.nbytes for a in out.values())
    for n in rank_orders(V, [t.rows for t in model.tables], budget):
        out[f"rank{n}"], out[f"cum{n}"] = children_bitmaps(out[f"start{n}"], out[f"words{n}"], V)
    return out, columns


def write(model, path: str | Path) -> dict[str, Any]:
    """Write `model`'s binary form to `path` atomically; what the folder's lmladder.json
    records of it (file name, bytes, CRC-32)."""
    path = Path(path)
    data, columns = arrays(model)
    directory: dict[str, Any] = {"V": model.V, "order": model.order, "units": model.units,
                                 "columns": columns, "arrays": {}, "bytes": 0}
    # offsets depend on the directory's length, which depends on the offsets: fix the width
    for _ in range(3):
        head = _head(directory)
        at = _align(len(head))
        for name, a in data.items():
            directory["arrays"][name] = [a.dtype.str, at, int(a.size)]
            at = _align(at + a.nbytes)
        directory["bytes"] = at
    head = _head(directory)
    if _align(len(head)) != min(off for _, off, _ in directory["arrays"].values()):
        raise RuntimeError("the binary's directory did not settle")
    crc = 0
    with atomic_file(path, "wb") as handle:
        for chunk in _pieces(head, directory, data):
            handle.write(chunk)
            crc = zlib.crc32(chunk, crc)
    return {"file": path.name, "bytes": directory["bytes"], "crc32": crc}


def _head(directory: dict[str, Any]) -> bytes:
    text = json.dumps(directory, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    text += b" " * (16 - len(text) % 16)  # slack, so the directory's length rarely moves an offset
    return MAGIC + struct.pack("<II", VERSION, len(text)) + text


def _align(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def _pieces(head: bytes, directory: dict[str, Any], data: dict[str, np.ndarray]):
    at = len(head)
    yield head
    for name, a in data.items():
        offset = directory["arrays"][name][1]
        yield b"\0" * (offset - at)
        raw = np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<"), copy=False)
        yield memoryview(raw).cast("B")
        at = offset + a.nbytes
    yield b"\0" * (directory["bytes"] - at)


# --- reading -------------------------------------------------------------------------------


def load(path: str | Path, record: Any, order: int) -> tuple[list[str], list[MappedTable], mmap.mmap]:
    """The units, tables and mapping of the binary at `path`, which the folder's lmladder.json
    describes as `record` (what `write` returned) and as a model of `order`; a damaged or
    mismatched file is a LadderError."""
    path = Path(path)
    if not isinstance(record, dict) or not {"bytes", "crc32"} <= record.keys():
        raise LadderError(f"{path.parent / 'lmladder.json'} describes {path.name} badly; rebuild the model")
    _check_size(path, record)
    if _checked_before(path, record["crc32"]):
        return _mapped(path, order)
    if _later is None:
        identity = _identity(path)
        if _crc32(path) != record["crc32"]:
            raise LadderError(_corrupt(path))
        _remember(path, identity, record["crc32"])
        return _mapped(path, order)
    check = _Check(path, record["crc32"])  # (checked_later: in a thread, beside the scoring)
    _later.append(check)
    try:
        return _mapped(path, order)
    except LadderError:
        check.confirm()  # a file damaged in its head is said to be corrupt, as without the thread
        raise


def _mapped(path: Path, order: int) -> tuple[list[str], list[MappedTable], mmap.mmap]:
    with open(path, "rb") as handle:
        mm = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    if len(mm) < len(MAGIC) + 8 or mm[:len(MAGIC)] != MAGIC:
        raise LadderError(f"{path} is not an lmladder n-gram binary; rebuild the model")
    version, length = struct.unpack_from("<II", mm, len(MAGIC))
    if version != VERSION:
        raise LadderError(f"{path} is n-gram binary version {version}; this lmladder reads version {VERSION}: "
                          "rebuild the model")
    try:
        directory = json.loads(mm[len(MAGIC) + 8:len(MAGIC) + 8 + length])
        tables = _tables(np.frombuffer(mm, dtype=np.uint8), directory)
    except (ValueError, KeyError, TypeError, IndexError):
        raise LadderError(f"{path} has a damaged directory; rebuild the model") from None
    if len(tables) != order or directory.get("bytes") != len(mm):
        raise LadderError(f"{path} holds a {len(tables)}-gram model but lmladder.json describes a {order}-gram: "
                          "it is from another model; rebuild the model")
    return directory["units"], tables, mm


def _corrupt(path: Path) -> str:
    return f"{path} is corrupt (its CRC-32 is not the one lmladder.json records); rebuild the model"


class _Check(threading.Thread):
    """A binary's CRC-32, computed in a thread (zlib releases the GIL on large buffers)."""

    def __init__(self, path: Path, expected: int):
        super().__init__(daemon=True)
        self.path, self.expected, self.crc, self.failure = path, expected, None, None
        self.identity = _identity(path)
        self.start()

    def run(self) -> None:
        try:
            self.crc = _crc32(self.path)
        except OSError as exc:
            self.failure = exc

    def confirm(self) -> None:
        self.join()
        if self.failure is not None:
            raise LadderError(f"could not read {self.path} again to check it: {self.failure}")
        if self.crc != self.expected:
            raise LadderError(_corrupt(self.path))
        _remember(self.path, self.identity, self.crc)


_later: list[_Check] | None = None

# A binary whose CRC-32 matched is remembered (in LMLADDER_HOME's cache) with its size, modification
# and change times, inode and device, and not read through again while they stay the same: any
# write through the file system moves the change time, which no one can set back (git trusts its
# index the same way). ~37 ms of a 1.8 M-character score with gutenberg-en's letter 8-gram on 2
# cores. A file changed less than RECENT_NS before it was checked is not remembered: change times
# tick coarsely, so a write just after the check could keep the same one ("racy git").
RECENT_NS = 2_000_000_000


def _identity(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def _memo(path: Path) -> Path:
    from lmladder import home

    key = zlib.crc32(str(path.resolve()).encode("utf-8", "surrogateescape"))
    return home.cache_dir("checked-binaries", f"{key:08x}-{path.name}.json")


def _checked_before(path: Path, crc: int) -> bool:
    try:
        saved = json.loads(_memo(path).read_text(encoding="utf-8"))
        return saved == {"path": str(path.resolve()), "identity": _identity(path), "crc32": crc}
    except (OSError, ValueError):
        return False


def _remember(path: Path, identity: list[int], crc: int) -> None:
    """Remember a check of `path` made while it had `identity` (not if it has changed since, or
    changed just before)."""
    import time

    from lmladder.atomic import write_json

    try:
        if _identity(path) != identity or time.time_ns() - identity[2] < RECENT_NS:
            return
        write_json(_memo(path), {"path": str(path.resolve()), "identity": identity, "crc32": crc})
    except (OSError, LadderError):  # a home that cannot be written: the next load checks the file again
        return


@contextmanager
def checked_later() -> Iterator[Callable[[], None]]:
    """Binaries loaded inside the block have their CRC-32 computed in a thread, beside the work
    that follows (a few tens of ms of a large model's whole-process scoring time, which it need
    not wait for); the function it gives raises the LadderError of a corrupt one and must be
    called before anything computed from them is shown (cli/score.py calls it whatever scoring
    made of the tables, so that a corrupt file is said to be corrupt)."""
    global _later
    checks: list[_Check] = []
    _later = checks
    try:
        yield lambda: [check.confirm() for check in checks] and None
    finally:
        _later = None


def release(mapping: mmap.mmap | None) -> None:
    """Take a mapping's pages out of this process's memory (after a pass over a text): they are
    clean pages of the file, which stay in the page cache and come back on the next lookup."""
    if mapping is not None and hasattr(mmap, "MADV_DONTNEED"):
        mapping.madvise(mmap.MADV_DONTNEED)


def _crc32(path: Path) -> int:
    """The file's CRC-32, read through one small buffer (so its pages are not mapped into this
    process: only those scoring touches count against its memory)."""
    crc, buf = 0, bytearray(1 << 20)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as handle:
        while got := handle.readinto(buf):
            crc = zlib.crc32(view[:got], crc)
    return crc


def _check_size(path: Path, record: dict[str, Any]) -> None:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise LadderError(f"{path} is missing; rebuild the model (lmladder.json says it was written)") from None
    if size != record["bytes"]:
        raise LadderError(f"{path} has {size} bytes, not the {record['bytes']} lmladder.json records: it is "
                          "truncated or from another model; rebuild the model")


def _tables(buf: np.ndarray, directory: dict[str, Any]) -> list[MappedTable]:
    V, N = int(directory["V"]), int(directory["order"])
    found = {}
    for name, (dtype, offset, count) in directory["arrays"].items():
        dt = np.dtype(dtype)
        if offset % ALIGN or offset + dt.itemsize * count > len(buf):
            raise ValueError(name)
        found[name] = buf[offset:offset + dt.itemsize * count].view(dt)

    def column(name: str, rows: int) -> Column:
        kind = directory["columns"][name]
        data = found.get(name)
        if kind != "const" and len(data) != rows:
            raise ValueError(name)
        return Column(kind, data, found.get(f"{name}.values"), rows)

    tables, rows = [], V
    for n in range(1, N + 1):
        start = found.get(f"start{n}")
        lower = rows
        if n >= 2:
            rows = len(found[f"words{n}"])
            if len(start) != lower + 1 or int(start[-1]) != rows:
                raise ValueError(n)
        rank, cum = found.get(f"rank{n}"), found.get(f"cum{n}")
        if rank is not None and (cum is None or len(rank) != lower * -(-V // 64) or len(cum) != len(rank)):
            raise ValueError(n)
        tables.append(MappedTable(V, rows, lower, start, found.get(f"words{n}"), column(f"logp{n}", rows),
                                  column(f"backoff{n}", rows) if n < N else None, rank, cum))
    return tables
