"""One sampling loop for every rung: draw units from next-unit log-probabilities, turn them into
text, stop where asked.

    generate(rung, "ROMEO:", max_new_chars=300, settings=SampleSettings(0.8, top_p=0.9), seed=1)

Every rung goes through the same steps (the contract of lmladder.rung): its context starts
as `prompt_units(prompt)`; each step draws one unit per sample from `next_logprobs` with
lmladder.sampling.choose (temperature, top-k, top-p) and sample i's own generator; the unit's
text comes from the rung's `stream_decoder`. A rung with a faster decoder of its own (the GPT's
key-value cache and CUDA graphs, lmladder.decode) provides `decode_units`, which draws the
same units; the text side below is shared.

A sample ends after `max_new_chars` characters or `max_new_tokens` units (one of the two;
DEFAULT_MAX_NEW_CHARS when neither is given), when the rung draws its stop unit (the end of a
document), or at the first occurrence of one of the `stop` strings, which is cut off. Sample i
draws from generators seeded by (seed, i) alone, so its text is the same whether it is drawn
alone, in a batch or streamed. `on_text(i, piece)` sees each sample's new text as it is
made; text that could still turn out to start a stop string is held back until it cannot.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from lmladder.errors import LadderError
from lmladder.rung import DEFAULT_MAX_NEW_CHARS
from lmladder.sampling import SampleSettings, choose, sample_rngs


# sane bounds on one request: past these a sample runs for hours or fills the memory
MAX_NEW = 10**8  # characters or tokens per sample
MAX_SAMPLES = 10**4


def check_request(max_new_chars: int | None, max_new_tokens: int | None, num_samples: int, seed: int,
                  stop: Sequence[str] = ()) -> list[str]:
    """Every problem with a sampling request, as messages (empty: fine)."""
    problems = []
    if max_new_chars is not None and max_new_tokens is not None:
        problems.append("give --max-new-chars or --max-new-tokens, not both")
    for name, value, most in (("--max-new-chars", max_new_chars, MAX_NEW),
                              ("--max-new-tokens", max_new_tokens, MAX_NEW),
                              ("--num-samples", num_samples, MAX_SAMPLES)):
        if value is not None and value < 1:
            problems.append(f"{name} must be >= 1 (got {value})")
        elif value is not None and value > most:
            problems.append(f"{name} must be at most {most:,} (got {value:,})")
    if seed < 0:
        problems.append(f"--seed must be >= 0 (got {seed})")
    if any(s == "" for s in stop):
        problems.append("--stop needs a non-empty string")
    return problems


class _Texts:
    """The text side of the loop: each sample's text as units arrive, its limits, its stop
    strings, and what has been streamed of it."""

    def __init__(self, decoders: list[Callable[[int], str]], max_chars: int | None, stop: Sequence[str],
                 on_text: Callable[[int, str], None] | None):
        self.decoders = decoders
        self.texts = [""] * len(decoders)
        self.done = np.zeros(len(decoders), dtype=bool)
        self.cut = np.zeros(len(decoders), dtype=bool)  # ended by max_chars or a stop string
        self.shown = [0] * len(decoders)
        self.max_chars = max_chars
        self.stop = list(stop)
        self.hold = max((len(s) for s in self.stop), default=1) - 1  # a stop string's head may be arriving
        self.on_text = on_text

    def add(self, ids: np.ndarray, alive: np.ndarray) -> bool:
        """Book one step's units (ids of samples that are no longer alive are ignored); True
        when every sample is done."""
        self.done |= ~alive
        units = ids.tolist()
        for i in np.flatnonzero(~self.done).tolist():
            self._append(i, self.decoders[i](units[i]))
        return bool(self.done.all())

    def _append(self, i: int, piece: str) -> None:
        before = len(self.texts[i])
        text = self.texts[i] + piece
        if self.max_chars is not None and len(text) >= self.max_chars:
            text, self.done[i], self.cut[i] = text[: self.max_chars], True, len(text) > self.max_chars
        if self.stop:
            cut = self._first_stop(text, max(0, before - self.hold))
            if cut is not None:
                text, self.done[i], self.cut[i] = text[:cut], True, True
        self.texts[i] = text
        if self.on_text is not None:
            self._show(i)

    def _first_stop(self, text: str, start: int) -> int | None:
        found = [p for p in (text.find(s, start) for s in self.stop) if p >= 0]
        return min(found) if found else None

    def _show(self, i: int) -> None:
        if self.on_text is None:
            return
        end = len(self.texts[i]) if self.done[i] else max(self.shown[i], len(self.texts[i]) - self.hold)
        if end > self.shown[i]:
            self.on_text(i, self.texts[i][self.shown[i]:end])
            self.shown[i] = end

    def finish(self) -> list[str]:
        """Every sample's text; a sample that ended inside a character (a byte-level token's
        bytes still waiting) gets what its decoder holds, as U+FFFD, unless a limit cut it."""
        for i in range(len(self.texts)):
            flush = getattr(self.decoders[i], "flush", None)
            if flush is not None and not self.cut[i] and (self.max_chars is None or len(self.texts[i]) < self.max_chars):
                self._append(i, flush())
        self.done[:] = True
        for i in range(len(self.texts)):
            self._show(i)
        return self.texts


def generate(rung, prompt: str = "", *, max_new_chars: int | None = None, max_new_tokens: int | None = None,
             settings: SampleSettings | None = None, seed: int = 0, num_samples: int = 1, stop: Sequence[str] = (),
             on_text: Callable[[int, str], None] | None = None) -> list[str]:
    """`num_samples` continuations of `prompt` (each returned with the prompt before it)."""
    problems = check_request(max_new_chars, max_new_tokens, num_samples, seed, stop)
    if problems:
        raise LadderError("; ".join(problems))
    settings = settings or SampleSettings()
    if max_new_chars is None and max_new_tokens is None:
        max_new_chars = DEFAULT_MAX_NEW_CHARS
    rngs = sample_rngs(seed, num_samples)
    # a separate generator per sample for the spellings of escapes, so they never shift the draws
    decoders = [rung.stream_decoder(np.random.default_rng([seed, i, 1]), settings, prompt) for i in range(num_samples)]
    texts = _Texts(decoders, max_new_chars, stop, on_text)
    limit = max_new_tokens if max_new_tokens is not None else 4 * max_new_chars + 16
    prompt_ids = list(rung.prompt_units(prompt))
    fast = getattr(rung, "decode_units", None)
    if fast is not None:
        fast(prompt_ids, limit, settings, rngs, texts.add)
    else:
        _draw_units(rung, prompt_ids, limit, settings, rngs, texts.add)
    return [prompt + t for t in texts.finish()]


def _draw_units(rung, prompt_ids: list[int], limit: int, settings: SampleSettings,
                rngs: list[np.random.Generator], on_units: Callable[[np.ndarray, np.ndarray], bool]) -> None:
    """The loop itself, for any rung: up to `limit` units per sample from `rung.next_logprobs`."""
    contexts = [list(prompt_ids) for _ in rngs]
    alive = np.ones(len(rngs), dtype=bool)
    stop_unit = getattr(rung, "stop_unit", None)
    for _ in range(limit):
        ids = choose(rung.next_logprobs(contexts), settings, rngs)
        if stop_unit is not None:
            alive &= ids != stop_unit
        for i in np.flatnonzero(alive):
            contexts[i].append(int(ids[i]))
        if on_units(ids, alive) or not alive.any():
            break
