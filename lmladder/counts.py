"""Counting every n-gram of orders 1..N, vectorised: text -> integer ids -> packed keys -> sort/unique.

The unit stream. Each document becomes `BOS u1 u2 ... um` (plus `EOS` in KenLM-compatible mode,
where documents are lines), all documents concatenated into one int array. BOS is the document
boundary: it is never predicted, and an n-gram never reaches back past it. So the first units of
a document are conditioned on the boundary exactly like KenLM's `<s>`: the first unit on `BOS`,
the second on `BOS u1`, and only from unit n-1 on is the context n-1 real units. Scoring uses
the same rule (lmladder.ngram).

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
vocabulary size and order fit in 64 bits. Memory: the per-position arrays are O(T); sorting is
done in runs of `chunk` positions (set from the `--memory` budget) that are merged by a final
sort of the much smaller unique runs.
"""

from __future__ import annotations

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


def chunk_for_memory(memory_bytes: int | None) -> int:
    """Positions per sorted run: about 24 bytes of working memory each."""
    if not memory_bytes:
        return 1 << 26
    return max(1 << 16, int(memory_bytes) // 24)


def sorted_counts(keys: np.ndarray, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values of `keys` and how often each occurs: sorted runs of `chunk` values, merged."""
    if len(keys) <= chunk:
        keys.sort()  # in place: the caller hands over a scratch array
        merged = keys
        weights = None
    else:
        parts = [np.unique(keys[s:s + chunk], return_counts=True) for s in range(0, len(keys), chunk)]
        cat = np.concatenate([p[0] for p in parts])
        order = np.argsort(cat, kind="stable")
        merged = cat[order]
        weights = np.concatenate([p[1] for p in parts])[order]
    if len(merged) == 0:
        return merged, np.zeros(0, np.int64)
    start = np.empty(len(merged), dtype=bool)
    start[0] = True
    np.not_equal(merged[1:], merged[:-1], out=start[1:])
    first = np.flatnonzero(start)
    if weights is None:
        counts = np.diff(np.append(first, len(merged)))
    else:
        counts = np.add.reduceat(weights, first)
    return merged[first], counts.astype(np.int64)


def _count_packed(seq: np.ndarray, order: int, V: int, bos: int, chunk: int, counts: "Counts") -> None:
    """Orders 2..N when a whole n-gram fits in one uint64 (ids + 1 packed, last unit lowest):
    one fast np.sort per order instead of a unique-with-inverse."""
    T = len(seq)
    bits = V.bit_length()
    starts = np.flatnonzero(seq == bos)
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
    low = np.uint64((1 << bits) - 1)
    prev_packed = None
    scratch = np.empty_like(key)
    for n in range(2, order + 1):
        mask = np.uint64((1 << (bits * n)) - 1)
        np.bitwise_and(key, mask, out=scratch)
        packed, raw = sorted_counts(scratch, chunk)
        # windows cut short by a BOS have a zero first unit and sort first: they are not n-grams
        cut = np.searchsorted(packed, np.uint64(1 << (bits * (n - 1))))
        packed, raw = packed[cut:].copy(), raw[cut:]
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


def _count_chained(seq: np.ndarray, order: int, V: int, is_bos: np.ndarray, counts: "Counts") -> None:
    """Orders 2..N for any vocabulary: the key of the n-gram ending at position p is
    (index of the (n-1)-gram ending at p-1) * V + unit p. The position rides in the low bits of
    the key when both fit in 63 bits, so one in-place np.sort (vectorised, ~5x faster than
    np.argsort) both groups equal n-grams and says where each occurs."""
    T = len(seq)
    tbits = max(T.bit_length(), 1)
    prev = seq  # index of the (n-1)-gram ending at each position (-1: none)
    for n in range(2, order + 1):
        valid = np.zeros(T, dtype=bool)
        valid[1:] = (prev[:-1] >= 0) & ~is_bos[1:]
        pos = np.flatnonzero(valid)
        key = prev[pos - 1] * V + seq[pos]
        if (len(counts.tables[-1]) * V).bit_length() + tbits <= PACK_BITS:
            key <<= tbits
            key |= pos
            key.sort()
            at = key & ((1 << tbits) - 1)
            key >>= tbits
        else:
            by = np.argsort(key)
            at, key = pos[by], key[by]
        del pos
        start = np.empty(len(key), dtype=bool)
        start[:1] = True
        np.not_equal(key[1:], key[:-1], out=start[1:])
        first = np.flatnonzero(start)
        cur = np.full(T, -1, dtype=np.int64)
        cur[at] = start.astype(np.int64).cumsum() - 1  # (a bool cumsum is 5x slower)
        where = at[first]
        raw = np.diff(np.append(first, len(key))).astype(np.int64)
        ctx = prev[where - 1]
        below = counts.tables[-1]
        counts.tables.append(OrderTable(ctx, seq[where], prev[where], raw, raw.copy(), below.bos[ctx]))
        prev = cur


def count(seq: np.ndarray, order: int, vocab_size: int, bos: int, memory_bytes: int | None = None) -> Counts:
    """Count every n-gram of orders 1..order in the unit stream `seq` (see the module doc)."""
    if not 1 <= order <= MAX_ORDER:
        raise LadderError(f"--order must be between 1 and {MAX_ORDER} (got {order})")
    seq = np.asarray(seq, dtype=np.int64)
    chunk = chunk_for_memory(memory_bytes)
    V = int(vocab_size)
    is_bos = seq == bos
    counts = Counts(order, V, bos)
    raw1 = np.bincount(seq[~is_bos], minlength=V).astype(np.int64)
    counts.tables.append(OrderTable(np.zeros(V, np.int64), np.arange(V, dtype=np.int64),
                                    np.zeros(0, np.int64), raw1, raw1.copy(), np.arange(V) == bos))
    if V.bit_length() * order <= 64 and len(seq) and seq[0] == bos:
        _count_packed(seq, order, V, bos, chunk, counts)
        _adjust(counts)
        return counts
    _count_chained(seq, order, V, is_bos, counts)
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
