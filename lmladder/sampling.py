"""One sampler for every rung: log-probabilities (or logits) in, next unit out.

Settings: temperature T (0 = greedy argmax; T > 0 divides the logits by T), top-k (keep
exactly the k most likely units; ties go to the lower id), top-p (keep the smallest set of
most likely units whose probability reaches p). Defaults: T = 0.8, no top-k, no top-p.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lmladder.errors import LadderError


@dataclass(frozen=True)
class SampleSettings:
    temperature: float = 0.8
    top_k: int | None = None
    top_p: float | None = None

    def __post_init__(self) -> None:
        problems = []
        if not (self.temperature >= 0):
            problems.append(f"--temperature must be >= 0 (got {self.temperature})")
        if self.top_k is not None and self.top_k < 1:
            problems.append(f"--top-k must be >= 1 (got {self.top_k})")
        if self.top_p is not None and not (0 < self.top_p <= 1):
            problems.append(f"--top-p must be in (0, 1] (got {self.top_p})")
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


def choose(logits: np.ndarray, settings: SampleSettings, rng: np.random.Generator) -> np.ndarray:
    """Next unit ids (B,) from (B, V) logits or log-probabilities."""
    logits = np.atleast_2d(logits)
    if settings.temperature == 0:
        return np.argmax(logits, axis=-1)  # the first maximum: ties to the lower id
    z = filter_logits(logits, settings)
    z = z - z.max(axis=-1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=-1, keepdims=True)
    u = rng.random(p.shape[0])
    cdf = np.cumsum(p, axis=-1)
    idx = (cdf < u[:, None]).sum(axis=-1)
    return np.minimum(idx, p.shape[1] - 1)
