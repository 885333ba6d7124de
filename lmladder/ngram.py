"""N-gram rungs: letter and word n-grams with maximum-likelihood, add-k or interpolated modified
Kneser-Ney estimates (Chen & Goodman 1998, as KenLM's lmplz computes them; Heafield et al. 2013).

This module is what the rest of lmladder uses: `train` (letters, open-vocabulary words or KenLM
tokens), `save`/`load` and the ladder file's `ngram` kind. The engine, bottom up:

    lmladder.ngramunits     units and text -> unit streams (letters, word units, KenLM tokens)
    lmladder.counts         every n-gram of orders 1..N counted, with Kneser-Ney adjusted counts
    lmladder.ngrammodel     NgramConfig and NgramModel: querying, scoring, the sampling contract
    lmladder.ngramestimate  counts -> the model's tables (the Kneser-Ney arithmetic)
    lmladder.openvocab      the open-vocabulary word model: vocabulary, word n-gram and speller
    lmladder.ngramio        count and model folders (Parquet); lmladder.arpa: ARPA files

All probabilities are natural logs; ARPA files use log10.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from lmladder import counts as counting
from lmladder import metrics, openvocab
from lmladder.errors import LadderError
from lmladder.ngramestimate import from_counts
from lmladder.ngramio import load, save
from lmladder.ngrammodel import SMOOTHINGS, UNITS, NgramConfig, NgramModel
from lmladder.ngramunits import kenlm_units, letter_units
from lmladder.rung import Built

__all__ = ["NgramConfig", "NgramModel", "train", "save", "load", "from_ladder", "check_ladder"]

MAX_K = 1e6  # add-k's pseudo-count: past the vocabulary's size every estimate is already about uniform


def check_k(k: float) -> None:
    if not (math.isfinite(k) and 0 < k <= MAX_K):
        raise LadderError(f"--k, add-k's pseudo-count, must be a finite number in (0, {MAX_K:g}] (got {k:g}); "
                          "e.g. --k 0.01")


def train(config: NgramConfig, documents: Sequence[str], memory_bytes: int | None = None,
          val: Sequence[str] | None = None) -> NgramModel:
    """Count and estimate an n-gram rung on the training documents (`val` tunes a word
    model's min_count when it is 0)."""
    config.check()
    if config.smoothing == "addk":
        check_k(config.k)
    if config.unit == "word" and not config.kenlm_compat:
        return openvocab.train(config, documents, memory_bytes, val)
    units, bos, esc, eos, seq = kenlm_units(documents) if config.kenlm_compat else letter_units(documents)
    c = counting.count(seq, config.order, len(units), bos, memory_bytes)
    del seq  # the counts are all estimation needs
    return from_counts(config, units, bos, esc, eos, c, {})


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_ladder(kind: str, settings: dict, profile: str) -> None:
    """An `ngram` rung's settings, every problem at once, naming the ladder file's keys (for
    lmladder.registry's `check` hook and `lmladder bench`, before any rung builds)."""
    problems = []
    top = counting.MAX_ORDER
    order, unit = settings.get("order"), settings.get("unit", "char")
    if order != "best" and not (_is_int(order) and 1 <= order <= top):
        problems.append(f"order = {order!r} must be a whole number from 1 to {top}, or \"best\"")
    if "max_order" in settings:
        most = settings["max_order"]
        if order != "best":
            problems.append("max_order applies only to order = \"best\"")
        elif not (_is_int(most) and 1 <= most <= top):
            problems.append(f"max_order = {most!r} must be a whole number from 1 to {top}")
    if unit not in UNITS:
        problems.append(f"unit = {unit!r} must be one of {', '.join(UNITS)}")
    if settings.get("smoothing", "kn") not in SMOOTHINGS:
        problems.append(f"smoothing = {settings['smoothing']!r} must be one of {', '.join(SMOOTHINGS)}")
    if "min_count" in settings:
        if not (_is_int(settings["min_count"]) and settings["min_count"] >= 0):
            problems.append(f"min_count = {settings['min_count']!r} must be a whole number >= 0 (0: tuned on val)")
        elif unit != "word":
            problems.append("min_count applies only to unit = \"word\" (rare words spelled out); leave it out")
    if problems:
        raise LadderError("; ".join(problems))


def from_ladder(kind: str, settings: dict, splits, profile: str) -> Built:
    """The `ngram` rung kind of a ladder file: settings unit, order, smoothing, min_count (0: tune
    on val). `order = "best"` trains every order from 1 to `max_order` (default 10) and keeps the
    one with the lowest bits/char on val."""
    try:
        check_ladder(kind, settings, profile)
    except LadderError as exc:
        raise LadderError(f"ngram rung: {exc}") from None

    def build(order: int) -> NgramModel:
        config = NgramConfig(unit=settings.get("unit", "char"), order=order,
                             smoothing=settings.get("smoothing", "kn"), min_count=int(settings.get("min_count", 0)))
        return train(config, splits.require("train"), val=splits["val"])

    if settings["order"] != "best":
        model = build(int(settings["order"]))
        return Built(model, model.parameters, "n-grams")
    val = splits.require("val")
    best = None
    for order in range(1, int(settings.get("max_order", 10)) + 1):
        model = build(order)
        bpc = metrics.evaluate(model, val).bits_per_char
        if best is None or bpc < best[0]:
            best = (bpc, order, model)
    bpc, order, model = best
    return Built(model, model.parameters, "n-grams", details={"order": order, "val_bits_per_char": bpc})
