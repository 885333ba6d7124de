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

Indices, ids and counts are uint32 while they fit (int64 past 2^32), so a table costs ~21 bytes
per n-gram. Unigrams are the whole vocabulary 0..V-1, seen or not (BOS and the unknown/escape
symbol have count 0).

Two ways to count orders 2..N. When N units fit in one uint64 (letters), every position's
window of the N units from it on is packed into one key, and one in-place sort of the T keys
gives every order at once: each n-gram is the n-unit prefix of the windows that start with it,
so the distinct windows, cut to n units and grouped, are the order-n table already sorted
(KenLM's lmplz sorts its top order the same way). For any vocabulary (words) the key of the
n-gram ending at position p is built from the previous order's index at p-1 (so any order fits
in 64 bits), one sort per order. Memory: ~10 (letters) or ~40 (words) bytes per position of
the stream while counting; with a `--memory` budget the stream is counted in pieces that fit it
and the pieces' tables are merged one by one (see count()), as KenLM merges sorted runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from lmladder.errors import LadderError

MAX_ORDER = 12
CHUNK = 1 << 16  # rows a loop step works on: its temporaries (<= 512 KiB) are reused, never faulted in anew
PACK_BITS = 63  # key and position share one int64 when they fit in this many bits


def narrow(values: np.ndarray, limit: int) -> np.ndarray:
    """`values` (all in 0..limit) as uint32 when limit fits in it, else int64."""
    return values.astype(np.uint32 if limit < (1 << 32) else np.int64, copy=False)


@dataclass
class OrderTable:
    ctx: np.ndarray  # uint32 (int64 past 2^32 rows), 0 for unigrams
    word: np.ndarray  # uint32
    suffix: np.ndarray  # uint32 (order >= 2), empty for unigrams
    count: np.ndarray  # uint32 raw counts (int64 for streams past 2^32 positions)
    adjusted: np.ndarray  # KN adjusted counts, as count (the top order shares count's array)
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
        keys = t.ctx.astype(np.uint64)
        keys *= np.uint64(self.vocab_size)
        keys += t.word
        return keys

    def ids(self, n: int) -> np.ndarray:
        """(U, n) matrix of unit ids of every n-gram of order n."""
        out = np.empty((len(self.tables[n - 1]), n), dtype=np.int64)
        row = np.arange(len(self.tables[n - 1]))
        for k in range(n, 0, -1):  # walk the prefix chain back to the first unit
            t = self.tables[k - 1]
            out[:, k - 1] = t.word[row]
            row = t.ctx[row]
        return out


def bracket(ids: np.ndarray, lengths: np.ndarray, first: int, last: int | None = None, dtype=np.int64) -> np.ndarray:
    """Concatenated sequences (`ids`, cut into pieces of `lengths`) with `first` before and `last`
    (if given) after each piece: `first a1 .. ak last first b1 .. last`, without a Python loop."""
    lengths = np.asarray(lengths, dtype=np.int64)
    extra = 1 if last is None else 2
    out = np.full(len(ids) + extra * len(lengths), first, dtype=dtype)
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


BYTES_PER_POSITION = 64  # counting working memory per position, with margin (~10 for letters, ~40 for words)
MIN_PIECE = 256
MIN_MEMORY = 8 << 20  # the least --memory taken: a smaller budget only counts in more pieces, far slower


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
    """`keys` (>= 0, int64, consumed) sorted, and `payload` (int64 values < limit, consumed) in
    the same order. The payload rides in the low bits of the key when both fit, so one in-place
    np.sort (vectorised, ~5x faster than np.argsort) does it."""
    bits = max(int(limit).bit_length(), 1)
    if int(keys.max(initial=0)).bit_length() + bits <= PACK_BITS:
        keys <<= bits
        keys |= payload
        keys.sort()
        np.bitwise_and(keys, (1 << bits) - 1, out=payload)
        keys >>= bits
        return keys, payload
    by = np.argsort(keys)
    return keys[by], payload[by]


def _group_starts(sorted_keys: np.ndarray) -> np.ndarray:
    """True where a run of equal values begins."""
    start = np.empty(len(sorted_keys), dtype=bool)
    start[:1] = True
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=start[1:])
    return start


def _run_lengths(first: np.ndarray, end: int, limit: int) -> np.ndarray:
    """The lengths of the runs that start at `first` (ascending) and end at `end`, as narrow()."""
    out = np.empty(len(first), np.uint32 if limit < (1 << 32) else np.int64)
    np.subtract(first[1:], first[:-1], out=out[:-1], casting="unsafe")
    out[-1:] = end - first[-1:]
    return out


def sorted_counts(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values of `keys` (a scratch array, sorted in place) and how often each occurs."""
    keys.sort()
    first = np.flatnonzero(_group_starts(keys))
    return keys[first], np.diff(np.append(first, len(keys))).astype(np.int64)


def _windows(seq: np.ndarray, order: int, bits: int, bos: int, chunk: int = 1 << 20) -> np.ndarray:
    """The packed window starting at each position: units p .. p+order-1 as id + 1 in `bits`
    bits each, the first highest; 0 for every unit past the document's end (the next BOS) or
    the stream's end. Built a chunk at a time, so the only big array is the result."""
    T = len(seq)
    key = np.empty(T, dtype=np.uint64)
    buf = np.empty(min(chunk, T), dtype=np.uint64)
    for a in range(0, T, chunk):
        out = key[a:a + chunk]
        np.copyto(out, seq[a:a + chunk], casting="unsafe")  # the first unit; written, never read first
        out += np.uint64(1)
        out <<= np.uint64(bits * (order - 1))
        for j in range(1, min(order, T - a)):
            src = seq[a + j:a + chunk + j]
            tmp = buf[:len(src)]
            np.copyto(tmp, src, casting="unsafe")
            tmp += np.uint64(1)
            tmp <<= np.uint64(bits * (order - 1 - j))
            out[:len(src)] |= tmp
    ends = np.flatnonzero(seq == bos)
    full = (1 << (bits * order)) - 1
    for k in range(1, order):  # a window that starts k units before a BOS keeps its first k
        at = ends[ends >= k] - k
        key[at] &= np.uint64(full ^ ((1 << (bits * (order - k))) - 1))
    return key


def _count_packed(seq: np.ndarray, order: int, V: int, bos: int, skip: int, counts: Counts, total: int) -> None:
    """Orders 2..N when N units fit in one uint64: one in-place sort of every position's window
    (_windows). The distinct windows cut to their first n units are the distinct n-grams, once
    those cut short by a document's end (a 0 unit) are dropped; each order is grouped from the
    one above it (top down), which also gives every n-gram's prefix as a group index."""
    T = len(seq)
    bits = V.bit_length()
    key = _windows(seq, order, bits, bos)
    context = key[:skip].copy()  # the windows that start in the context-only head
    key.sort()
    start = _group_starts(key)
    level = key[start]  # every distinct window, sorted
    del key
    reps = _run_lengths(np.flatnonzero(start), T, total)  # how many positions start each
    del start
    one, low = np.uint64(bits), np.uint64((1 << bits) - 1)
    index = np.int32 if len(level) < (1 << 31) else np.int64
    real = (level & low) != 0
    grams = {}  # n -> (packed n-grams, raw counts, index of the prefix in order n-1)
    for n in range(order, 2, -1):
        head = level >> one
        starts = _group_starts(head)
        up = starts.astype(index)  # the group of order n-1 of each row of order n
        up.cumsum(out=up)
        up -= 1
        first = np.flatnonzero(starts)
        del starts
        lower, lower_reps = head[first], np.add.reduceat(reps, first, dtype=reps.dtype)
        del head, first
        lower_real = (lower & low) != 0
        rank = lower_real.astype(index)  # position among the real n-1-grams (for real ones)
        rank.cumsum(out=rank)
        rank -= 1
        grams[n] = (level[real], reps[real], rank[up[real]])
        del up, rank
        level, reps, real = lower, lower_reps, lower_real
    grams[2] = (level[real], reps[real], None)
    del level, reps, real
    prev = None
    for n in range(2, order + 1):
        packed, raw, ctx = grams.pop(n)
        if skip >= n:  # n-grams that end in the context-only head belong to the previous piece
            seen = context[:skip - n + 1] >> np.uint64(bits * (order - n))
            np.subtract.at(raw, np.searchsorted(packed, seen[(seen & low) != 0]), 1)
        word = narrow((packed & low) - np.uint64(1), V)
        if n == 2:
            ctx, suffix = narrow((packed >> one) - np.uint64(1), V), word
        else:
            ctx = narrow(ctx, len(prev))
            suffix = np.empty(len(packed), ctx.dtype)
            mask = np.uint64((1 << (bits * (n - 1))) - 1)
            for a in range(0, len(packed), CHUNK):  # every suffix is in prev; rows that share a
                # first unit have their suffixes in order, so the searches run (mostly) sorted
                suffix[a:a + CHUNK] = np.searchsorted(prev, packed[a:a + CHUNK] & mask)
        counts.tables.append(OrderTable(ctx, word, suffix, raw, raw, counts.tables[-1].bos[ctx]))
        prev = packed


def _count_chained(seq: np.ndarray, order: int, V: int, bos: int, skip: int, counts: Counts, total: int) -> None:
    """Orders 2..N for any vocabulary: the key of the n-gram ending at position p is
    (index of the (n-1)-gram ending at p-1) * V + unit p."""
    T = len(seq)
    index = np.int32 if T < (1 << 31) else np.int64
    not_bos = seq != bos
    prev = seq  # index of the (n-1)-gram ending at each position (-1: none)
    for n in range(2, order + 1):
        valid = np.zeros(T, dtype=bool)
        np.logical_and(prev[:-1] >= 0, not_bos[1:], out=valid[1:])
        key = np.multiply(prev[:-1][valid[1:]], np.int64(V), dtype=np.int64)
        key += seq[1:][valid[1:]]
        key, at = _sort_with(key, np.flatnonzero(valid), T)
        del valid
        start = _group_starts(key)
        first = np.flatnonzero(start)
        cur = np.full(T, -1, dtype=index)
        ranks = start.astype(index)
        del start
        ranks.cumsum(out=ranks)
        ranks -= 1
        cur[at] = ranks
        del ranks
        where = at[first]
        del at
        raw = _run_lengths(first, len(key), total)
        del key, first
        ctx_only = cur[:skip]
        np.subtract.at(raw, ctx_only[ctx_only >= 0], 1)
        where -= 1
        ctx = prev[where]
        where += 1
        counts.tables.append(OrderTable(narrow(ctx, len(counts.tables[-1])), narrow(seq[where], V),
                                        narrow(prev[where], len(counts.tables[-1])), raw, raw,
                                        counts.tables[-1].bos[ctx]))
        prev = cur


def _count_piece(seq: np.ndarray, order: int, V: int, bos: int, skip: int, total: int) -> Counts:
    """Raw counts of the n-grams ending at positions >= `skip` of `seq`; the first `skip`
    units are context only (the end of the previous piece). An n-gram seen only in that
    context keeps count 0 here: the previous piece has it. `total`: the whole stream's length."""
    counts = Counts(order, V, bos)
    raw1 = np.bincount(seq[skip:], minlength=V)
    raw1[bos] = 0
    raw1 = narrow(raw1, total)
    counts.tables.append(OrderTable(np.zeros(V, raw1.dtype), narrow(np.arange(V), V),
                                    np.zeros(0, raw1.dtype), raw1, raw1, np.arange(V) == bos))
    if order == 1:
        return counts
    if V.bit_length() * order <= 64 and len(seq):
        _count_packed(seq, order, V, bos, skip, counts, total)
    else:
        _count_chained(seq, order, V, bos, skip, counts, total)
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
        ctx = np.concatenate([xs[0], ys[0]]).astype(np.int64)
        suffix = np.concatenate([xs[1], ys[1]])
        word = np.concatenate([x.word, y.word])
        key, at = _sort_with(ctx * V + word, np.arange(len(word)), len(word))
        start = _group_starts(key)
        first = np.flatnonzero(start)
        index = np.empty(len(word), dtype=np.int64)
        index[at] = start.astype(np.int64).cumsum() - 1
        remap_a, remap_b = index[:len(x)], index[len(x):]
        count = np.concatenate([x.count, y.count])
        raw = np.add.reduceat(count[at], first, dtype=count.dtype) if len(first) else count[:0]
        pick = at[first]
        below = len(a.tables[n - 2])
        a.tables[n - 1] = OrderTable(narrow(ctx[pick], below), word[pick], narrow(suffix[pick], below), raw, raw,
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
    seq = np.asarray(seq)  # any integer type, counted as it is (no copy)
    V = int(vocab_size)
    piece = piece_for_memory(memory_bytes)
    if len(seq) <= piece:
        counts = _count_piece(seq, order, V, bos, 0, len(seq))
    else:
        counts = None
        for s in range(0, len(seq), piece):
            lo = max(0, s - (order - 1))
            part = _count_piece(seq[lo:s + piece], order, V, bos, s - lo, len(seq))
            counts = part if counts is None else _merge(counts, part)
    _adjust(counts)
    return counts


def _adjust(counts: Counts) -> None:
    """KN adjusted counts: distinct left extensions, except the top order and boundary n-grams."""
    order, bos = counts.order, counts.bos
    for n in range(1, order):
        t, up = counts.tables[n - 1], counts.tables[n]
        ext = np.bincount(up.suffix, minlength=len(t))
        t.adjusted = np.where(t.bos, t.count, ext).astype(t.count.dtype)
    top = counts.tables[order - 1]
    top.adjusted = top.count if order > 1 else top.count.copy()
    counts.tables[0].adjusted[bos] = 0
