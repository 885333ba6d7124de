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
as far as a third of the rest's bytes allows (gutenberg-en's letter 8-gram: orders 4 to 7, 41 MB
on 125 MB, and each lookup of those orders 1.5 to 2.4 times faster than the binary search).

The folder's lmladder.json records each file's size and CRC-32; loading checks the magic, the
version, the directory and the size, and the CRC-32 over the whole file (a few tens of ms for a
large model; `lmladder score` computes it in a thread while it scores, checked_later), so a
truncated, corrupt or foreign binary is refused with a LadderError.
"""

from __future__ import annotations

import json
import mmap
import struct
import threading
import zlib
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from lmladder.atomic import atomic_file
from lmladder.errors import LadderError

MAGIC = b"LMLNGBIN"
VERSION = 1
ALIGN = 64
DICT_MAX = 1 << 16
DENSE_MAX = 1 << 20  # an order with at most this many (context, unit) pairs is looked up in a table
RANK_SHARE = 1 / 3  # the children bitmaps may add at most this share to the file (ngrambin.rank_orders)
ONE = np.uint64(1)


def file_name(prefix: str = "") -> str:
    return f"{prefix}ngram.bin"


# --- writing -------------------------------------------------------------------------------


def _uint(limit: int) -> np.dtype:
    """The narrowest unsigned dtype that holds 0..limit."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if limit <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.uint64)


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
            return "dict", {name: codes.astype(_uint(len(distinct) - 1)), f"{name}.values": distinct.view(np.float64)}
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
            out[f"start{n}"] = start.astype(_uint(t.rows))
            out[f"words{n}"] = (keys - ctx * np.uint64(V)).astype(_uint(V - 1))
        for name, values in ((f"logp{n}", t.logp), (f"backoff{n}", t.backoff)):
            if name.startswith("backoff") and n == N:
                continue  # the longest n-grams are never contexts
            columns[name], parts = _column(name, values)
            out.update(parts)
    budget = RANK_SHARE * sum(a.nbytes for a in out.values())
    for n in rank_orders(V, [t.rows for t in model.tables], budget):
        out[f"rank{n}"], out[f"cum{n}"] = children_bitmaps(out[f"start{n}"], out[f"words{n}"], V)
    return out, columns


def rank_orders(V: int, rows: list[int], budget: float) -> list[int]:
    """The orders that get children bitmaps: from the lowest up, those whose contexts times units
    are too many for a dense table (MappedTable.dense), while their bitmaps fit `budget` bytes."""
    W, chosen, spent = -(-V // 64), [], 0
    for n in range(2, len(rows) + 1):
        if rows[n - 2] * V <= DENSE_MAX:
            continue
        spent += rows[n - 2] * W * (8 + _uint(64 * (W - 1)).itemsize)
        if spent > budget:
            break
        chosen.append(n)
    return chosen


def children_bitmaps(start: np.ndarray, words: np.ndarray, V: int) -> tuple[np.ndarray, np.ndarray]:
    """rank{n} and cum{n} of one order from its start{n} and words{n} (rows sorted by context,
    then unit: each word's bits are OR-ed over its run of rows)."""
    W, contexts = -(-V // 64), len(start) - 1
    ctx = np.repeat(np.arange(contexts, dtype=np.int64), np.diff(start.astype(np.int64)))
    w = words.astype(np.int64)
    word = ctx * W + (w >> 6)
    bits = np.left_shift(ONE, (w & 63).astype(np.uint64))
    del ctx, w
    first = np.flatnonzero(np.concatenate([[True], word[1:] != word[:-1]])) if len(word) else np.zeros(0, np.int64)
    rank = np.zeros(contexts * W, dtype=np.uint64)
    if len(first):
        rank[word[first]] = np.bitwise_or.reduceat(bits, first)
    counts = np.bitwise_count(rank).reshape(contexts, W).astype(np.int64)
    cum = (np.cumsum(counts, axis=1) - counts).astype(_uint(64 * (W - 1))).reshape(-1)
    return rank, cum


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


class Column:
    """A value column of one order: float64s, codes into distinct values, or one value."""

    def __init__(self, kind: str, data: np.ndarray | None, values: np.ndarray, rows: int):
        self.kind, self.data, self.values, self.rows = kind, data, values, rows

    def at(self, rows: np.ndarray) -> np.ndarray:
        if self.kind == "f64":
            return self.data.take(rows)
        if self.kind == "dict":
            return self.values.take(self.data.take(rows))
        return np.full(len(rows), self.values[0])

    def full(self) -> np.ndarray:
        if self.kind == "f64":
            return self.data
        if self.kind == "dict":
            return self.values[self.data]
        return np.full(self.rows, self.values[0])


class MappedTable:
    """One order of a memory-mapped model: the query interface of lmladder.ngrammodel.Tables
    (find, logp_at, backoff_at, rows) on the trie, and its keys, logp and backoff decoded on
    first use for the code that wants whole arrays (export, compression)."""

    def __init__(self, V: int, rows: int, lower_rows: int, start, words, logp: Column, backoff: Column | None,
                 rank=None, cum=None):
        self.V, self.rows, self.lower_rows = V, rows, lower_rows
        self.start, self.words = start, words
        self._logp, self._backoff = logp, backoff
        self.rank, self.cum, self.width = rank, cum, -(-V // 64)
        # the starts as int32 without a copy where they fit (start{n} is unsigned on disk)
        self._start32 = start.view(np.int32) if start is not None and start.dtype == np.uint32 and rows < 1 << 31 \
            else start

    @cached_property
    def dense(self) -> np.ndarray | None:
        """For an order whose contexts times units are few (letters' low orders): the row of
        every (context, unit), -1 for none, so a lookup is one `take` (built on first use)."""
        if self.start is None or self.lower_rows * self.V > DENSE_MAX:
            return None
        table = np.full(self.lower_rows * self.V + 1, -1, dtype=np.int32 if self.rows < 1 << 31 else np.int64)
        ctx = np.repeat(np.arange(self.lower_rows, dtype=np.int64), np.diff(self.start.astype(np.int64)))
        table[ctx * self.V + self.words] = np.arange(self.rows)
        return table

    def find(self, ctx: np.ndarray, words: np.ndarray, V: int) -> np.ndarray:
        """Row of each n-gram (context row of the order below, -1 for none; last unit), or -1:
        a branch-free binary search in each context's run of children, all queries together,
        ceil(log2(most children)) rounds (only `take`s and arithmetic: no masks, no copies),
        the queries still searching gathered up once most are done."""
        if self.rows == 0:
            return np.full(len(ctx), -1, dtype=np.int64)
        if self.dense is not None:
            return self.dense.take(np.where(ctx < 0, len(self.dense) - 1, ctx * V + words)).astype(np.int64)
        if self.rank is not None:
            return self._find_rank(ctx, words)
        keys, dtype = self.words, np.int32 if self.rows < 1 << 31 else np.int64  # (int32: half the traffic)
        lo = self._start32.take(ctx, mode="clip").astype(dtype, copy=False)  # ctx -1 clips to an empty run
        end = self._start32.take(ctx + 1, mode="clip").astype(dtype, copy=False)
        n = end - lo
        w = words.astype(keys.dtype)
        rounds = int(n.max(initial=0)).bit_length()
        if rounds > 3:
            _search(keys, lo, n, w, 3)
            todo = np.flatnonzero(n > 1)
            part = lo.take(todo)
            _search(keys, part, n.take(todo), w.take(todo), rounds - 3)
            lo[todo] = part
        else:
            _search(keys, lo, n, w, rounds)
        lo += keys.take(lo, mode="clip") < w
        return np.where((lo < end) & (keys.take(lo, mode="clip") == w), lo, -1).astype(np.int64)

    def _find_rank(self, ctx: np.ndarray, words: np.ndarray) -> np.ndarray:
        """find() through the children bitmaps: the context's word holding the unit's bit, whether
        it is set, and the set bits below it (a context of -1 clips to row 0 and is masked out)."""
        words = words.astype(np.int64)
        shift = (words & 63).astype(np.uint64)
        at = ctx * self.width + (words >> 6)
        word = self.rank.take(at, mode="clip")
        row = self._start32.take(ctx, mode="clip").astype(np.int64) + self.cum.take(at, mode="clip")
        row += np.bitwise_count(word & ((ONE << shift) - ONE))
        hit = ((word >> shift) & ONE).astype(bool) & (ctx >= 0)
        return np.where(hit, row, -1)

    def logp_at(self, rows: np.ndarray) -> np.ndarray:
        return self._logp.at(rows)

    def backoff_at(self, rows: np.ndarray) -> np.ndarray:
        return self._backoff.at(rows)

    @cached_property
    def keys(self) -> np.ndarray:
        if self.start is None:
            return np.arange(self.rows, dtype=np.uint64)
        ctx = np.repeat(np.arange(self.lower_rows, dtype=np.uint64), np.diff(self.start.astype(np.int64)))
        return ctx * np.uint64(self.V) + self.words.astype(np.uint64)

    @cached_property
    def logp(self) -> np.ndarray:
        return self._logp.full()

    @cached_property
    def backoff(self) -> np.ndarray:
        return self._backoff.full() if self._backoff is not None else np.zeros(self.rows)


def _search(keys: np.ndarray, lo: np.ndarray, n: np.ndarray, w: np.ndarray, rounds: int) -> None:
    """`rounds` halvings of each run keys[lo:lo+n] towards the first key >= w, in place."""
    for _ in range(rounds):
        half = n >> 1
        lo += (keys.take(lo + half, mode="clip") < w) * half
        n -= half


def load(path: str | Path, record: Any, order: int) -> tuple[list[str], list[MappedTable], mmap.mmap]:
    """The units, tables and mapping of the binary at `path`, which the folder's lmladder.json
    describes as `record` (what `write` returned) and as a model of `order`; a damaged or
    mismatched file is a LadderError."""
    path = Path(path)
    if not isinstance(record, dict) or not {"bytes", "crc32"} <= record.keys():
        raise LadderError(f"{path.parent / 'lmladder.json'} describes {path.name} badly; rebuild the model")
    _check_size(path, record)
    if _later is None:
        if _crc32(path) != record["crc32"]:
            raise LadderError(_corrupt(path))
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


_later: list[_Check] | None = None


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
