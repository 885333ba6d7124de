"""The bottom rungs: letters with no context at all.

- `uniform`: every symbol of the training alphabet, plus the escape, equally likely:
  log2(V + 1) bits for each seen character.
- `unigram`: letter frequencies with add-one smoothing, P(c) = (n_c + 1) / (N + V + 1) over the
  V training characters and the escape (whose count is 0).

Unseen characters follow the escape rule of lmladder.vocab.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lmladder import artifacts
from lmladder.atomic import MARKER, atomic_dir, write_json
from lmladder.errors import LadderError
from lmladder.metrics import UnitScores
from lmladder.rung import Built
from lmladder.vocab import CharVocab

KINDS = ("uniform", "unigram")


class LetterDistribution:
    """A context-free distribution over the character vocabulary (ids incl. the escape)."""

    def __init__(self, kind: str, vocab: CharVocab, counts: np.ndarray):
        self.kind = kind
        self.vocab = vocab
        self.counts = np.asarray(counts, dtype=np.int64)
        if kind == "uniform":
            probs = np.full(vocab.size, 1.0 / vocab.size)
        else:
            probs = (self.counts + 1.0) / (self.counts.sum() + vocab.size)
        self.logp = np.log(probs)

    @property
    def parameters(self) -> int:
        return int(self.vocab.size)

    def score(self, documents: Sequence[str]) -> UnitScores:
        parts = []
        for doc in documents:
            ids = self.vocab.encode(doc)
            lp = self.logp[ids] + self.vocab.spelling_logprob(ids)
            parts.append(UnitScores(lp, len(doc), len(doc.encode("utf-8"))))
        return UnitScores.concat(parts)

    # -- the sampling contract (lmladder.rung): no context, so the prompt is none either ----------
    stop_unit = None

    def prompt_units(self, prompt: str) -> list[int]:
        return []

    def next_logprobs(self, contexts: list[list[int]]) -> np.ndarray:
        return np.broadcast_to(self.logp, (len(contexts), self.vocab.size))

    def stream_decoder(self, rng: np.random.Generator, settings=None, prompt: str = ""):
        return lambda unit: self.vocab.decode([unit], rng)

    def save(self, out: str | Path, corpus: dict[str, Any], split: str) -> None:
        with atomic_dir(out) as tmp:
            self.vocab.save(tmp / "vocab.json")
            write_json(tmp / MARKER, artifacts.header(
                "lmladder-model", kind=self.kind, unit="char", corpus=corpus, split=split,
                config={}, counts=self.counts.tolist(), parameters=self.parameters))


def train(kind: str, train_docs: Sequence[str]) -> LetterDistribution:
    if kind not in KINDS:
        raise LadderError(f"unknown baseline {kind!r}; choose one of {', '.join(KINDS)}")
    vocab = CharVocab.from_texts(train_docs)
    counts = np.zeros(vocab.size, dtype=np.int64)
    for doc in train_docs:
        counts += np.bincount(vocab.encode(doc), minlength=vocab.size)
    return LetterDistribution(kind, vocab, counts)


def load(folder: Path, header: dict[str, Any]) -> LetterDistribution:
    vocab = CharVocab.load(folder / "vocab.json")
    try:
        counts = np.asarray(header.get("counts", []), dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        counts = np.zeros(0, dtype=np.int64)
    if counts.shape != (vocab.size,) or (counts < 0).any():
        raise LadderError(f"{folder / MARKER} has counts that are not one whole number >= 0 for each character "
                          "of vocab.json; the file is corrupt, rebuild the model")
    return LetterDistribution(header["kind"], vocab, counts)


def from_ladder(kind: str, settings: dict, splits, profile: str) -> Built:
    """The `uniform` and `unigram` kinds of a ladder file (no settings)."""
    rung = train(kind, splits.require("train"))
    return Built(rung, rung.parameters, "parameters")
