"""What a rung is: the contract every kind of model on the ladder keeps.

A rung is any object with

    score(documents) -> UnitScores         ln P of every unit of the text (lmladder.metrics)
    parameters: int                         its size, for the ladder's table

and, if it can write text (every saved kind can; compressors cannot), the four members the one
sampling loop (lmladder.generate) drives it through:

    prompt_units(prompt) -> list[int]       the context a sample starts from (a start-of-document
                                            marker first, where the rung has one)
    next_logprobs(contexts) -> (B, V)       ln P(next unit | context) for each context (a list of
                                            unit ids, as long as the rung wants: it trims them)
    stream_decoder(rng, settings, prompt)   unit -> the text it adds: an escape's spelling drawn
                                            from `rng` (a word model's spelled with the sample's
                                            settings, so greedy sampling spells greedily); "" while
                                            a byte-level token waits for the rest of its character
                                            (its `flush()`, where it has one, gives what still waits,
                                            U+FFFD for bytes of no whole character, once the sample
                                            ends); the text before the first unit is `prompt`
    stop_unit: int | None                   a unit that ends a sample (end of document), or None

A rung whose model can decode faster than one `next_logprobs` call a unit (the GPT's key-value
cache and CUDA graphs, lmladder.decode) also has

    decode_units(prompt_ids, max_new, settings, rngs, on_units)

which draws exactly what the loop would, calling `on_units(ids, alive)` after each step.

How each kind trains, loads and is built from a ladder file is in lmladder.registry; `Built` is
what a ladder file's rung becomes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# how much text a sample adds when nobody says (lmladder.generate, `lmladder sample`)
DEFAULT_MAX_NEW_CHARS = 500


@dataclass
class Built:
    """A rung built by a ladder file (lmladder.bench), with what the ladder's table reports."""

    rung: Any  # keeps the contract above
    size: int | None
    size_unit: str | None
    has_tokens: bool = True
    curve: list[tuple[float, float]] | None = None  # (seconds, val bits/char) for neural rungs
    train_curve: list[tuple[float, float]] | None = None  # (seconds, train loss in bits/char), likewise
    details: dict[str, Any] | None = None  # what the rung chose, e.g. the best order on val
