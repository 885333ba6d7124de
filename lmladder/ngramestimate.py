"""Estimation: n-gram counts (lmladder.counts) -> the tables of a query model (lmladder.ngrammodel).

Interpolated modified Kneser-Ney (Chen & Goodman 1998), as KenLM's lmplz computes it (Heafield
et al. 2013), order by order over the adjusted counts a:

    D1, D2, D3+ = closed form from the counts-of-counts t1..t4 of adjusted counts:
        Y = t1 / (t1 + 2 t2),  Dk = k - (k+1) Y t(k+1) / tk
    where that is undefined or out of range [0, k] (tiny or character data) the order falls
    back to D1=0.5, D2=1, D3+=1.5 (KenLM's --discount_fallback), so building never fails.
    u(w|h)   = (a(hw) - D(a(hw))) / sum_x a(hx)
    gamma(h) = (D1 N1(h) + D2 N2(h) + D3+ N3+(h)) / sum_x a(hx)
    p(w|h)   = u(w|h) + gamma(h) p(w|h'),   p(w|empty) = u(w) + gamma / (V - 1)

with V - 1 the predictable units (all but the boundary). Every stored n-gram keeps ln p, every
n-gram that is a context ln gamma as its backoff. Add-k and mle keep the raw counts and each
context's total; lmladder.ngrammodel turns them into probabilities when scoring.

A --kenlm-compat model takes its counts-of-counts as lmplz collects them, one n-gram per order
counted with its raw count (kenlm_counts_of_counts), so its discounts are lmplz's too.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lmladder import counts as counting
from lmladder.ngrammodel import NgramConfig, NgramModel, Tables

FALLBACK = (0.5, 1.0, 1.5)


def counts_of_counts(adjusted: np.ndarray) -> np.ndarray:
    """t0..t4: how many n-grams have each adjusted count (t4: 4; larger counts are not needed)."""
    return np.bincount(np.minimum(adjusted, 5), minlength=6)[:5].astype(np.float64)


def kenlm_counts_of_counts(c: counting.Counts) -> list[np.ndarray]:
    """Each order's counts-of-counts as KenLM's lmplz collects them (lm/builder/adjust_counts.cc).
    It walks the top-order n-grams in suffix order (last unit first, by vocabulary id) and adds
    each lower n-gram to the counts-of-counts when the walk leaves it, with its adjusted count;
    the lower n-grams still open at the end are flushed after the loop with their *raw* count
    instead. Those are the suffixes of the last top-order n-gram: for unigrams the highest id,
    which in KenLM's first-sight numbering is the last new token of the text; each longer one
    extends the one below by its left neighbour with the highest id, up to the first that
    starts with <s> (the walk opens none past <s>) or order N-1."""
    out = [counts_of_counts(t.adjusted) for t in c.tables]
    row = c.vocab_size - 1
    for n in range(1, c.order):
        t = c.tables[n - 1]
        adjusted, raw = int(t.adjusted[row]), int(t.count[row])
        if adjusted < 5:
            out[n - 1][adjusted] -= 1
        if raw < 5:
            out[n - 1][raw] += 1
        if t.bos[row] or n == c.order - 1:
            break
        longer = np.flatnonzero(c.tables[n].suffix == row)  # rows of order n+1 that end with this n-gram
        first = longer
        for k in range(n, 0, -1):  # walk each one's prefix chain back to its first unit
            first = c.tables[k].ctx[first]
        row = int(longer[np.argmax(first)])
    return out


def discounts(t: np.ndarray) -> tuple[tuple[float, float, float], bool]:
    """D1, D2, D3+ from counts-of-counts t0..t4 (Chen & Goodman eq. 26), and whether the fallback was used."""
    if t[1] == 0 or t[2] == 0 or t[3] == 0:
        return FALLBACK, True
    y = t[1] / (t[1] + 2 * t[2])
    d = tuple(float(j - (j + 1) * y * t[j + 1] / t[j]) for j in (1, 2, 3))
    if any(not (0 <= d[j - 1] <= j) for j in (1, 2, 3)):
        return FALLBACK, True
    return d, False  # type: ignore[return-value]


def _chunks(ctx: np.ndarray):
    """Row ranges of about counting.CHUNK rows of one order's table (sorted by `ctx`) that never
    split a context's rows, so per-context sums come out bit for bit as over the whole table."""
    a, U, size = 0, len(ctx), counting.CHUNK
    while a < U:
        b = min(a + size, U)
        if b < U:
            at = int(np.searchsorted(ctx, ctx[b], side="left"))
            b = at if at > a else int(np.searchsorted(ctx, ctx[b], side="right"))
        yield a, b
        a = b


def _kn_order(t: counting.OrderTable, d: tuple[float, float, float], lower: np.ndarray | None,
              V: int, nctx: int) -> tuple[np.ndarray, np.ndarray]:
    """ln p of every n-gram of one order (`lower`: ln p of the order below) and gamma of each of
    its `nctx` contexts, a chunk of rows at a time (the only full-size arrays are the results)."""
    dvec = np.array([0.0, *d])
    lp = np.empty(len(t))
    gamma = np.ones(nctx)  # a context without rows here keeps 1
    for a, b in _chunks(t.ctx):
        ctx = t.ctx[a:b].astype(np.intp)
        c0 = int(ctx[0])
        ctx -= c0
        adjusted = t.adjusted[a:b]
        a_f = adjusted.astype(np.float64)
        dk = dvec[np.minimum(adjusted, 3)]  # 0 for adjusted count 0
        denom = np.bincount(ctx, weights=a_f)
        mass = np.bincount(ctx, weights=dk)
        with np.errstate(divide="ignore", invalid="ignore"):
            g = np.where(denom > 0, mass / denom, 1.0)
            den = denom[ctx]
            u = np.where(den > 0, (a_f - dk) / den, 0.0)
        gamma[c0:c0 + len(g)] = g
        if lower is None:
            p = u + g[0] / (V - 1)
        else:
            p = u + g[ctx] * np.exp(lower[t.suffix[a:b]])
        with np.errstate(divide="ignore"):
            lp[a:b] = np.log(p)
    return lp, gamma


def estimate_kn(c: counting.Counts, kenlm_compat: bool = False) -> tuple[list[Tables], list[dict]]:
    """The model's tables: ln p and ln backoff of every stored n-gram, and each order's discounts
    (from lmplz's counts-of-counts with `kenlm_compat`). Consumes `c`: each order's counts are
    dropped as soon as its table is made, so counts and tables are never all held at once."""
    V, N = c.vocab_size, c.order
    tables: list[Tables] = []
    info = []
    coc = kenlm_counts_of_counts(c) if kenlm_compat else [counts_of_counts(t.adjusted) for t in c.tables]
    for n in range(1, N + 1):
        t = c.tables[n - 1]
        (d1, d2, d3), fell = discounts(coc[n - 1])
        info.append({"order": n, "ngrams": int(len(t)), "D1": d1, "D2": d2, "D3+": d3, "fallback": fell})
        lower = tables[-1] if tables else None
        lp, gamma = _kn_order(t, (d1, d2, d3), None if lower is None else lower.logp, V,
                              1 if lower is None else len(lower.logp))
        if lower is None:
            lp[c.bos] = 0.0  # never predicted (KenLM writes 0 too)
        else:  # gamma of each n-1-gram as a context: its ln backoff, 0 for one that is no context
            has = np.zeros(len(gamma), dtype=bool)
            has[t.ctx] = True
            with np.errstate(divide="ignore"):
                np.log(gamma, out=gamma)
            gamma[~has] = 0.0
            lower.backoff = gamma
        tables.append(Tables(c.keys(n), lp, np.zeros(0)))
        c.tables[n - 1] = _RELEASED
    tables[-1].backoff = np.zeros(len(tables[-1].logp))
    return tables, info


_RELEASED = counting.OrderTable(*(np.zeros(0, np.int64),) * 5, np.zeros(0, bool))


def from_counts(config: NgramConfig, units: list[str], bos: int, escape: int, eos: int | None,
                c: counting.Counts, meta: dict[str, Any]) -> NgramModel:
    """The query model of `config.smoothing` over the counts of a unit stream; `meta` gains the
    discounts (kn) or the token total (add-k, mle). Consumes `c` (its tables are released as
    the model's are made)."""
    if config.smoothing == "kn":
        tables, meta["discounts"] = estimate_kn(c, config.kenlm_compat)
        return NgramModel(config, units, bos, escape, eos, tables, meta)
    meta["tokens"] = int(c.tables[0].count.sum())
    tables = []
    for n in range(1, c.order + 1):
        t = c.tables[n - 1]
        if n < c.order:
            totals = np.bincount(c.tables[n].ctx, weights=c.tables[n].count, minlength=len(t))
        else:
            totals = np.zeros(len(t))
        tables.append(Tables(c.keys(n), t.count.astype(np.float64), totals))
        c.tables[n - 1] = _RELEASED
    return NgramModel(config, units, bos, escape, eos, tables, meta)
