"""The n-gram rungs' next-unit distributions for many contexts at once (lmladder.compress.ngram
codes with them), computed only with gathers and float32 products, so a row is bit-identical
whether the encoder computes it among a million rows or the decoder among a few hundred.

A context is the state the scoring code walks (lmladder.ngrammodel.positions): for each length
j = 1..N-1, the row of the j-gram ending at the last unit in table j, or -1. Kneser-Ney gives

    p(w | state) = p(longest stored n-gram ending in w) * prod(backoffs of the longer contexts)

For speed the distributions of every context up to a length d are tabulated once ("dense
rows", within a memory budget: for letters d is 4-5, for words 0), so a row is one gathered
table row times the backoffs of the deeper contexts, with their few stored children written
over it. Add-k and mle use the longest context seen with a non-zero total instead.
"""

from __future__ import annotations

import numpy as np

from lmladder import counts as counting

DENSE_BYTES = 64 << 20  # memory for the tabulated distributions of short contexts


def ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The concatenation of arange(s, s + c) for each start s and count c."""
    ends = np.cumsum(counts)
    return np.repeat(starts - ends + counts, counts) + np.arange(int(ends[-1]) if len(ends) else 0)


class Distributions:
    """Next-unit probabilities (float32 rows) of an NgramModel for a batch of states, and the
    states that follow each unit."""

    def __init__(self, model, budget: int = DENSE_BYTES):
        self.model = model
        self.V, self.N, self.bos = model.V, model.order, model.bos
        self.kn = model.config.smoothing == "kn"
        self.k = 0.0 if model.config.smoothing == "mle" else float(model.config.k)
        V, N = self.V, self.N
        lens = [len(t.keys) for t in model.tables]
        d = 0  # dense rows (and transitions) for contexts up to length d
        while d < N - 1 and (1 + sum(lens[:d + 1]) + sum(lens[:d])) * V * 4 <= budget:
            d += 1
        self.d = d
        self._children(lens)
        self._dense(lens)

    # -- tables ------------------------------------------------------------------------------
    def _children(self, lens: list[int]) -> None:
        """For the contexts too long to tabulate (lengths max(d, 1)..N-1) as one table of nodes
        (context c of length j is node node_first[j] + c; no context, -1, the node before it,
        which has no children): where their children (the next table's entries) start and how
        many there are, and the children's last units and values, concatenated over the tables.
        Also each context's backoff (kn), or add-k denominator and whether it was seen."""
        V, N = np.uint64(self.V), self.N
        self.offset = {}
        words, values, at = [], [], 0
        starts, counts, firsts = [], [], np.zeros(N + 1, dtype=np.int64)
        nodes = 0
        for j in range(max(self.d, 1), N):
            keys = self.model.tables[j].keys
            bounds = np.searchsorted(keys, np.arange(lens[j - 1] + 1, dtype=np.uint64) * V).astype(np.int64)
            starts += [np.zeros(1, np.int64), bounds[:-1] + at]
            counts += [np.zeros(1, np.int64), np.diff(bounds)]
            firsts[j] = nodes + 1
            nodes += lens[j - 1] + 1
            self.offset[j] = at
            words.append((keys % V).astype(np.int64))
            values.append(self._values(j + 1))
            at += len(keys)
        self.node_first = firsts
        self.node_start = np.concatenate(starts) if starts else np.zeros(0, np.int64)
        self.node_count = np.concatenate(counts) if counts else np.zeros(0, np.int64)
        self.words = np.concatenate(words) if words else np.zeros(0, np.int64)
        self.values = np.concatenate(values) if values else np.zeros(0, np.float32)
        # per context length: the backoff (kn) or the add-k denominator and whether it has a total
        self.backoff, self.denom, self.seen = {}, {}, {}
        for j in range(1, N):
            t = self.model.tables[j - 1]
            if self.kn:
                self.backoff[j] = np.append(np.exp(t.backoff).astype(np.float32), np.float32(1))
            else:
                self.denom[j] = np.append(t.backoff + self.k * (self.V - 1), 1.0)
                self.seen[j] = np.append(t.backoff > 0, False)

    def _values(self, n: int) -> np.ndarray:
        """What a stored n-gram contributes: its probability (kn) or its count + k."""
        t = self.model.tables[n - 1]
        return np.exp(t.logp).astype(np.float32) if self.kn else t.logp + self.k

    def _dense(self, lens: list[int]) -> None:
        """The distributions of every context of length 0..d (one table, `dense`, rows from
        `first[j]` on), and for lengths 1..d-1 the row of each context's child ending in each
        unit (`steps`, a row of -1 first for no context)."""
        V, model = self.V, self.model
        uni = model.tables[0]
        if self.kn:
            rows = [np.exp(uni.logp).astype(np.float32)[None, :]]
        else:
            rows = [(((uni.logp + self.k) / (model.meta["tokens"] + self.k * (V - 1))).astype(np.float32))[None, :]]
        rows[0][0, self.bos] = 0
        for j in range(1, self.d + 1):
            suffix = self._suffixes(j)
            own = rows[-1][suffix]  # (contexts, V)
            children = np.repeat(np.arange(lens[j - 1]), np.diff(self._bounds(j, lens)))
            words = (model.tables[j].keys % np.uint64(V)).astype(np.int64)
            if self.kn:
                own *= np.exp(model.tables[j - 1].backoff).astype(np.float32)[:, None]
                own.reshape(-1)[children * V + words] = np.exp(model.tables[j].logp).astype(np.float32)
            else:
                seen = model.tables[j - 1].backoff > 0
                denom = model.tables[j - 1].backoff + self.k * (V - 1)
                base = np.where(seen, self.k / np.where(seen, denom, 1), 0)
                own[seen] = base[seen, None].astype(np.float32)
                mine = seen[children]
                own.reshape(-1)[children[mine] * V + words[mine]] = \
                    ((model.tables[j].logp[mine] + self.k) / denom[children[mine]]).astype(np.float32)
                own[seen, self.bos] = 0
            rows.append(own)
        self.first = np.cumsum([0] + [len(r) for r in rows]).astype(np.int64)
        self.dense = np.concatenate(rows)
        steps = [np.full(V, -1, dtype=np.int32)]
        self.step_first = np.zeros(max(self.d, 1), dtype=np.int64)
        at = V
        for j in range(1, self.d):
            table = np.full((lens[j - 1], V), -1, dtype=np.int32)
            bounds = self._bounds(j, lens)
            owners = np.repeat(np.arange(lens[j - 1]), np.diff(bounds))
            table[owners, (model.tables[j].keys % np.uint64(V)).astype(np.int64)] = np.arange(lens[j])
            self.step_first[j] = at
            steps.append(table.reshape(-1))
            at += table.size
        self.steps = np.concatenate(steps)

    def _bounds(self, j: int, lens: list[int]) -> np.ndarray:
        keys = self.model.tables[j].keys
        return np.searchsorted(keys, np.arange(lens[j - 1] + 1, dtype=np.uint64) * np.uint64(self.V))

    def _suffixes(self, j: int) -> np.ndarray:
        """For every j-gram, the row of its last j-1 units in table j-1 (0 for j = 1: the empty
        context's one row)."""
        if j == 1:
            return np.zeros(len(self.model.tables[0].keys), dtype=np.int64)
        ids = self.model.ngram_ids(j)
        row = ids[:, 1].astype(np.int64)
        for k in range(2, j):
            row = counting.lookup(self.model.tables[k - 1].keys,
                                  row.astype(np.uint64) * np.uint64(self.V) + ids[:, k].astype(np.uint64))
            row = np.maximum(row, 0)  # tables counted from text hold every suffix; never -1 in practice
        return row

    # -- the rows --------------------------------------------------------------------------
    def rows(self, ctx: np.ndarray, need_kids: bool = False):
        """(B, V) float32 probabilities for the states `ctx` (N-1, B); with `need_kids` also the
        children of the states' contexts of length d and longer, which `advance` needs."""
        B, V, N, d = ctx.shape[1], self.V, self.N, self.d
        if self.kn:  # the deepest tabulated context (with substring-closed tables, those that exist are a prefix)
            depth = (ctx[:d] >= 0).sum(axis=0)
        else:
            seen = np.stack([self.seen[j][ctx[j - 1]] for j in range(1, N)]) if N > 1 else np.zeros((0, B), bool)
            deepest = np.where(seen.any(axis=0), N - 1 - np.argmax(seen[::-1], axis=0), 0) if N > 1 else seen.sum(0)
            depth = np.where(seen[:d].any(axis=0), d - np.argmax(seen[:d][::-1], axis=0), 0) if d else deepest * 0
        pick = np.concatenate([np.zeros((1, B), np.int64), ctx[:d] + self.first[1:d + 1, None]]).take(
            depth * B + np.arange(B))
        probs = self.dense.take(pick, axis=0)
        levels = list(range(d if need_kids and d >= 1 else d + 1, N))
        kids = self._kids(ctx, levels)
        if self.kn:
            scale = None
            for j in range(N - 1, d, -1):
                idx, row = kids[j]
                value = self.values[idx] if scale is None else self.values[idx] * scale[row]
                scale = self.backoff[j][ctx[j - 1]] if scale is None else scale * self.backoff[j][ctx[j - 1]]
                kids[j] = (idx, row, value)
            if scale is not None:
                probs *= scale[:, None]
            for j in range(d + 1, N):  # longer contexts last: theirs is the stored n-gram that matches
                idx, row, value = kids[j]
                probs.reshape(-1)[row * V + self.words[idx]] = value
        else:
            for j in range(d + 1, N):
                rows = np.flatnonzero(deepest == j)
                idx, row = kids[j]
                if len(rows):
                    c = ctx[j - 1][rows]
                    probs[rows] = (self.k / self.denom[j][c])[:, None]
                    mine = deepest[row] == j
                    probs.reshape(-1)[row[mine] * V + self.words[idx[mine]]] = \
                        self.values[idx[mine]] / self.denom[j][ctx[j - 1][row[mine]]]
                    probs[rows, self.bos] = 0
        return probs, kids

    def _kids(self, ctx: np.ndarray, levels: list[int]) -> dict[int, tuple]:
        """For each context length j in `levels`: the children of every state's context of that
        length (their index in the concatenated tables) and the state each belongs to."""
        if not levels:
            return {}
        B = ctx.shape[1]
        first = ctx[levels[0] - 1: levels[-1]] + self.node_first[levels[0]:levels[-1] + 1, None]  # (levels, B)
        starts, counts = self.node_start.take(first), self.node_count.take(first)
        per = counts.sum(axis=1).tolist()
        counts = counts.ravel()
        node = np.repeat(np.arange(len(counts)), counts)  # which (length, state) each child belongs to
        idx = (starts.ravel() - np.cumsum(counts) + counts)[node] + np.arange(len(node))
        owner = node % B
        out, at = {}, 0
        for j, total in zip(levels, per):
            out[j] = (idx[at:at + total], owner[at:at + total])
            at += total
        return out

    def advance(self, ctx: np.ndarray, units: np.ndarray, kids) -> np.ndarray:
        """The states after each state of `ctx` (N-1, B) is followed by `units` (B,); `kids`
        from rows(..., need_kids=True)."""
        V, N, d = self.V, self.N, self.d
        new = np.empty_like(ctx)
        if N == 1:
            return new
        new[0] = units
        top = min(d, N - 1)
        if top > 1:  # tabulated steps; no context: the first row, all -1
            c = ctx[: top - 1]
            new[1:top] = self.steps.take(np.where(c >= 0, c * V + self.step_first[1:top, None], 0) + units)
        if top < N - 1:
            new[max(top, 1):] = -1
            for j in range(max(d, 1), N - 1):
                idx, row = kids[j][:2]
                hit = self.words[idx] == units[row]
                new[j][row[hit]] = idx[hit] - self.offset[j]
        return new

    def start_state(self, count: int, bos: np.ndarray) -> np.ndarray:
        """States before the first unit: after <s> where `bos`, else no context at all."""
        ctx = np.full((max(self.N - 1, 1), count), -1, dtype=np.int64)
        ctx[0][bos] = self.bos
        return ctx[: self.N - 1] if self.N > 1 else ctx[:0]

    # -- the encoder's states, without stepping -------------------------------------------
    def states(self, units: np.ndarray, starts: np.ndarray, lengths: np.ndarray, bos: np.ndarray,
               s0: int, s1: int) -> tuple[np.ndarray, np.ndarray]:
        """The states and units of steps s0..s1-1 of the sequences (units[starts[i]:starts[i] +
        lengths[i]], after <s> where `bos`), in coding order: step by step, sequence by
        sequence. Each sequence is read from N-1 units before s0 (all a state depends on)."""
        N = self.N
        alive = np.flatnonzero(lengths > s0)
        pre = min(s0, N - 1)
        ends = np.minimum(lengths[alive], s1)
        first = s0 - pre  # the window's first unit, in its sequence
        lead = (bos[alive] & (first == 0)).astype(np.int64)  # a <s> before the window
        sizes = ends - first + lead
        where = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        stream = np.empty(int(sizes.sum()), dtype=np.int64)
        stream[ranges(where + lead, ends - first)] = units[ranges(starts[alive] + first, ends - first)]
        stream[where[lead == 1]] = self.bos
        cut = np.zeros(len(stream), dtype=bool)
        cut[where[lead == 0]] = True
        seq = np.repeat(np.arange(len(alive)), ends - s0)
        s = ranges(np.full(len(alive), s0), ends - s0)
        order = np.argsort(s, kind="stable")
        seq, s = seq[order], s[order]
        at = where[seq] + lead[seq] + (s - first)  # each coded unit's place in the stream
        symbols = stream[at]
        if N == 1:
            return np.zeros((0, len(at)), dtype=np.int64), symbols
        ctx = self.walk(stream, cut).take(np.maximum(at - 1, 0), axis=1)
        ctx[:, at == where[seq]] = -1  # the first unit of a window without <s> has no context
        return ctx, symbols

    def walk(self, stream: np.ndarray, cut: np.ndarray) -> np.ndarray:
        """The state (N-1, T) after each unit of `stream`, no context reaching back past <s> or a
        `cut`: what lmladder.ngrammodel's positions() finds, through the same transitions as
        `advance`."""
        V, N, d = self.V, self.N, self.d
        out = np.full((N - 1, len(stream)), -1, dtype=np.int64)
        out[0] = stream
        blocked = cut | (stream == self.bos)
        for j in range(1, N - 1):
            prev = np.full(len(stream), -1, dtype=np.int64)
            prev[1:] = out[j - 1][:-1]
            pos = np.flatnonzero((prev >= 0) & ~blocked)
            if j < d:
                out[j][pos] = self.steps[self.step_first[j] + prev[pos] * V + stream[pos]]
            else:
                out[j][pos] = counting.lookup(self.model.tables[j].keys,
                                              prev[pos].astype(np.uint64) * np.uint64(V) + stream[pos].astype(np.uint64))
        return out
