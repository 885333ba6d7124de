"""What every coder shares: the range coder, how a text is cut into blocks, and the spelling of
characters a model never saw.

The coder is constriction's range coder (a queue: symbols come out in the order they went in)
with its `Categorical(perfect=False)` model: a row of probabilities p_0..p_{V-1} (float32) is
turned into an integer CDF of 2^24 by

    left(i) = floor((p_0 + ... + p_{i-1}) * (2^24 - V) / (p_0 + ... + p_{V-1})) + i

(sums taken left to right, in the row's float type), so every symbol gets at least 1/2^24 and
the same floats give the same CDF on any machine. Coders therefore only need each row's floats
to be bit-identical on both sides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lmladder.errors import LadderError
from lmladder.vocab import UNICODE_SCALARS, CharVocab

SPELL_LOW = 1 << 12  # an unseen character's rank is coded as (rank >> 12, rank & 4095): both near-exact uniforms


def encoder():
    import constriction

    return constriction.stream.queue.RangeEncoder()


def decoder(words: np.ndarray):
    import constriction

    return constriction.stream.queue.RangeDecoder(np.ascontiguousarray(words, dtype=np.uint32))


def _family():
    import constriction

    return constriction.stream.model.Categorical(perfect=False)


def encode_rows(enc, symbols: np.ndarray, probs: np.ndarray) -> None:
    """Code symbols[i] with the distribution of row i of `probs` (float32, C order)."""
    if len(symbols):
        enc.encode(np.ascontiguousarray(symbols, dtype=np.int32), _family(), np.ascontiguousarray(probs))


def decode_rows(dec, probs: np.ndarray) -> np.ndarray:
    """One symbol for each row of `probs`, as int64."""
    if len(probs) == 0:
        return np.zeros(0, dtype=np.int64)
    return dec.decode(_family(), np.ascontiguousarray(probs)).astype(np.int64)


def iid_model(probs: np.ndarray):
    import constriction

    return constriction.stream.model.Categorical(np.ascontiguousarray(probs, dtype=np.float32), perfect=False)


def guarded(what: str):
    """Turn the coder's own failures while decoding (a stream that ends early, a payload that
    does not fit the model it is decoded with, a model that differs, memory a corrupt count asks
    for) and the decoders' own checks into one clear error that names the file."""
    return _Guard(what)


class _Guard:
    def __init__(self, what: str):
        self.what = what

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if exc is None:
            return False
        if type(exc) is LadderError:  # a decoder's own check (a unit out of range, ...): name the file
            raise LadderError(f"{self.what} could not be decoded: {exc}; compress the text again") from None
        # constriction asserts a payload fits the model it decodes with; a count no payload could
        # hold asks for more memory than there is
        if isinstance(exc, (AssertionError, ValueError, RuntimeError, IndexError, OverflowError, MemoryError)) \
                or type(exc).__name__ == "PanicException":
            said = " ".join(str(exc).split())[:200]
            raise LadderError(f"{self.what} is corrupt or was made with different arithmetic: its payload could not "
                              f"be decoded ({type(exc).__name__}: {said}); compress the text again") from None
        return False


@dataclass(frozen=True)
class Blocks:
    """A unit sequence cut into `count` blocks of `length` units (the last one shorter), coded
    side by side: step s codes unit s of every block that has one, block by block."""

    units: int
    length: int

    @property
    def count(self) -> int:
        return -(-self.units // self.length) if self.units else 0

    @property
    def last(self) -> int:
        return self.units - (self.count - 1) * self.length if self.units else 0

    def active(self, step: int) -> int:
        """How many blocks (a prefix: only the last is shorter) have a unit at `step`."""
        return self.count if step < self.last else self.count - 1

    def order(self) -> np.ndarray:
        """Text positions in coding order (step by step, block by block)."""
        grid = np.full(self.count * self.length, -1, dtype=np.int64)
        grid[: self.units] = np.arange(self.units)
        order = grid.reshape(self.count, self.length).T.ravel()
        return order[order >= 0]

    def starts(self) -> np.ndarray:
        return np.arange(self.count, dtype=np.int64) * self.length


def plan(units: int, block: int | None, default: int) -> Blocks:
    length = block if block else default
    if length < 1:
        raise LadderError(f"--block must be at least 1 unit (got {length})")
    return Blocks(units, max(1, min(length, units)) if units else length)


class Unseen:
    """Characters outside a vocabulary, coded as the scoring contract charges them (lmladder.vocab):
    a uniform choice among the Unicode scalar values the vocabulary lacks. Rank r among them is
    coded as r >> 12 and r & 4095, two uniforms constriction represents almost exactly (a single
    uniform over ~1.1 million values would cost 0.6% more than log2 of it)."""

    def __init__(self, vocab: CharVocab):
        self.table = vocab.table.astype(np.int64)
        self.size = UNICODE_SCALARS - len(vocab.chars)
        self.highs = math.ceil(self.size / SPELL_LOW)
        excluded = np.union1d(self.table, np.arange(0xD800, 0xE000))
        self.after = excluded - np.arange(len(excluded))  # scalars not excluded before each excluded one

    def ranks(self, cps: np.ndarray) -> np.ndarray:
        cps = cps.astype(np.int64)
        return cps - np.where(cps >= 0xE000, 0x800, 0) - np.searchsorted(self.table, cps)

    def code_points(self, ranks: np.ndarray) -> np.ndarray:
        return ranks + np.searchsorted(self.after, ranks, side="right")

    def _lows(self, high: np.ndarray) -> np.ndarray:
        return np.where(high == self.highs - 1, self.size - (self.highs - 1) * SPELL_LOW, SPELL_LOW).astype(np.int32)

    def encode(self, enc, cps: np.ndarray) -> None:
        import constriction

        if len(cps) == 0:
            return
        ranks = self.ranks(cps)
        high, low = ranks // SPELL_LOW, ranks % SPELL_LOW
        enc.encode(high.astype(np.int32), constriction.stream.model.Uniform(self.highs))
        sizes = self._lows(high)
        coded = sizes > 1
        enc.encode(low[coded].astype(np.int32), constriction.stream.model.Uniform(), sizes[coded])

    def decode(self, dec, count: int) -> np.ndarray:
        import constriction

        if count == 0:
            return np.zeros(0, dtype=np.int64)
        high = dec.decode(constriction.stream.model.Uniform(self.highs), count).astype(np.int64)
        sizes = self._lows(high)
        coded = sizes > 1
        low = np.zeros(count, dtype=np.int64)
        low[coded] = dec.decode(constriction.stream.model.Uniform(), sizes[coded])
        ranks = high * SPELL_LOW + low
        if np.any(ranks >= self.size) or np.any(ranks < 0):
            raise LadderError("an unseen character decoded out of range; the file is corrupt")
        return self.code_points(ranks)


def text_of(ids: np.ndarray, vocab: CharVocab, escaped: np.ndarray) -> str:
    """The characters of vocabulary ids, the escapes (in order) replaced by `escaped` code points."""
    cps = np.empty(len(ids), dtype=np.uint32)
    known = ids != vocab.escape_id
    if np.any(ids[known] >= len(vocab.chars)) or np.any(ids < 0):
        raise LadderError("a character decoded out of range; the file is corrupt")
    cps[known] = vocab.table[ids[known]]
    if int((~known).sum()) != len(escaped):
        raise LadderError("the unseen characters do not match the text; the file is corrupt")
    cps[~known] = escaped
    return cps.astype("<u4").tobytes().decode("utf-32-le")
