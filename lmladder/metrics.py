"""The scoring contract: how every rung is measured, computed here and nowhere else.

A rung is any object with

    score(documents: Sequence[str]) -> UnitScores

returning the natural-log probability of each unit it predicts (characters, words, tokens)
over all the documents, and how many characters and bytes of the documents those units
cover, which must be all of them: no character may be skipped and no unit may be an
`<unk>` that hides its spelling. (Rungs also write text: lmladder.rung, lmladder.generate.)

From the total negative log-likelihood NLL = -sum ln P (nats):

    bits per character   = NLL / ln 2 / #characters (Unicode code points)   <- the headline
    bits per UTF-8 byte  = NLL / ln 2 / #bytes
    word perplexity      = exp(NLL / #words), words = whitespace-separated (lm-evaluation-harness)
    token perplexity     = exp(NLL / #units), for the rung's own units

The end of a document is not predicted: every rung is scored on the characters alone.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Protocol, Sequence

import numpy as np

from lmladder.errors import LadderError


@dataclass
class UnitScores:
    logprob: np.ndarray  # ln P of each predicted unit, float64
    chars: int  # characters of the text these units cover
    bytes: int  # UTF-8 bytes of the text these units cover

    @classmethod
    def concat(cls, parts: Sequence["UnitScores"]) -> "UnitScores":
        if not parts:
            return cls(np.zeros(0), 0, 0)
        return cls(np.concatenate([p.logprob for p in parts]), sum(p.chars for p in parts),
                   sum(p.bytes for p in parts))


class Rung(Protocol):
    def score(self, documents: Sequence[str]) -> UnitScores: ...


@dataclass
class Metrics:
    bits_per_char: float
    bits_per_byte: float
    word_perplexity: float | None
    token_perplexity: float | None
    nll_nats: float
    chars: int
    bytes: int
    words: int
    tokens: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def text_counts(documents: Sequence[str]) -> tuple[int, int, int]:
    """Characters, UTF-8 bytes and whitespace-separated words of the documents."""
    chars = sum(len(d) for d in documents)
    nbytes = sum(len(d.encode("utf-8")) for d in documents)
    words = sum(word_count(d) for d in documents)
    return chars, nbytes, words


def word_count(text: str, piece: int = 1 << 16) -> int:
    """len(text.split()), a piece at a time (so no list of every word is built): a word cut by a
    piece's end is counted in both pieces, once too often."""
    count, before = 0, False  # whether the previous piece ended inside a word
    for at in range(0, len(text), piece):
        part = text[at:at + piece]
        count += len(part.split()) - (before and not part[0].isspace())
        before = not part[-1].isspace()
    return count


def bits_per_char(nats: float, chars: int) -> float:
    """The headline: a total negative log-likelihood in nats, in bits per character of the text."""
    return nats / math.log(2) / chars


def compute(scores: UnitScores, documents: Sequence[str]) -> Metrics:
    chars, nbytes, words = text_counts(documents)
    if scores.chars != chars or scores.bytes != nbytes:
        raise RuntimeError(
            f"a rung's units cover {scores.chars} characters / {scores.bytes} bytes of a text with "
            f"{chars} / {nbytes}: every character must be scored"
        )
    if chars == 0:
        raise LadderError("nothing to score: the text is empty")
    logprob = np.asarray(scores.logprob, dtype=np.float64)
    if not np.all(np.isfinite(logprob)) or np.any(logprob > 1e-9):
        raise RuntimeError("a rung returned a log-probability that is not finite and <= 0")
    nll = float(-logprob.sum())
    tokens = int(logprob.size)
    return Metrics(
        bits_per_char=bits_per_char(nll, chars),
        bits_per_byte=nll / math.log(2) / nbytes,
        word_perplexity=math.exp(min(nll / words, 700.0)) if words else None,
        token_perplexity=math.exp(min(nll / tokens, 700.0)) if tokens else None,
        nll_nats=nll,
        chars=chars,
        bytes=nbytes,
        words=words,
        tokens=tokens,
    )


def evaluate(rung: Rung, documents: Sequence[str]) -> Metrics:
    """Score `documents` with `rung` in one deterministic full pass."""
    return compute(rung.score(documents), documents)
