"""The rung registry: every kind of rung lmladder has, and where each part of it lives.

A kind is one entry below. For each, `load` reads a saved model folder (its lmladder.json says
the kind), `ladder` builds the rung a ladder file's `[[rung]]` table asks for (with the
settings listed in `settings`: name -> required?), `train_command` is how a user trains one and
`resumes` whether an interrupted training continues (`lmladder train --resume`). Every saved
kind scores and samples through the contract of lmladder.rung (tests/test_contract.py trains
each at toy size and checks it through the CLI).
The functions are named as "module:function" and imported only when used, so this module is
cheap to import (the CLI reads it for its help) and no rung module needs to import it back.

Adding a kind is one module that keeps the contract of lmladder.rung plus one entry here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from lmladder.errors import LadderError


@dataclass(frozen=True)
class RungKind:
    name: str
    summary: str
    ladder: str  # "module:function" (kind, settings, splits, profile) -> lmladder.rung.Built
    load: str | None = None  # "module:function" (folder, header) -> rung; None: never saved
    settings: dict[str, bool] = field(default_factory=dict)  # a ladder file's settings: name -> required?
    train_command: str | None = None  # how a user trains and saves one
    resumes: bool = False  # an interrupted training continues exactly with --resume
    # "module:function" (kind, settings, profile) -> None, raising LadderError: a rung's settings
    # checked before any rung of the ladder builds (None: only the settings' names are checked)
    check: str | None = None

    def function(self, role: str) -> Callable[..., Any]:
        target = getattr(self, role)
        if target is None:
            raise LadderError(f"a {self.name} rung has no {role} step")
        module, name = target.split(":")
        return getattr(importlib.import_module(module), name)


# a neural rung's own [model], [optim], [data] and [run] values go over its bench profile's
_NEURAL_SETTINGS = {"tokenizer": False, "bpe_vocab": False, "model": False, "optim": False, "data": False,
                    "run": False}

KINDS: dict[str, RungKind] = {k.name: k for k in (
    RungKind("uniform", "every training letter (and an escape for unseen ones) equally likely",
             ladder="lmladder.baselines:from_ladder", load="lmladder.baselines:load",
             train_command="lmladder train CORPUS --model uniform --out DIR"),
    RungKind("unigram", "letter frequencies, add-one smoothed",
             ladder="lmladder.baselines:from_ladder", load="lmladder.baselines:load",
             train_command="lmladder train CORPUS --model unigram --out DIR"),
    RungKind("compressor", "gzip, bz2 or xz: the extra bits to compress test after train",
             ladder="lmladder.compressors:from_ladder", settings={"method": True}),
    RungKind("ngram", "letter or word n-grams: Kneser-Ney, add-k or maximum likelihood",
             ladder="lmladder.ngram:from_ladder", load="lmladder.ngramio:load",
             settings={"unit": False, "order": True, "smoothing": False, "min_count": False, "max_order": False},
             check="lmladder.ngram:check_ladder", train_command="lmladder ngram train CORPUS --unit char --order 5 --out DIR"),
    RungKind("mlp", "Bengio et al. (2003): letter embeddings over a fixed context, a tanh layer",
             ladder="lmladder.neural_ladder:from_ladder", load="lmladder.neural:load", settings=_NEURAL_SETTINGS,
             check="lmladder.neural_ladder:check",
             train_command="lmladder train CORPUS --model mlp --out DIR", resumes=True),
    RungKind("gpt", "GPT-2's architecture on characters or BPE tokens",
             ladder="lmladder.neural_ladder:from_ladder", load="lmladder.neural:load", settings=_NEURAL_SETTINGS,
             check="lmladder.neural_ladder:check",
             train_command="lmladder train CORPUS --model gpt --out DIR", resumes=True),
)}

# the kinds `lmladder train --model` trains (the others have commands of their own)
BASELINES = ("uniform", "unigram")
NEURAL = ("gpt", "mlp")
TRAIN_MODELS = BASELINES + NEURAL


def kind(name: str) -> RungKind:
    if name not in KINDS:
        raise LadderError(f"unknown rung kind {name!r}; known: {', '.join(KINDS)}")
    return KINDS[name]


# transformers GPT-2 folders (lmladder.hf: a GPT lmladder exported, or GPT-2 weights from elsewhere),
# named as "module:function" like the kinds' steps, so this module imports none of the GPT's
TRANSFORMERS = {"detect": "lmladder.hf:is_transformers_folder", "header": "lmladder.hf:model_header",
                "load": "lmladder.hf:load"}


def _transformers(step: str) -> Callable[..., Any]:
    module, name = TRANSFORMERS[step].split(":")
    return getattr(importlib.import_module(module), name)


def model_header(folder: str | Path) -> dict[str, Any]:
    """A model folder's header: its lmladder.json, or for a transformers folder what that header
    would say (kind gpt; an export's run's corpus, split, config and test scores)."""
    from lmladder import artifacts

    if _transformers("detect")(folder):
        return _transformers("header")(folder)
    if (Path(folder) / "config.json").is_file() and not (Path(folder) / artifacts.MARKER).exists():
        raise LadderError(f"{folder} has a config.json but no {artifacts.MARKER}, and that config.json is not a "
                          "transformers config (JSON with a model_type): it is corrupt or of another kind; "
                          "export or download the model again")
    return artifacts.read_header(folder, "lmladder-model")


def load_model(folder: str | Path):
    """Any saved rung, from its folder; a transformers GPT-2 folder becomes a GPT."""
    if _transformers("detect")(folder):
        return _transformers("load")(folder)
    header = model_header(folder)
    name = header.get("kind")
    if name not in KINDS or KINDS[name].load is None:
        saved = ", ".join(k.name for k in KINDS.values() if k.load)
        raise LadderError(f"{folder} holds a model of unknown kind {name!r}; known: {saved}")
    return KINDS[name].function("load")(Path(folder), header)


def check_rungs(rungs: list[dict[str, Any]], profile: str) -> None:
    """Each ladder rung's settings through its kind's `check` (those that have one), all problems
    in one error."""
    problems = []
    for spec in rungs:
        kind = KINDS[spec["kind"]]
        if kind.check is not None:
            try:
                kind.function("check")(spec["kind"], spec, profile)
            except LadderError as exc:
                problems.append(f"rung {spec['name']}: {exc}")
    if problems:
        raise LadderError("; ".join(problems))
