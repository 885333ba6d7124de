"""The n-gram trie's lookups (Heafield 2011: the n-grams of order n sorted by context row in order
n-1, then unit, so a context's children are one run of rows), over arrays wherever they live: the
memory-mapped binary (lmladder.ngrambin) gives them views of its file. A lookup is vectorised
over all queries: a dense table for the orders whose contexts times units are few, else the
context's children bitmap (one gather and a popcount) where the binary holds one, else a
branch-free binary search in the context's run."""

from __future__ import annotations

from functools import cached_property

import numpy as np

DENSE_MAX = 1 << 20  # an order with at most this many (context, unit) pairs is looked up in a table
ONE = np.uint64(1)


def uint_for(limit: int) -> np.dtype:
    """The narrowest unsigned dtype that holds 0..limit."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if limit <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.uint64)


def rank_orders(V: int, rows: list[int], budget: float) -> list[int]:
    """The orders that get children bitmaps: from the lowest up, those whose contexts times units
    are too many for a dense table (MappedTable.dense), while their bitmaps fit `budget` bytes."""
    W, chosen, spent = -(-V // 64), [], 0
    for n in range(2, len(rows) + 1):
        if rows[n - 2] * V <= DENSE_MAX:
            continue
        spent += rows[n - 2] * W * (8 + uint_for(64 * (W - 1)).itemsize)
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
    cum = (np.cumsum(counts, axis=1) - counts).astype(uint_for(64 * (W - 1))).reshape(-1)
    return rank, cum


class UnitBits:
    """What the bitmap lookups need of the units queried, computed once for every order that
    has bitmaps (lmladder.ngrammodel.positions): each unit's word column, its bit, and the mask
    of the bits below it."""

    def __init__(self, units: np.ndarray):
        units = units.astype(np.int64, copy=False)
        self.column = units >> 6
        self.bit = np.left_shift(ONE, (units & 63).astype(np.uint64))
        self.below = self.bit - ONE


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

    def find(self, ctx: np.ndarray, words: np.ndarray, V: int, bits: "UnitBits | None" = None) -> np.ndarray:
        """Row of each n-gram (context row of the order below, -1 for none; last unit), or -1:
        a dense table's entry, the children bitmaps' (`bits`: UnitBits of `words`, made here if
        not given), or a branch-free binary search in each context's run of children, all
        queries together, ceil(log2(most children)) rounds (only `take`s and arithmetic: no
        masks, no copies), the queries still searching gathered up once most are done."""
        if self.rows == 0:
            return np.full(len(ctx), -1, dtype=np.int64)
        if self.dense is not None:
            return self.dense.take(np.where(ctx < 0, len(self.dense) - 1, ctx * V + words)).astype(np.int64)
        if self.rank is not None:
            return self.find_in_bitmaps(ctx, bits or UnitBits(words))
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

    def find_in_bitmaps(self, ctx: np.ndarray, bits: "UnitBits") -> np.ndarray:
        """find() through the children bitmaps: the context's word holding the unit's bit, whether
        it is set, and the set bits below it (a context of -1 clips to row 0 and is masked out)."""
        at = ctx * self.width + bits.column
        word = self.rank.take(at, mode="clip")
        row = self._start32.take(ctx, mode="clip").astype(np.int64) + self.cum.take(at, mode="clip")
        row += np.bitwise_count(word & bits.below)
        return np.where(((word & bits.bit) != 0) & (ctx >= 0), row, -1)

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
