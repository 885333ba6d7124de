"""One sampler for every rung: log-probabilities (or logits) in, next unit out.

Settings: temperature T (0 = greedy argmax; T > 0 divides the logits by T), top-k (keep
exactly the k most likely units; ties go to the lower id), top-p (keep the smallest set of
most likely units whose probability reaches p). Defaults: T = 0.8, no top-k, no top-p.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from lmladder.errors import LadderError


@dataclass(frozen=True)
class SampleSettings:
    temperature: float = 0.8
    top_k: int | None = None
    top_p: float | None = None

    def __post_init__(self) -> None:
        problems = []
        if not (0 <= self.temperature < float("inf")):
            problems.append(f"--temperature must be a number >= 0 (got {self.temperature})")
        if self.top_k is not None and self.top_k < 1:
            problems.append(f"--top-k must be >= 1 (got {self.top_k})")
        if self.top_p is not None and not (0 < self.top_p <= 1):
            problems.append(f"--top-p must be in (0, 1] (got {self.top_p})")
        if self.temperature == 0 and (self.top_k is not None or self.top_p is not None):
            problems.append("--temperature 0 is greedy (the likeliest unit every time), where --top-k and --top-p "
                            "change nothing; leave them out, or give a temperature above 0")
        if problems:
            raise LadderError("; ".join(problems))


def filter_logits(logits: np.ndarray, settings: SampleSettings) -> np.ndarray:
    """Apply temperature, top-k and top-p to a (B, V) array; removed entries become -inf."""
    logits = np.asarray(logits, dtype=np.float64)
    if settings.temperature > 0:
        logits = logits / settings.temperature
    if settings.top_k is None and settings.top_p is None:
        return logits
    # a stable sort on -logits ranks the most likely first, ties to the lower id
    order = np.argsort(-logits, axis=-1, kind="stable")
    ranked = np.take_along_axis(logits, order, axis=-1)
    keep = np.ones_like(ranked, dtype=bool)
    if settings.top_k is not None:
        keep[..., settings.top_k:] = False
    if settings.top_p is not None:
        z = ranked - ranked.max(axis=-1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=-1, keepdims=True)
        before = np.cumsum(p, axis=-1) - p  # mass of the units ranked above
        keep &= before < settings.top_p - 1e-12
    keep[..., 0] = True
    ranked = np.where(keep, ranked, -np.inf)
    out = np.empty_like(logits)
    np.put_along_axis(out, order, ranked, axis=-1)
    return out


def sample_rngs(seed: int, num_samples: int) -> list[np.random.Generator]:
    """One generator per sample, so sample i's text does not depend on how many samples are
    drawn beside it (batched or one by one, streamed or not: the same text)."""
    return [np.random.default_rng([seed, i]) for i in range(num_samples)]


def choose(logits: np.ndarray, settings: SampleSettings,
           rng: np.random.Generator | Sequence[np.random.Generator]) -> np.ndarray:
    """Next unit ids (B,) from (B, V) logits or log-probabilities. `rng` is one generator for
    the batch or one per row (see sample_rngs)."""
    logits = np.atleast_2d(logits)
    if settings.temperature == 0:
        return np.argmax(logits, axis=-1)  # the first maximum: ties to the lower id
    z = filter_logits(logits, settings)
    z = z - z.max(axis=-1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=-1, keepdims=True)
    if isinstance(rng, np.random.Generator):
        u = rng.random(p.shape[0])
    else:
        u = np.array([g.random() for g in rng])
    cdf = np.cumsum(p, axis=-1)
    idx = (cdf < u[:, None]).sum(axis=-1)
    return np.minimum(idx, p.shape[1] - 1)


def choose_torch(logits, settings: SampleSettings, u, ban_id: int | None = None):
    """`choose` on torch tensors, on whatever device they live: (B, V) logits and the (B,)
    uniform draws that `choose` would take from each sample's generator -> (B,) ids. The same
    arithmetic (float64, stable ranking), so it picks what `choose` picks, without a round trip
    to the host; the GPU decoder samples with it."""
    import torch

    z = logits.to(torch.float64, copy=True)
    if ban_id is not None:
        z[:, ban_id] = -float("inf")
    if settings.temperature == 0:
        return torch.argmax(z, dim=-1)  # the first maximum: ties to the lower id
    z = z / settings.temperature
    if settings.top_k is not None or settings.top_p is not None:
        order = torch.sort(-z, dim=-1, stable=True).indices
        ranked = torch.gather(z, -1, order)
        keep = torch.ones_like(ranked, dtype=torch.bool)
        if settings.top_k is not None:
            keep[:, settings.top_k:] = False
        if settings.top_p is not None:
            p = torch.softmax(ranked, dim=-1)
            keep &= (torch.cumsum(p, dim=-1) - p) < settings.top_p - 1e-12
        keep[:, 0] = True
        z = torch.empty_like(z).scatter_(-1, order, torch.where(keep, ranked, -float("inf")))
    p = torch.exp(z - z.max(dim=-1, keepdim=True).values)
    p = p / p.sum(dim=-1, keepdim=True)
    idx = (torch.cumsum(p, dim=-1) < u.view(-1, 1)).sum(dim=-1)
    return torch.clamp(idx, max=p.shape[1] - 1)


def _ngram_hashes(ids: np.ndarray, n: int) -> np.ndarray:
    """A 64-bit polynomial hash of every n-gram of an integer sequence (vectorised)."""
    ids = np.asarray(ids, dtype=np.uint64)
    if len(ids) < n:
        return np.zeros(0, dtype=np.uint64)
    h = np.zeros(len(ids) - n + 1, dtype=np.uint64)
    base = np.uint64(0x100000001B3)
    with np.errstate(over="ignore"):
        for j in range(n):
            h = h * base + ids[j: len(ids) - n + 1 + j] + np.uint64(1)
    return h


def novelty(samples: Sequence[str], train_docs: Sequence[str], unit: str) -> list[float | None]:
    """For each sample, the share of its word 4-grams (unit "word") or letter 8-grams (unit
    "char") that occur verbatim in the training text: 1.0 is all memorised, 0.0 all new."""
    from lmladder.vocab import codepoints

    if unit == "word":
        n = 4
        words = [d.split() for d in train_docs] + [s.split() for s in samples]
        vocab, inverse = np.unique(np.array([w for doc in words for w in doc] or [""]), return_inverse=True)
        pieces, start = [], 0
        for doc in words:
            pieces.append(inverse[start: start + len(doc)])
            start += len(doc)
        train_ids, sample_ids = pieces[: len(train_docs)], pieces[len(train_docs):]
    else:
        n = 8
        train_ids = [codepoints(d) for d in train_docs]
        sample_ids = [codepoints(s) for s in samples]
    known = np.unique(np.concatenate([_ngram_hashes(t, n) for t in train_ids] or [np.zeros(0, np.uint64)]))
    out: list[float | None] = []
    for ids in sample_ids:
        h = _ngram_hashes(ids, n)
        if len(h) == 0:
            out.append(None)
            continue
        pos = np.minimum(np.searchsorted(known, h), max(len(known) - 1, 0))
        out.append(float(np.mean(known[pos] == h)) if len(known) else 0.0)
    return out
