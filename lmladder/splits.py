"""Deterministic train/val/test splits.

A split spec is "TRAIN,VAL,TEST" fractions of the corpus's characters (Unicode code points),
summing to 1, e.g. "0.9,0.05,0.05" (the default) or "0.9,0.1,0" (nanoGPT's Tiny Shakespeare
split). Splits are contiguous:

- One document: cut k falls at x = int(f * n), where f is the cumulative fraction and n the
  number of characters, then moves to the end of that line (one past its "\\n"), so no line is
  cut in two. With "0.9,0.1,0" on Tiny Shakespeare this is the split of the KenLM fixtures
  (cut at character 1,003,856). Append "@char" ("0.9,0.1,0@char") to cut at exactly int(f * n)
  instead, mid-line if need be: that is nanoGPT's prepare.py split, reproduced exactly.
- The parts lie in the text in the order train, val, test unless the spec names them:
  "val:0.05,train:0.85,test:0.1" holds out the first 5% as val and the last 10% as test
  (Tiny Shakespeare's default: its test is the KenLM fixtures' test text and nanoGPT's val,
  while val, used to pick n-gram orders and the best neural checkpoint, stays apart from it).
- Several documents: documents stay whole. They are taken in a fixed order (by the sha256 of
  their names, so the order does not depend on file-system listing), and each goes to the
  split that is furthest below its share of the characters (ties to the earlier split; a
  named order changes nothing here).

A split that was asked for (fraction > 0) and comes out empty is an error.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Sequence

from lmladder.errors import LadderError

SPLIT_NAMES = ("train", "val", "test")
DEFAULT_SPLIT = "0.9,0.05,0.05"


@dataclass(frozen=True)
class SplitSpec:
    fractions: tuple[float, float, float]  # train, val, test
    exact_chars: bool = False
    order: tuple[str, str, str] = SPLIT_NAMES  # the order of the parts in a single document

    @classmethod
    def parse(cls, spec: str | "SplitSpec" | None) -> "SplitSpec":
        if isinstance(spec, SplitSpec):
            return spec
        text = (spec or DEFAULT_SPLIT).strip()
        exact = text.endswith("@char")
        if exact:
            text = text[: -len("@char")]
        parts = text.split(",")
        hint = ("give three fractions TRAIN,VAL,TEST that sum to 1, e.g. --split 0.9,0.05,0.05, or name them "
                "in the text's order, e.g. val:0.05,train:0.85,test:0.1")
        if len(parts) != 3:
            raise LadderError(f"split {spec!r} must have three parts; {hint}")
        named = [p.partition(":") for p in parts]
        order = SPLIT_NAMES
        if any(sep for _, sep, _ in named):
            order = tuple(name.strip() for name, _, _ in named)
            if sorted(order) != sorted(SPLIT_NAMES):
                raise LadderError(f"split {spec!r} must name each of train, val and test once; {hint}")
            parts = [dict((n.strip(), v) for n, _, v in named)[k] for k in SPLIT_NAMES]
        try:
            fractions = tuple(float(p) for p in parts)
        except ValueError:
            raise LadderError(f"split {spec!r} has a part that is not a number; {hint}") from None
        if any(not (0.0 <= f <= 1.0) for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
            raise LadderError(f"split {spec!r} is not three fractions in [0, 1] summing to 1; {hint}")
        if fractions[0] <= 0:
            raise LadderError(f"split {spec!r} leaves no training text; {hint}")
        return cls(fractions, exact, order)  # type: ignore[arg-type]

    def __str__(self) -> str:
        if self.order == SPLIT_NAMES:
            text = ",".join(f"{f:g}" for f in self.fractions)
        else:
            text = ",".join(f"{k}:{self.fractions[SPLIT_NAMES.index(k)]:g}" for k in self.order)
        return text + ("@char" if self.exact_chars else "")


@dataclass
class Splits:
    """The documents of each split (each document a string; documents never run together)."""

    spec: SplitSpec
    parts: dict[str, list[str]] = field(default_factory=dict)
    names: dict[str, list[str]] = field(default_factory=dict)

    def __getitem__(self, name: str) -> list[str]:
        if name not in SPLIT_NAMES:
            raise LadderError(f"unknown split {name!r}; choose one of {', '.join(SPLIT_NAMES)}")
        return self.parts[name]

    def require(self, name: str) -> list[str]:
        docs = self[name]
        if not any(docs):
            raise LadderError(
                f"the {name} split is empty with --split {self.spec}; give it a fraction above 0"
            )
        return docs


def _cut(text: str, fraction: float, exact: bool) -> int:
    n = len(text)
    x = min(n, int(fraction * n))
    if fraction >= 1.0 - 1e-9 or x >= n:
        return n
    if exact:
        return x
    newline = text.find("\n", x)
    return n if newline < 0 else newline + 1


def split_documents(names: Sequence[str], docs: Sequence[str], spec: SplitSpec | str | None) -> Splits:
    spec = SplitSpec.parse(spec)
    out = Splits(spec, {k: [] for k in SPLIT_NAMES}, {k: [] for k in SPLIT_NAMES})
    if len(docs) == 1:
        text = docs[0]
        first, second = (spec.fractions[SPLIT_NAMES.index(k)] for k in spec.order[:2])
        a = _cut(text, first, spec.exact_chars)
        b = max(a, _cut(text, first + second, spec.exact_chars))
        for key, piece in zip(spec.order, (text[:a], text[a:b], text[b:])):
            if piece:
                out.parts[key].append(piece)
                out.names[key].append(names[0])
    else:
        order = sorted(range(len(docs)), key=lambda i: hashlib.sha256(names[i].encode()).hexdigest())
        total = sum(len(d) for d in docs)
        deficit = [f * total for f in spec.fractions]
        for i in order:
            k = max(range(3), key=lambda j: (deficit[j], -j)) if any(deficit) else 0
            deficit[k] -= len(docs[i])
            key = SPLIT_NAMES[k]
            out.parts[key].append(docs[i])
            out.names[key].append(names[i])
    for key, fraction in zip(SPLIT_NAMES, spec.fractions):
        if fraction > 0 and not out.parts[key]:
            raise LadderError(
                f"split {spec} leaves the {key} split empty ({len(docs)} document(s)); "
                "use other fractions or a corpus with more text"
            )
    return out
