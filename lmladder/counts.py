"""Counting every n-gram of orders 1..N, vectorised: text -> integer ids -> packed keys -> sort/unique.

The unit stream. Each document becomes `BOS u1 u2 ... um` (plus `EOS` in KenLM-compatible mode,
where documents are lines), all documents concatenated into one int array. BOS is the document
boundary: it is never predicted, and an n-gram never reaches back past it. So the first units of
a document are conditioned on the boundary exactly like KenLM's `<s>`: the first unit on `BOS`,
the second on `BOS u1`, and only from unit n-1 on is the context n-1 real units. Scoring uses
the same rule (lmladder.ngrammodel).

The tables. Order n holds every distinct n-gram seen, sorted lexicographically, as

    ctx     index of its (n-1)-unit prefix in the order n-1 table (0 for unigrams)
    word    id of its last unit
    key     ctx * V + word: sorted, unique, found with np.searchsorted
    suffix  index of its (n-1)-unit suffix in the order n-1 table
    count   raw count (how many positions it ends at)
    adjusted  Kneser-Ney adjusted count (Chen & Goodman; KenLM's lmplz): the raw count for the
            top order and for n-grams that start with BOS, otherwise the number of distinct
            units seen to its left (its n+1-gram extensions)

Unigrams are the whole vocabulary 0..V-1, seen or not (BOS and the unknown/escape symbol have
count 0). Keys of order n are built from the previous order's per-position index, so any
vocabulary size and order fit in 64 bits. Memory: counting a stream of T positions at once takes
~58 bytes per position; with a `--memory` budget the stream is counted in pieces that fit it
and the pieces' tables are merged one by one (see count()), as KenLM merges sorted runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from lmladder.errors import LadderError

MAX_ORDER = 12
PACK_BITS = 63  # key and position share one int64 when they fit in this many bits


@dataclass
class OrderTable:
    ctx: np.ndarray  # int64
    word: np.ndarray  # int64
    suffix: np.ndarray  # int64 (order >= 2), empty for unigrams
    count: np.ndarray  # int64 raw counts
    adjusted: np.ndarray  # int64 KN adjusted counts
    bos: np.ndarray  # bool: starts with the boundary

    def __len__(self) -> int:
        return len(self.word)


@dataclass
class Counts:
    order: int
    vocab_size: int
    bos: int
    tables: list[OrderTable] = field(default_factory=list)  # tables[n-1] is order n

    def keys(self, n: int) -> np.ndarray:
        t = self.tables[n - 1]
        return (t.ctx.astype(np.uint64) * np.uint64(self.vocab_size) + t.word.astype(np.uint64))

    def ids(self, n: int) -> np.ndarray:
        """(U, n) matrix of unit ids of every n-gram of order n."""
        out = np.empty((len(self.tables[n - 1]), n), dtype=np.int64)
        row = np.arange(len(self.tables[n - 1]))
        for k in range(n, 0, -1):  # walk the prefix chain back to the first unit
            t = self.tables[k - 1]
            out[:, k - 1] = t.word[row]
            row = t.ctx[row]
        return out


def bracket(ids: np.ndarray, lengths: np.ndarray, first: int, last: int | None = None) -> np.ndarray:
    """Concatenated sequences (`ids`, cut into pieces of `lengths`) with `first` before and `last`
    (if given) after each piece: `first a1 .. ak last first b1 .. last`, without a Python loop."""
    lengths = np.asarray(lengths, dtype=np.int64)
    extra = 1 if last is None else 2
    out = np.full(len(ids) + extra * len(lengths), first, dtype=np.int64)
    ends = np.cumsum(lengths + extra)  # one past each piece's block
    keep = np.ones(len(out), dtype=bool)
    keep[ends - lengths - extra] = False
    if last is not None:
        out[ends - 1] = last
        keep[ends - 1] = False
    out[keep] = ids
    return out


def lookup(table: np.ndarray, queries: np.ndarray, chunk: int = 1 << 20) -> np.ndarray:
    """Index of each query in the sorted unique uint64 `table`, or -1 if absent.

    Queries are sorted in cache-sized chunks first: np.searchsorted on sorted queries is ~10x
    faster than on random ones.
    """
    out = np.empty(len(queries), dtype=np.int64)
    if len(table) == 0:
        out[:] = -1
        return out
    for start in range(0, len(queries), chunk):
        q = queries[start:start + chunk]
        order = np.argsort(q)
        qs = q[order]
        pos = np.searchsorted(table, qs)
        pos_c = np.minimum(pos, len(table) - 1)
        pos = np.where(table[pos_c] == qs, pos_c, -1)
        res = np.empty(len(q), dtype=np.int64)
        res[order] = pos
        out[start:start + chunk] = res
    return out


BYTES_PER_POSITION = 64  # counting working memory per position of the stream (measured: ~58)
MIN_PIECE = 256


def default_memory() -> int:
    """A quarter of the physical memory (KenLM's lmplz takes 80% by default)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 4
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def piece_for_memory(memory_bytes: int | None) -> int:
    """Positions counted at a time under a `--memory` budget (None: default_memory())."""
    return max(MIN_PIECE, int(memory_bytes or default_memory()) // BYTES_PER_POSITION)


def _sort_with(keys: np.ndarray, payload: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """`keys` (>= 0, int64, consumed) sorted, and `payload` (values < limit) in the same order.
    The payload rides in the low bits of the key when both fit, so one in-place np.sort
    (vectorised, ~5x faster than np.argsort) does it."""
    bits = max(int(limit).bit_length(), 1)
    if int(keys.max(initial=0)).bit_length() + bits <= PACK_BITS:
        keys <<= bits
        keys |= payload
        keys.sort()
        out = keys & ((1 << bits) - 1)
        keys >>= bits
        return keys, out
    by = np.argsort(keys)
    return keys[by], payload[by]


def _group_starts(sorted_keys: np.ndarray) -> np.ndarray:
    """True where a run of equal values begins."""
    start = np.empty(len(sorted_keys), dtype=bool)
    start[:1] = True
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=start[1:])
    return start


def sorted_counts(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values of `keys` (a scratch array, sorted in place) and how often each occurs."""
    keys.sort()
    first = np.flatnonzero(_group_starts(keys))
    return keys[first], np.diff(np.append(first, len(keys))).astype(np.int64)


def _count_packed(seq: np.ndarray, order: int, V: int, bos: int, skip: int, counts: "Counts") -> None:
    """Orders 2..N when a whole n-gram fits in one uint64 (ids + 1 packed, last unit lowest):
    one fast np.sort per order instead of a unique-with-inverse."""
    T = len(seq)
    bits = V.bit_length()
    starts = np.flatnonzero(seq == bos)
    if len(starts) == 0 or starts[0] != 0:  # a piece that starts inside a document
        starts = np.concatenate([[0], starts])
    lengths = np.diff(np.append(starts, T))
    since = np.arange(T) - np.repeat(starts, lengths)  # 0 at each BOS
    ids1 = (seq + 1).astype(np.uint64)
    key = ids1.copy()
    for j in range(1, order):
        key[j:] |= ids1[:T - j] << np.uint64(bits * j)
    # n-grams never reach back past a BOS: redo the first units of each document, masked
    near = (starts[:, None] + np.arange(order - 1)[None, :]).ravel()
    near = near[(near < T)]
    near = near[since[near] < order - 1]
    fixed = np.zeros(len(near), dtype=np.uint64)
    for j in range(order):
        ok = since[near] >= j
        fixed[ok] |= ids1[near[ok] - j] << np.uint64(bits * j)
    key[near] = fixed
    del ids1
    context_only = key[:skip].copy()
    low = np.uint64((1 << bits) - 1)
    prev_packed = None
    scratch = np.empty_like(key)
    for n in range(2, order + 1):
        mask = np.uint64((1 << (bits * n)) - 1)
        np.bitwise_and(key, mask, out=scratch)
        packed, raw = sorted_counts(scratch)
        # windows cut short by a BOS have a zero first unit and sort first: they are not n-grams
        shortest = np.uint64(1 << (bits * (n - 1)))
        cut = np.searchsorted(packed, shortest)
        packed, raw = packed[cut:].copy(), raw[cut:]
        ctx_only = context_only & mask
        np.subtract.at(raw, np.searchsorted(packed, ctx_only[ctx_only >= shortest]), 1)
        word = ((packed & low) - np.uint64(1)).astype(np.int64)
        head = packed >> np.uint64(bits)
        if n == 2:
            ctx = (head - np.uint64(1)).astype(np.int64)
            suffix = word.copy()
        else:
            ctx = np.searchsorted(prev_packed, head).astype(np.int64)
            suffix = lookup(prev_packed, packed & np.uint64((1 << (bits * (n - 1))) - 1))
        below = counts.tables[-1]
        counts.tables.append(OrderTable(ctx, word, suffix, raw, raw.copy(), below.bos[ctx]))
        prev_packed = packed


def _count_chained(seq: np.ndarray, order: int, V: int, bos: int, skip: int, counts: "Counts") -> None:
    """Orders 2..N for any vocabulary: the key of the n-gram ending at position p is
    (index of the (n-1)-gram ending at p-1) * V + unit p."""
    T = len(seq)
    is_bos = seq == bos
    prev = seq  # index of the (n-1)-gram ending at each position (-1: none)
    for n in range(2, order + 1):
        valid = np.zeros(T, dtype=bool)
        valid[1:] = (prev[:-1] >= 0) & ~is_bos[1:]
        pos = np.flatnonzero(valid)
        key, at = _sort_with(prev[pos - 1] * V + seq[pos], pos, T)
        del pos
        start = _group_starts(key)
        first = np.flatnonzero(start)
        cur = np.full(T, -1, dtype=np.int64)
        cur[at] = start.astype(np.int64).cumsum() - 1  # (a bool cumsum is 5x slower)
        where = at[first]
        raw = np.diff(np.append(first, len(key))).astype(np.int64)
        ctx_only = cur[:skip]
        np.subtract.at(raw, ctx_only[ctx_only >= 0], 1)
        ctx = prev[where - 1]
        below = counts.tables[-1]
        counts.tables.append(OrderTable(ctx, seq[where], prev[where], raw, raw.copy(), below.bos[ctx]))
        prev = cur


def _count_piece(seq: np.ndarray, order: int, V: int, bos: int, skip: int) -> Counts:
    """Raw counts of the n-grams ending at positions >= `skip` of `seq`; the first `skip`
    units are context only (the end of the previous piece). An n-gram seen only in that
    context keeps count 0 here: the previous piece has it."""
    counts = Counts(order, V, bos)
    units = seq[skip:]
    raw1 = np.bincount(units[units != bos], minlength=V).astype(np.int64)
    counts.tables.append(OrderTable(np.zeros(V, np.int64), np.arange(V, dtype=np.int64),
                                    np.zeros(0, np.int64), raw1, raw1.copy(), np.arange(V) == bos))
    if V.bit_length() * order <= 64 and len(seq):
        _count_packed(seq, order, V, bos, skip, counts)
    else:
        _count_chained(seq, order, V, bos, skip, counts)
    return counts


def _merge(a: Counts, b: Counts) -> Counts:
    """The counts of two pieces of one stream as one: order by order, the n-grams of both
    (keyed by their prefix's index in the merged order n-1 and their last unit) are sorted
    together and equal ones summed; indices of both sides are re-mapped into the result."""
    V = a.vocab_size
    a.tables[0].count += b.tables[0].count
    remap_a = remap_b = None  # unigrams: the vocabulary ids on both sides
    for n in range(2, a.order + 1):
        x, y = a.tables[n - 1], b.tables[n - 1]
        xs = (x.ctx, x.suffix) if remap_a is None else (remap_a[x.ctx], remap_a[x.suffix])
        ys = (y.ctx, y.suffix) if remap_b is None else (remap_b[y.ctx], remap_b[y.suffix])
        ctx, suffix = np.concatenate([xs[0], ys[0]]), np.concatenate([xs[1], ys[1]])
        word = np.concatenate([x.word, y.word])
        key, at = _sort_with(ctx * V + word, np.arange(len(word)), len(word))
        start = _group_starts(key)
        first = np.flatnonzero(start)
        index = np.empty(len(word), dtype=np.int64)
        index[at] = start.astype(np.int64).cumsum() - 1
        remap_a, remap_b = index[:len(x)], index[len(x):]
        raw = np.add.reduceat(np.concatenate([x.count, y.count])[at], first) if len(first) else np.zeros(0, np.int64)
        pick = at[first]
        a.tables[n - 1] = OrderTable(ctx[pick], word[pick], suffix[pick], raw, raw.copy(),
                                     np.concatenate([x.bos, y.bos])[pick])
    return a


def count(seq: np.ndarray, order: int, vocab_size: int, bos: int, memory_bytes: int | None = None) -> Counts:
    """Count every n-gram of orders 1..order in the unit stream `seq` (see the module doc).

    With a `memory_bytes` budget the stream is counted in pieces of piece_for_memory()
    positions (each piece sees the previous n-1 units as context) that are merged into the
    running tables one by one, so the working memory is the budget plus the distinct n-grams,
    whatever the length of the stream."""
    if not 1 <= order <= MAX_ORDER:
        raise LadderError(f"--order must be between 1 and {MAX_ORDER} (got {order})")
    seq = np.asarray(seq)  # any integer type: each piece is made int64 as it is counted
    V = int(vocab_size)
    piece = piece_for_memory(memory_bytes)
    if len(seq) <= piece:
        counts = _count_piece(seq.astype(np.int64, copy=False), order, V, bos, 0)
    else:
        counts = None
        for s in range(0, len(seq), piece):
            lo = max(0, s - (order - 1))
            part = _count_piece(seq[lo:s + piece].astype(np.int64), order, V, bos, s - lo)
            counts = part if counts is None else _merge(counts, part)
    _adjust(counts)
    return counts


def _adjust(counts: Counts) -> None:
    """KN adjusted counts: distinct left extensions, except the top order and boundary n-grams."""
    order, bos = counts.order, counts.bos
    for n in range(1, order):
        t, up = counts.tables[n - 1], counts.tables[n]
        ext = np.bincount(up.suffix, minlength=len(t)).astype(np.int64)
        t.adjusted = np.where(t.bos, t.count, ext)
    counts.tables[0].adjusted[bos] = 0
