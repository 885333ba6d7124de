"""Wolfram's tour of the ladder ("What Is ChatGPT Doing ... and Why Does It Work?", 2023) on the
user's own corpus: letters drawn by frequency, letter pairs, longer letter n-grams, words, the
counts that make long n-grams hopeless, and a GPT. Each step uses the library calls a user
would (lmladder.ngram.train, ngramio.count_corpus, lmladder.generate); figures are optional PNGs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from lmladder.generate import generate
from lmladder.sampling import SampleSettings


@dataclass
class Step:
    title: str
    caption: str
    samples: list[tuple[str, str]] = field(default_factory=list)  # (label, text)
    table: list[dict[str, Any]] | None = None
    figure: str | None = None


def _letters_only(docs: list[str]) -> list[str]:
    """The letters of the text, lower-cased; a text without letters (brackets, digits) keeps
    every character that is not a space instead."""
    letters = ["".join(re.findall(r"[^\W\d_]", d.lower())) for d in docs]
    return letters if any(letters) else ["".join(d.split()) for d in docs]


def _letters_and_spaces(docs: list[str]) -> list[str]:
    """Letters and single spaces between runs of them (or, without letters, every character
    that is not a space, and single spaces)."""
    kept = [re.sub(r"\s+", " ", re.sub(r"[^\w\s]|[\d_]", "", d.lower())).strip() for d in docs]
    return kept if any(kept) else [" ".join(d.split()) for d in docs]


def _sample(rung, prompt: str, length: int, settings: SampleSettings, seed: int) -> str:
    return generate(rung, prompt, max_new_chars=length, settings=settings, seed=seed)[0]


def _unit_probs(model) -> tuple[list[str], np.ndarray]:
    """The model's distribution of the next unit at the start of a document."""
    lp = model.next_logprobs([[model.bos]])[0]
    keep = np.isfinite(lp) & (np.arange(len(lp)) != model.escape)
    units = [model.units[i] for i in np.flatnonzero(keep)]
    return units, np.exp(lp[keep])


def _label(unit: str) -> str:
    """A unit as a chart shows it: spaces as ␣ (so "I" and " I" differ), escapes for controls."""
    return repr(unit)[1:-1].replace(" ", "␣") or "∅"


def _bar(units: list[str], probs: np.ndarray, path: Path, title: str, top: int = 30) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = np.argsort(-probs, kind="stable")[:top]
    fig, ax = plt.subplots(figsize=(9, 3.5))
    ax.bar(range(len(order)), probs[order], color="#4C72B0")
    ax.set_xticks(range(len(order)), [_label(units[i]) for i in order], rotation=90 if top > 30 else 0)
    ax.set_ylabel("probability")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


MAX_LENGTH = 100_000  # characters per sample: a tour draws a dozen samples (the GPT's three times as long)


def check(length: int, seed: int) -> list[str]:
    """Every problem with a tour's settings, as messages (empty: fine)."""
    problems = []
    if not 1 <= length <= MAX_LENGTH:
        problems.append(f"--length must be between 1 and {MAX_LENGTH:,} characters (got {length:,})")
    if seed < 0:
        problems.append(f"--seed must be >= 0 (got {seed})")
    return problems


def load_gpt(folder: str | Path):
    """The GPT run for the tour's last step; a folder that is not a GPT run, or that cannot be
    loaded, is an error (raised before the tour starts)."""
    from lmladder import registry
    from lmladder.errors import LadderError

    try:
        header = registry.model_header(folder)
    except LadderError as exc:
        raise LadderError(f"--gpt: {exc}") from None
    if header.get("kind") != "gpt":
        raise LadderError(f"--gpt {folder} holds a {header.get('kind') or 'model of unknown kind'} run, not a GPT; "
                          "give a folder written by 'lmladder train CORPUS --model gpt'")
    try:
        return registry.load_model(folder)
    except LadderError as exc:
        raise LadderError(f"--gpt: {exc}") from None


def run(corpus_name: str, out: str | Path | None = None, seed: int = 0, length: int = 120,
        seed_word: str = "cat", gpt: Any = None, on_step: Callable[[Step], None] | None = None) -> list[Step]:
    """The tour's steps; `gpt` is a GPT run's folder or the GPT load_gpt gave (the last step)."""
    from lmladder import corpora, ngram, ngramio
    from lmladder.errors import LadderError

    problems = check(length, seed)
    if problems:
        raise LadderError("; ".join(problems))
    gpt_model = load_gpt(gpt) if isinstance(gpt, (str, Path)) else gpt
    corpus = corpora.load(corpus_name)
    splits = corpus.split()
    train = splits.require("train")
    figures = Path(out) if out else None
    if figures:
        figures.mkdir(parents=True, exist_ok=True)
    settings = SampleSettings(temperature=1.0)
    steps: list[Step] = []

    def emit(step: Step) -> None:
        steps.append(step)
        if on_step:
            on_step(step)

    # 1. letters by frequency, without and with the space
    letters = ngram.train(ngram.NgramConfig(unit="char", order=1, smoothing="mle"), _letters_only(train))
    spaced_docs = _letters_and_spaces(train)
    spaced = ngram.train(ngram.NgramConfig(unit="char", order=1, smoothing="mle"), spaced_docs)
    units, probs = _unit_probs(letters)
    step = Step("1. Letters by frequency",
                "Draw letters independently, each as often as it occurs in the corpus. Without spaces it is a "
                "blur; with the space as a letter, 'words' appear, of the right lengths but not real.")
    top = np.argsort(-probs, kind="stable")[:10]
    step.table = [{"letter": units[i], "probability": float(probs[i])} for i in top]
    step.samples = [("letters", _sample(letters, "", length, settings, seed)),
                    ("letters + space", _sample(spaced, "", length, settings, seed))]
    if figures:
        _bar(units, probs, figures / "letters.png", "letter frequencies")
        step.figure = str(figures / "letters.png")
    emit(step)

    # 2. the letter-pair matrix
    pairs = ngram.train(ngram.NgramConfig(unit="char", order=2, smoothing="mle"), spaced_docs)
    units1, freq = _unit_probs(spaced)
    alphabet = [units1[i] for i in np.argsort(-freq, kind="stable")[:27]]
    index = pairs.index() if callable(pairs.index) else pairs.index
    ids = [index[a] for a in alphabet]
    matrix = np.exp(pairs.next_logprobs([[pairs.bos, i] for i in ids])[:, ids])
    step = Step("2. Letter pairs",
                "P(second letter | first letter), from counts of letter pairs. Some pairs are near certain "
                "(in English, 'q' is followed by 'u'); most are rare.")
    strongest = np.argsort(-matrix.max(axis=1), kind="stable")[:5]
    step.table = [{"first": alphabet[i], "most likely next": alphabet[int(matrix[i].argmax())],
                   "probability": float(matrix[i].max())} for i in strongest]
    if figures:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 6))
        image = ax.imshow(matrix, cmap="Blues")
        fig.colorbar(image, ax=ax, label="P(second | first)")
        labels = [a if a != " " else "␣" for a in alphabet]
        ax.set_xticks(range(len(labels)), labels)
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("second letter")
        ax.set_ylabel("first letter")
        ax.set_title("P(second | first)")
        fig.tight_layout()
        fig.savefig(figures / "letter-pairs.png", dpi=110)
        plt.close(fig)
        step.figure = str(figures / "letter-pairs.png")
    emit(step)

    # 3. longer letter n-grams on the raw text
    step = Step("3. Letter n-grams of increasing order",
                "Each letter drawn given the n-1 before it (Kneser-Ney estimates from the raw text): "
                "by order 4 or 5 the 'words' are mostly real words.")
    for n in range(1, 7):
        model = ngram.train(ngram.NgramConfig(unit="char", order=n), train)
        step.samples.append((f"order {n}", _sample(model, "", length, settings, seed)))
    emit(step)

    # 4. words, independently and in pairs
    words1 = ngram.train(ngram.NgramConfig(unit="word", order=1, min_count=1), train)
    words2 = ngram.train(ngram.NgramConfig(unit="word", order=2, min_count=1), train)
    wunits, wprobs = _unit_probs(words1)
    wtop = np.argsort(-wprobs, kind="stable")[:10]
    step = Step("4. Words",
                f"Words drawn independently by frequency make no sense; drawn by word pairs, starting from "
                f"'{seed_word}', short stretches do.")
    step.table = [{"word": wunits[i], "probability": float(wprobs[i])} for i in wtop]
    step.samples = [("words by frequency", _sample(words1, "", length, settings, seed)),
                    (f"word pairs from '{seed_word}'", _sample(words2, seed_word, length, settings, seed))]
    if figures:
        _bar(wunits, wprobs, figures / "words.png", "word frequencies (top 40)", top=40)
        step.figure = str(figures / "words.png")
    emit(step)

    # 5. why not just count longer n-grams
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        info = ngramio.count_corpus(ngram.NgramConfig(unit="word", order=4), splits, corpus.identity(),
                                    Path(tmp) / "counts", None)
    step = Step("5. Why counting stops working",
                "The number of possible word n-grams grows as V^n, far beyond what any corpus contains, "
                "and more and more of the n-grams in new text were never seen in training.")
    step.table = [{"order": o["order"], "seen types": o["types"],
                   "possible": int(o["possible"]) if o["possible"] < 1e12 else f"{o['possible']:.2e}",
                   "val n-grams never seen": o["val_unseen"]} for o in info["orders"]]
    emit(step)

    # 6. a GPT at temperature 0 and 0.8
    if gpt_model is not None:
        model = gpt_model
        step = Step("6. A GPT",
                    "Temperature 0 always takes the most likely next token: flat and repetitive. "
                    "Temperature 0.8 is what works best for prose.")
        for t in (0.0, 0.8):
            step.samples.append((f"temperature {t}", _sample(model, "", length * 3, SampleSettings(t), seed)))
        emit(step)
    return steps
