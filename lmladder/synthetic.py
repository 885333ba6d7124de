"""Synthetic corpora whose true entropy rate is known exactly.

Both generators are finite-state sources: in state s the next character c is drawn from
p_s, and the next state is a function of (s, c). Because the state is a function of the text
so far, the entropy rate of the character process is exactly

    H = sum_s pi(s) * H(p_s)   bits per character,

with pi the stationary distribution of the state chain. A good model's bits per character on
a long sample of such a source should approach H from above; that checks every rung's metric.

- `markov`: a random order-k character Markov chain. The state is the last k characters; each
  state's next-character distribution is drawn from a symmetric Dirichlet (the `concentration`
  sets how peaked it is), all from one seed.
- `parens`: balanced-parenthesis strings, one per line, the toy language of Wolfram's essay on
  ChatGPT. The state is the nesting depth. At depth 0 the string ends ("\\n", the end marker)
  with `stop_probability`, else "(" opens; at depth 1..max_depth-1 "(" opens with
  `open_probability`, else ")" closes; at max_depth ")" must close.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import random
from dataclasses import dataclass

import numpy as np

from lmladder.errors import LadderError


@dataclass
class Source:
    alphabet: str
    probs: np.ndarray  # (S, A): next-character distribution per state
    next_state: np.ndarray  # (S, A): state after emitting each character
    start: int = 0

    def stationary(self) -> np.ndarray:
        states, symbols = self.probs.shape
        pi = np.full(states, 1.0 / states)
        flat_next = self.next_state.ravel()
        for _ in range(100_000):
            new = np.bincount(flat_next, weights=(pi[:, None] * self.probs).ravel(), minlength=states)
            if np.abs(new - pi).max() < 1e-15:
                return new
            pi = new
        return pi

    def entropy_rate(self) -> float:
        """Bits per character, exactly (up to floating point)."""
        p = self.probs
        with np.errstate(divide="ignore", invalid="ignore"):
            h = -np.where(p > 0, p * np.log2(p), 0.0).sum(axis=1)
        return float(self.stationary() @ h)

    def generate(self, n_chars: int, seed: int) -> str:
        """n_chars characters from the source, starting in `start` (a sequential chain: each
        character depends on the last, so this one loop is inherent; the text is cached)."""
        rng = random.Random(seed)
        cdfs = [np.cumsum(row).tolist() for row in self.probs]
        for c in cdfs:
            c[-1] = 1.0 + 1e-12
        nxt = self.next_state.tolist()
        alphabet = self.alphabet
        out = []
        s = self.start
        draw = rng.random
        for _ in range(n_chars):
            c = bisect.bisect_right(cdfs[s], draw())
            out.append(alphabet[c])
            s = nxt[s][c]
        return "".join(out)


def markov_source(alphabet: str, order: int, concentration: float, seed: int) -> Source:
    a = len(alphabet)
    if a < 2 or order < 1 or a**order > 1_000_000:
        raise LadderError("markov needs an alphabet of 2+ characters and alphabet^order <= 1,000,000")
    states = a**order
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(a, concentration), size=states)
    probs = np.maximum(probs, 1e-6)
    probs /= probs.sum(axis=1, keepdims=True)
    s = np.arange(states)[:, None]
    next_state = (s * a + np.arange(a)[None, :]) % states
    return Source(alphabet, probs, next_state)


def parens_source(open_probability: float, stop_probability: float, max_depth: int) -> Source:
    alphabet = "()\n"
    probs = np.zeros((max_depth + 1, 3))
    next_state = np.zeros((max_depth + 1, 3), dtype=np.int64)
    probs[0] = [1 - stop_probability, 0.0, stop_probability]
    next_state[0] = [1, 0, 0]
    for d in range(1, max_depth + 1):
        p_open = open_probability if d < max_depth else 0.0
        probs[d] = [p_open, 1 - p_open, 0.0]
        next_state[d] = [min(d + 1, max_depth), d - 1, d]
    return Source(alphabet, probs, next_state)


def build_source(entry: dict) -> Source:
    kind = entry["generator"]
    if kind == "markov":
        return markov_source(entry["alphabet"], int(entry["order"]), float(entry["concentration"]), int(entry["seed"]))
    if kind == "parens":
        return parens_source(float(entry["open_probability"]), float(entry["stop_probability"]), int(entry["max_depth"]))
    raise LadderError(f"unknown generator {kind!r} in the corpus registry")


def settings_hash(entry: dict) -> str:
    return hashlib.sha256(json.dumps(entry, sort_keys=True).encode()).hexdigest()
