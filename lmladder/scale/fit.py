"""The two laws fitted to a sweep, their bootstrap intervals, and the compute-optimal model.

(a) L(C) = E + A C^-alpha, on the compute frontier: the runs that beat every run of less compute
    (Kaplan et al. 2020; the GPT-4 report's L(C) = a C^b + c).
(b) L(N, D) = E + A / N^alpha + B / D^beta over every run, N the non-embedding parameters and D
    the training tokens (Hoffmann et al. 2022, "Chinchilla", approach 3).

Both are fitted as Chinchilla fits (b): in logs, log L = LSE(e, a_1 - alpha_1 x_1, ...), with
E = exp(e) and A_k = exp(a_k), minimising the Huber loss (delta 1e-3) between predicted and
observed log-losses, from the best points of a grid of starting values, each refined by
L-BFGS (scipy). The Huber loss keeps one odd run from dragging the fit; the logs weigh every
run's relative error alike. The losses are bits per character.

Intervals: the fits are repeated on bootstrap resamples of the runs (with replacement), and an
interval is the 2.5th to 97.5th percentile of what the resamples give: the spread the finite
sweep leaves in the parameters, not the noise of one more run.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Sequence

import numpy as np

from lmladder.errors import LadderError
from lmladder.scale.plan import Family, flops_per_token, non_embedding_params

HUBER_DELTA = 1e-3  # Hoffmann et al. 2022
# the starting grid (Chinchilla's, widened for bits per character and for compute's larger logs)
GRID_E = (-1.0, -0.5, 0.0, 0.5, 1.0, 1.5)
GRID_A = tuple(np.arange(0.0, 30.1, 2.5))
GRID_ALPHA = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5)
STARTS = 16  # the best grid points refined by L-BFGS
MAX_EXPONENT = 10.0  # steeper is a step, not a power law: the term is 0 across the runs
MIN_DROP = 0.01  # losses that fall by less than this (relative) across a sweep carry no law


def _lse_model(theta: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """log L-hat = LSE(e, a_k - alpha_k x_k) for parameter rows theta (G, 1 + 2K) and inputs X
    (n, K): the log-predictions (G, n) and the softmax weights of the terms (G, n, 1 + K)."""
    e, a, alpha = theta[:, :1], theta[:, 1::2], theta[:, 2::2]  # (G, 1), (G, K), (G, K)
    terms = np.concatenate([np.broadcast_to(e[:, None, :], (len(theta), len(X), 1)),
                            a[:, None, :] - alpha[:, None, :] * X[None, :, :]], axis=2)  # (G, n, 1 + K)
    top = terms.max(axis=2, keepdims=True)
    w = np.exp(terms - top)
    total = w.sum(axis=2, keepdims=True)
    return (top + np.log(total))[..., 0], w / total


def _huber(r: np.ndarray, delta: float) -> tuple[np.ndarray, np.ndarray]:
    small = np.abs(r) <= delta
    return np.where(small, 0.5 * r**2, delta * (np.abs(r) - 0.5 * delta)), np.clip(r, -delta, delta)


def objective(theta: np.ndarray, X: np.ndarray, log_loss: np.ndarray) -> tuple[float, np.ndarray]:
    """The Huber loss of one parameter vector and its gradient (what L-BFGS minimises)."""
    pred, w = _lse_model(theta[None, :], X)
    value, dh = _huber(pred[0] - log_loss, HUBER_DELTA)
    w = w[0]
    grad = np.empty_like(theta)
    grad[0] = dh @ w[:, 0]
    grad[1::2] = dh @ w[:, 1:]
    grad[2::2] = -(dh[:, None] * w[:, 1:] * X).sum(axis=0)
    return float(value.sum()), grad


@lru_cache(maxsize=2)
def _grid(k: int) -> np.ndarray:
    per_term = list(itertools.product(GRID_A, GRID_ALPHA))
    rows = [[e, *itertools.chain(*terms)] for e in GRID_E for terms in itertools.product(per_term, repeat=k)]
    return np.asarray(rows, dtype=np.float64)


def grid_starts(X: np.ndarray, loss: np.ndarray, count: int = STARTS) -> list[np.ndarray]:
    """The `count` points of the starting grid with the lowest Huber loss on these runs."""
    log_loss = np.log(loss)
    grid = _grid(X.shape[1])
    values = np.concatenate([_huber(_lse_model(grid[i:i + 8192], X)[0] - log_loss, HUBER_DELTA)[0].sum(axis=1)
                             for i in range(0, len(grid), 8192)])
    return list(grid[np.argsort(values)[:count]])


def _objective_squared(u: np.ndarray, X: np.ndarray, log_loss: np.ndarray) -> tuple[float, np.ndarray]:
    """objective() with each exponent written as the square of a free number, so that BFGS,
    which knows no bounds, can reach an exponent of 0 but never pass below it."""
    theta = u.copy()
    theta[2::2] = u[2::2] ** 2
    value, grad = objective(theta, X, log_loss)
    grad[2::2] *= 2 * u[2::2]
    return value, grad


def fit_lse(X: np.ndarray, loss: np.ndarray, starts: Sequence[np.ndarray] | None = None) -> np.ndarray | None:
    """The parameters (e, a_1, alpha_1, ...), every alpha >= 0, that minimise the Huber loss,
    refined by BFGS from each start (default: grid_starts); None when no start ends at finite
    values. (BFGS rather than scipy's L-BFGS-B: the same answer on five parameters, without the
    many tiny BLAS calls that made L-BFGS-B twenty times slower with threads.)"""
    from scipy.optimize import minimize

    log_loss = np.log(loss)
    best, best_value = None, np.inf
    for theta0 in grid_starts(X, loss) if starts is None else starts:
        u0 = np.array(theta0, dtype=np.float64)
        u0[2::2] = np.sqrt(np.maximum(u0[2::2], 0.0))
        res = minimize(_objective_squared, u0, args=(X, log_loss), jac=True, method="BFGS",
                       options={"maxiter": 2000})
        if np.all(np.isfinite(res.x)) and res.fun < best_value:
            best, best_value = res.x, res.fun
    if best is None:
        return None
    best = best.copy()
    best[2::2] = best[2::2] ** 2
    return best


@dataclass
class ComputeLaw:
    """L(C) = E + A C^-alpha."""

    E: float
    A: float
    alpha: float

    def __call__(self, flops):
        with np.errstate(over="ignore", invalid="ignore"):  # a bootstrap law may be extreme: inf/nan, dropped
            return self.E + self.A * np.asarray(flops, dtype=np.float64) ** -self.alpha

    @classmethod
    def from_theta(cls, theta: np.ndarray) -> "ComputeLaw":
        return cls(float(np.exp(theta[0])), float(np.exp(theta[1])), float(theta[2]))

    def theta(self) -> np.ndarray:
        return np.log(np.maximum([self.E, self.A, 1.0], 1e-300)) * [1, 1, 0] + [0, 0, self.alpha]


@dataclass
class DataLaw:
    """L(N, D) = E + A / N^alpha + B / D^beta."""

    E: float
    A: float
    alpha: float
    B: float
    beta: float

    def __call__(self, params, tokens):
        n, d = np.asarray(params, dtype=np.float64), np.asarray(tokens, dtype=np.float64)
        with np.errstate(over="ignore", invalid="ignore"):  # a bootstrap law may be extreme: inf/nan, dropped
            return self.E + self.A * n**-self.alpha + self.B * d**-self.beta

    @classmethod
    def from_theta(cls, theta: np.ndarray) -> "DataLaw":
        return cls(float(np.exp(theta[0])), float(np.exp(theta[1])), float(theta[2]), float(np.exp(theta[3])),
                   float(theta[4]))

    def theta(self) -> np.ndarray:
        return (np.log(np.maximum([self.E, self.A, 1.0, self.B, 1.0], 1e-300)) * [1, 1, 0, 1, 0]
                + [0, 0, self.alpha, 0, self.beta])


def frontier(flops: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """Indices, by compute, of the runs whose loss is below that of every run of less compute."""
    order = np.lexsort((loss, flops))
    keep, best = [], np.inf
    for i in order:
        if loss[i] < best:
            keep.append(i)
            best = loss[i]
    return np.asarray(keep, dtype=np.int64)


def isoflop_edges(levels: np.ndarray, params: np.ndarray, loss: np.ndarray) -> dict[str, list[float]]:
    """The budgets (of three runs or more) whose best run is the grid's smallest or largest model
    at that budget: an IsoFLOP curve with its minimum at an edge says the compute-optimal size
    lies outside the sweep, which then samples only one side of it (Hoffmann et al. 2022 fit
    their IsoFLOP parabolas around interior minima)."""
    edges: dict[str, list[float]] = {"smallest": [], "largest": []}
    for level in np.unique(levels):
        at = np.flatnonzero(levels == level)
        if len(at) < 3:
            continue
        best = at[np.argmin(loss[at])]
        if params[best] == params[at].min():
            edges["smallest"].append(float(level))
        elif params[best] == params[at].max():
            edges["largest"].append(float(level))
    return edges


def isoflop_minima(levels: np.ndarray, params: np.ndarray, loss: np.ndarray) -> list[dict[str, Any]]:
    """Hoffmann et al.'s approach 2: at each budget of three runs or more, a parabola in log N
    fitted to the loss; its vertex is that budget's compute-optimal N when it is a minimum inside
    the runs' range of N (else "params" is None: the curve does not turn there)."""
    out = []
    for level in np.unique(levels):
        at = np.flatnonzero(levels == level)
        if len(at) < 3 or len(np.unique(params[at])) < 3:
            continue
        x = np.log(params[at])
        a, b, _ = np.polyfit(x, loss[at], 2)
        vertex = -b / (2 * a) if a > 0 else np.nan
        inside = bool(a > 0 and x.min() < vertex < x.max())
        out.append({"budget": float(level), "runs": int(len(at)), "params": float(np.exp(vertex)) if inside else None})
    return out


def optimal_size_law(minima: list[dict[str, Any]]) -> dict[str, Any] | None:
    """N_opt = k C^a through the budgets' interior minima (a line in log-log); None below two."""
    points = [(m["budget"], m["params"]) for m in minima if m["params"] is not None]
    if len(points) < 2:
        return None
    C, N = np.log(np.array(points)).T
    a, log_k = np.polyfit(C, N, 1)
    return {"a": float(a), "k": float(np.exp(log_k)), "budgets": [float(np.exp(c)) for c in C]}


FLAT = 1e-3  # an exponent below this: the runs cannot tell that variable's values apart


def flat_exponents(law: "ComputeLaw | DataLaw") -> list[str]:
    """The law's exponents at about 0 or past MAX_EXPONENT: either way its term is a constant
    across the runs (E's share, or nothing), and the law says the loss does not depend on that
    variable here."""
    return [name for name in ("alpha", "beta")
            if not FLAT <= getattr(law, name, 1.0) <= MAX_EXPONENT]


def check_falls(flops: np.ndarray, loss: np.ndarray) -> None:
    """A sweep whose loss does not fall with compute has no law to fit: say so."""
    front = frontier(flops, loss)
    small, large = loss[front[0]], loss[front[-1]]
    if (small - large) / large < MIN_DROP:
        raise LadderError(f"the sweep cannot be fitted: its loss falls only from {small:.4f} to {large:.4f} bits/char "
                          f"across {flops.min():.2g}-{flops.max():.2g} FLOPs (less than {MIN_DROP:.0%}); the runs did "
                          "not learn (check the learning rate) or the budgets are too close together")


def fit_compute(flops: np.ndarray, loss: np.ndarray, starts: Sequence[np.ndarray] | None = None,
                levels: np.ndarray | None = None) -> ComputeLaw | None:
    """(a) on the frontier of these runs; None where it has fewer than 3 points or no fit.
    levels: the budgets the runs were planned at, to rank them by (a run's whole steps put it a
    little off its budget, which must not put a worse run of the same budget on the frontier)."""
    idx = frontier(flops if levels is None else levels, loss)
    if len(idx) < 3:
        return None
    theta = fit_lse(np.log(flops[idx])[:, None], loss[idx], starts)
    return None if theta is None else ComputeLaw.from_theta(theta)


def fit_data(params: np.ndarray, tokens: np.ndarray, loss: np.ndarray,
             starts: Sequence[np.ndarray] | None = None) -> DataLaw | None:
    """(b) on every run; None where the runs cannot pin it (fewer than 6, or one size or one
    token count) or no start converges."""
    if len(loss) < 6 or len(np.unique(params)) < 2 or len(np.unique(tokens)) < 2:
        return None
    X = np.column_stack([np.log(params), np.log(tokens)])
    theta = fit_lse(X, loss, starts)
    return None if theta is None else DataLaw.from_theta(theta)


def bootstrap(n_runs: int, refit: Callable[[np.ndarray], dict[str, float]], resamples: int,
              seed: int = 0) -> tuple[dict[str, list[float]], dict[str, int]]:
    """Call refit(indices) on `resamples` resamples of the runs with replacement; it returns the
    quantities it could fit. Returns each quantity's (2.5, 97.5) percentiles, where at least
    half the resamples gave it, and how many resamples gave each."""
    rng = np.random.default_rng(seed)
    values: dict[str, list[float]] = {}
    for _ in range(resamples):
        for key, value in refit(rng.integers(0, n_runs, n_runs)).items():
            if np.isfinite(value):
                values.setdefault(key, []).append(value)
    counts = {k: len(v) for k, v in values.items()}
    intervals = {k: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] for k, v in values.items()
                 if len(v) >= max(2, resamples // 2)}
    return intervals, counts


def optimal_depth(law: DataLaw, budget: float, family: Family, vocab: int,
                  max_depth: int = 96) -> tuple[int, float, float]:
    """The depth of the family, and its tokens, that the fitted L(N, D) says is best for a
    compute budget (every depth from 1 to max_depth tried, D = C / FLOPs a token); returns
    (depth, tokens, predicted loss)."""
    best = None
    for depth in range(1, max_depth + 1):
        n_layer, _, n_embd = family.shape(depth)
        tokens = budget / flops_per_token(n_layer, n_embd, vocab, family.block_size)
        loss = float(law(non_embedding_params(n_layer, n_embd), tokens))
        if best is None or loss < best[2]:
            best = (depth, tokens, loss)
    return best
