"""The n-gram rung as a query model: its configuration, its tables, scoring and the sampling
contract (lmladder.rung). Estimation is in lmladder.ngramestimate, training in lmladder.ngram.

All probabilities here are natural logs. A stored n-gram keeps ln p(w|h); an n-gram that is a
context keeps its ln backoff. Kneser-Ney scores an unseen n-gram by backing off, as KenLM's query:

    ln p(w|h) = ln p(longest stored match) + sum of the ln backoffs of the longer contexts skipped

Add-k and mle keep raw counts and context totals instead, and score p(w|h) = (c(hw) + k) /
(c(h) + k (V - 1)) in the longest context seen in training (mle: k = 0, so an unseen n-gram
gets probability 0, which scoring refuses). No n-gram reaches back past the document boundary.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from lmladder import counts as counting
from lmladder import ngrambin, wordtok
from lmladder.errors import LadderError
from lmladder.metrics import UnitScores
from lmladder.ngramtrie import UnitBits
from lmladder.ngramunits import UNK_NAME, kenlm_decoder, kenlm_stream, spelling_stream, word_stream
from lmladder.sampling import SampleSettings, choose
from lmladder.vocab import CharVocab, codepoints

SMOOTHINGS = ("kn", "addk", "mle")
CHUNK = 1 << 16  # units scored at a time (per-position arrays of 512 KiB)
WORD_PIECE = 1 << 16  # (word units: a piece ends after a newline, where no word unit spans)
LETTER_PIECE = 1 << 16  # letters: characters a piece, scored two at a time (NgramModel._scored)
THREADS = 2
UNITS = ("char", "word")


@dataclass
class NgramConfig:
    unit: str = "char"
    order: int = 5
    smoothing: str = "kn"
    k: float = 0.01  # add-k's pseudo-count
    min_count: int = 0  # open-vocabulary words: rarer words are spelled out letter by letter (0: tune on val)
    spelling_order: int = 6  # the letter n-gram that spells unknown words
    kenlm_compat: bool = False

    def check(self) -> None:
        problems = []
        if self.unit not in UNITS:
            problems.append(f"--unit must be char or word (got {self.unit!r})")
        if not 1 <= self.order <= counting.MAX_ORDER:
            problems.append(f"--order must be between 1 and {counting.MAX_ORDER} (got {self.order})")
        if self.smoothing not in SMOOTHINGS:
            problems.append(f"--smoothing must be one of {', '.join(SMOOTHINGS)} (got {self.smoothing!r})")
        if self.smoothing == "addk" and not self.k > 0:
            problems.append(f"add-k needs k > 0 (got {self.k})")
        if self.min_count < 0:
            problems.append(f"--min-count must be >= 0, 0 meaning tuned on val (got {self.min_count})")
        if problems:
            raise LadderError("; ".join(problems))


@dataclass
class Tables:
    """What scoring needs of one order: sorted keys (ctx * V + word) and their values."""

    keys: np.ndarray  # uint64
    logp: np.ndarray  # ln p(w|h) (kn) or raw count (addk/mle)
    backoff: np.ndarray  # ln backoff (kn) or context total (addk/mle) of the n-gram as a context

    # the query interface scoring uses (lmladder.ngramtrie.MappedTable has it too)
    @property
    def rows(self) -> int:
        return len(self.keys)

    def find(self, ctx: np.ndarray, words: np.ndarray, V: int, bits=None) -> np.ndarray:
        """Row of each n-gram (context row of the order below, -1 for none; last unit), or -1."""
        out = np.full(len(ctx), -1, dtype=np.int64)
        ok = np.flatnonzero(ctx >= 0)
        out[ok] = counting.lookup(self.keys, ctx[ok].astype(np.uint64) * np.uint64(V) + words[ok].astype(np.uint64))
        return out

    def logp_at(self, rows: np.ndarray) -> np.ndarray:
        return self.logp.take(rows)

    def backoff_at(self, rows: np.ndarray) -> np.ndarray:
        return self.backoff.take(rows)


def pieces(text: str, size: int, cut_after: str | None = None):
    """`text` in pieces of about `size` characters, each ending just after `cut_after` when
    given (a piece runs on to the next one where there is none)."""
    at = 0
    while at < len(text):
        end = at + size
        if cut_after is not None and end < len(text):
            last = text.rfind(cut_after, at, end)
            end = last + 1 if last >= 0 else (text.find(cut_after, end) + 1 or len(text))
        yield text[at:end]
        at = end


class NgramModel:
    """An n-gram rung. Units are ids into `units` (their spellings); `bos` is the boundary,
    `escape` the unknown/escape unit, `eos` the end of a line (KenLM-compatible mode) or of a
    word (a word model's `spelling`, the letter n-gram that spells its unknown words)."""

    stop_unit: int | None = None  # samples run on across documents, as the text they model does
    mapping = None  # the memory-mapped binary the tables live in (lmladder.ngrambin), if any

    def __init__(self, config: NgramConfig, units: list[str], bos: int, escape: int, eos: int | None,
                 tables: list[Tables], meta: dict[str, Any] | None = None, spelling: NgramModel | None = None):
        self.config = config
        self.units = units
        self.V = len(units)
        self.bos, self.escape, self.eos = bos, escape, eos
        self.tables = tables
        self.meta = meta or {}
        self.spelling = spelling
        self._index: dict[str, int] | None = None
        self._letters: np.ndarray | None = None  # code point -> letter id (_letter_ids)
        self.char_vocab = CharVocab([u for i, u in enumerate(units) if i not in (bos, escape, eos)]) \
            if config.unit == "char" and not config.kenlm_compat else None

    @property
    def order(self) -> int:
        return len(self.tables)

    @property
    def parameters(self) -> int:
        return int(sum(t.rows for t in self.tables))

    # -- units ---------------------------------------------------------------------------
    def index(self) -> dict[str, int]:
        if self._index is None:
            index = dict(zip(self.units, range(len(self.units))))  # (in C: no Python loop a unit; distinct units)
            for special in [i for i in (self.bos, self.escape, self.eos) if i is not None and i < len(self.units)]:
                index.pop(self.units[special], None)
            self._index = index
        return self._index

    def encode(self, documents: Sequence[str]) -> tuple[np.ndarray, list[list[str]] | None]:
        """The unit stream (BOS before each document) and, for word units, the units' text."""
        if self.config.kenlm_compat:
            return kenlm_stream(documents, self.index(), self.bos, self.eos, self.escape), None
        if self.char_vocab is not None:
            parts = []
            for doc in documents:
                parts += [np.array([self.bos]), self.char_vocab.encode(doc)]
            return (np.concatenate(parts) if parts else np.zeros(0, np.int64)), None
        return word_stream(documents, self.index(), self.bos, self.escape)

    def ngram_ids(self, n: int) -> np.ndarray:
        """(rows, n) unit ids of every stored n-gram of order n, in table order."""
        ids = np.empty((len(self.tables[n - 1].keys), n), dtype=np.int64)
        row = np.arange(len(self.tables[n - 1].keys))
        for k in range(n, 0, -1):
            keys = self.tables[k - 1].keys
            ids[:, k - 1] = (keys[row] % np.uint64(self.V)).astype(np.int64)
            row = (keys[row] // np.uint64(self.V)).astype(np.int64)
        return ids

    # -- scoring ---------------------------------------------------------------------------
    def positions(self, seq: np.ndarray, starts: np.ndarray | None = None) -> list[np.ndarray]:
        """For each order n, the table row of the n-gram ending at each position (-1: none).
        `starts` marks units whose context is empty (nothing before them is visible)."""
        is_bos = seq == self.bos
        if starts is not None:
            is_bos = is_bos | starts
        idx = [seq.astype(np.int64)]
        bos_inside = bool(is_bos[1:].any())
        bits = UnitBits(seq[1:]) if any(getattr(t, "rank", None) is not None for t in self.tables) else None  # (shared)
        for n in range(2, self.order + 1):
            prev = idx[-1]
            cur = np.empty(len(seq), dtype=np.int64)
            cur[:1] = -1
            if len(seq) > 1:  # the n-gram ending at t continues the (n-1)-gram ending at t - 1
                ctx = np.where(is_bos[1:], -1, prev[:-1]) if bos_inside else prev[:-1]
                cur[1:] = self.tables[n - 1].find(ctx, seq[1:], self.V, bits)
            idx.append(cur)
        return idx

    def unit_logprob(self, seq: np.ndarray, starts: np.ndarray | None = None) -> np.ndarray:
        """ln P of every unit of the stream (NaN at the boundaries, which are not predicted),
        CHUNK units at a time, each chunk with the order - 1 units before it as context."""
        T, ov = len(seq), self.order - 1
        if T <= CHUNK + ov:
            return self._logprob(seq, starts)
        out = np.empty(T)
        for s in range(0, T, CHUNK):
            a, e = max(0, s - ov), min(T, s + CHUNK)
            out[s:e] = self._logprob(seq[a:e], None if starts is None else starts[a:e])[s - a:]
        return out

    def _logprob(self, seq: np.ndarray, starts: np.ndarray | None) -> np.ndarray:
        idx = self.positions(seq, starts)
        cut = np.zeros(len(seq), dtype=bool) if starts is None else starts
        N, T = self.order, len(seq)
        out = np.zeros(T)
        if self.config.smoothing == "kn":
            matched = np.zeros(T, dtype=np.int8)  # the longest stored n-gram ending at each unit
            for n in range(1, N + 1):
                matched = np.where(idx[n - 1] >= 0, np.int8(n), matched)
            for n in range(1, N + 1):
                at = np.flatnonzero(matched == n)
                out[at] = self.tables[n - 1].logp_at(idx[n - 1].take(at))
            for k in range(1, N):  # backoffs of the contexts longer than the match, shortest first
                ctx = idx[k - 1][:-1]  # the k-gram before each unit from the second on
                use = (matched[1:] <= k) & (ctx >= 0)
                at = np.flatnonzero(use if starts is None else use & ~cut[1:])
                out[at + 1] += self.tables[k - 1].backoff_at(ctx.take(at))
        else:
            k_add = self.config.k if self.config.smoothing == "addk" else 0.0
            done = np.zeros(T, dtype=bool)
            for n in range(N, 0, -1):
                if n == 1:
                    ctx_ok = ~done
                    total = np.full(T, self.meta["tokens"], dtype=np.float64)
                else:
                    ctx = np.full(T, -1, dtype=np.int64)
                    ctx[1:] = idx[n - 2][:-1]
                    ctx_ok = (ctx >= 0) & ~done & ~cut
                    total = np.zeros(T)
                    total[ctx_ok] = self.tables[n - 2].backoff_at(ctx[ctx_ok])
                    ctx_ok &= total > 0
                cnt = np.zeros(T)
                have = ctx_ok & (idx[n - 1] >= 0)
                cnt[have] = self.tables[n - 1].logp_at(idx[n - 1][have])
                with np.errstate(divide="ignore"):
                    out[ctx_ok] = np.log(cnt[ctx_ok] + k_add) - np.log(total[ctx_ok] + k_add * (self.V - 1))
                done |= ctx_ok
        out[seq == self.bos] = np.nan
        return out

    def score(self, documents: Sequence[str]) -> UnitScores:
        """Each document a piece at a time (so memory stays small whatever the text's size),
        every piece with the order - 1 units before it as context."""
        if self.config.kenlm_compat:
            raise LadderError(
                "this is a --kenlm-compat model: it scores whitespace tokens and hides unknown words "
                "behind <unk>, so it has no exact bits per character; train without --kenlm-compat "
                "to score it, or export it with `lmladder export MODEL --format arpa` for KenLM")
        chars = self.char_vocab is not None
        out = np.empty(sum(len(d) for d in documents)) if chars else []  # letters: one unit a character
        at = 0
        for lp, ids, texts in self._scored(documents):
            if chars:  # (the spelling's part is in already)
                out[at:at + len(lp)] = lp
                at += len(lp)
            else:  # an open-vocabulary word model (lmladder.openvocab): P(UNK | context) * P(spelling)
                unknown = np.flatnonzero(ids == self.escape)
                if len(unknown):
                    lp[unknown] += self.spelling.spelled_logprob([texts[i] for i in unknown.tolist()])
                out.append(lp)
        lp = out if chars else (np.concatenate(out) if out else np.zeros(0))
        for part in (self, self.spelling):  # a pass over a text is done: hand the tables' pages back
            if part is not None:
                ngrambin.release(part.mapping)
        if self.config.smoothing == "mle" and not np.all(np.isfinite(lp)):
            raise LadderError(f"the mle model gives probability 0 to {int(np.sum(~np.isfinite(lp)))} units "
                              "of this text; train with --smoothing kn or addk to score it")
        return UnitScores(lp, sum(len(d) for d in documents), sum(len(d.encode("utf-8")) for d in documents))

    def _scored(self, documents: Sequence[str]):
        """(ln P, ids, word texts) of the units of each piece of the documents, in order (letters:
        ln P with the spelling's part, and no ids or texts).
        Letter pieces are independent (each is encoded with the order - 1 characters before it),
        so two are scored at once: numpy's lookups release the GIL (gutenberg-en's test split
        with its letter 8-gram on 2 idle cores: 0.235 s against 0.349 s in one thread, with
        pieces of 64 K characters; with 12 K, two threads were no faster)."""
        keep = self.order - 1
        if self.char_vocab is not None:
            yield from self._scored_letters(documents, keep)
            return
        for doc in documents:
            tail = np.array([self.bos])  # the units before the piece
            for piece in pieces(doc, WORD_PIECE, cut_after="\n"):
                ids, texts = self._word_ids(piece)
                seq = np.concatenate([tail, ids])
                yield self.unit_logprob(seq)[len(tail):], ids, texts
                tail = seq[len(seq) - keep:] if keep else seq[:0]

    def _scored_letters(self, documents: Sequence[str], keep: int):
        from concurrent.futures import ThreadPoolExecutor

        def one(doc: str, at: int) -> np.ndarray:
            if at == 0:  # a document's first piece: its context is the boundary
                ids = self._letter_ids(doc[:LETTER_PIECE])
                seq, skip = np.concatenate([[self.bos], ids]), 1
            else:  # later ones: the order - 1 characters before them (a piece is longer than that)
                seq, skip = self._letter_ids(doc[at - keep:at + LETTER_PIECE]), keep
                ids = seq[keep:]
            return self.unit_logprob(seq)[skip:] + self.char_vocab.spelling_logprob(ids)

        pending: list = []  # at most THREADS + 1 pieces in flight, so memory stays that of a few
        with ThreadPoolExecutor(THREADS) as pool:
            for doc in documents:
                for at in range(0, len(doc), LETTER_PIECE):
                    pending.append(pool.submit(one, doc, at))
                    if len(pending) > THREADS:
                        yield pending.pop(0).result(), None, None
            for job in pending:
                yield job.result(), None, None

    def _letter_ids(self, text: str) -> np.ndarray:
        """CharVocab.encode through a table from code point to id, when the letters are all
        below U+10000 (the table's last entry, the escape, stands for every code point above)."""
        table = self.char_vocab.table
        if len(table) == 0 or table[-1] >= 1 << 16:
            return self.char_vocab.encode(text)
        letters = self._letters
        if letters is None:  # (whole before it is shared: the scoring threads read it)
            letters = np.full(int(table[-1]) + 2, self.char_vocab.escape_id, dtype=np.int64)
            letters[table] = np.arange(len(table))
            self._letters = letters
        return letters.take(np.minimum(codepoints(text), len(letters) - 1))

    def _word_ids(self, text: str) -> tuple[np.ndarray, list[str]]:
        """The ids of the word units of `text` (as word_stream gives them, without its BOS) and
        the units, through the vocabulary's dict (a piece is too small to pay for Arrow), looked
        up by map in C: no Python code runs a unit."""
        units, escape = wordtok.units(text), self.escape
        ids = map(self.index().get, units, itertools.repeat(escape, len(units)))
        return np.fromiter(ids, dtype=np.int64, count=len(units)), units

    def spelled_logprob(self, words: Sequence[str]) -> np.ndarray:
        """For a word model's speller: ln P(c1 ... cm EOW) of each word, unseen letters included."""
        seq = spelling_stream(words, self.char_vocab, self.bos, self.eos)
        lp = self.unit_logprob(seq)
        keep = seq != self.bos
        lp = lp[keep] + self.char_vocab.spelling_logprob(seq[keep])
        lengths = np.array([len(w) + 1 for w in words], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        return np.add.reduceat(lp, starts)

    def kenlm_query(self, documents: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """log10 P of every token and </s> of the documents read one after another as KenLM's
        query reads its input (lmladder.ngramunits.kenlm_stream), as it prints them, and an OOV mask."""
        seq = kenlm_stream(documents, self.index(), self.bos, self.eos, self.escape)
        lp = self.unit_logprob(seq)
        keep = seq != self.bos
        return lp[keep] / math.log(10), seq[keep] == self.escape

    # -- sampling (lmladder.generate drives it) --------------------------------------------
    def prompt_units(self, prompt: str) -> list[int]:
        """The units of `prompt`, BOS first: a sample starts a document."""
        return self.encode([prompt])[0].tolist()

    def next_logprobs(self, contexts: list[list[int]]) -> np.ndarray:
        """(B, V) ln P(next unit | context) for each context (unit ids, BOS first if at a start);
        -inf for BOS, which is never predicted. Every candidate of every context is scored in
        one pass: row (b, w) is context b's last n-1 units then w, right-aligned in a block of
        `order` columns and cut off (`starts`) before its first unit."""
        width = self.order
        hist = [list(ctx[-(width - 1):]) if width > 1 else [] for ctx in contexts]
        first = width - 1 - np.array([len(h) for h in hist], dtype=np.int64)  # (B,) column of each first unit
        cols = np.arange(width)[None, :]
        block = np.full((len(contexts), width), self.bos, dtype=np.int64)  # (B, order); left padding is cut off
        block[(cols >= first[:, None]) & (cols < width - 1)] = [u for h in hist for u in h]
        block = np.repeat(block, self.V, axis=0)  # (B * V, order)
        block[:, -1] = np.tile(np.arange(self.V, dtype=np.int64), len(contexts))
        starts = np.repeat(cols == first[:, None], self.V, axis=0)  # (B * V, order)
        lp = self.unit_logprob(block.ravel(), starts.ravel())
        out = lp.reshape(len(contexts), self.V, width)[:, :, -1]
        out[:, self.bos] = -np.inf
        return out

    def stream_decoder(self, rng: np.random.Generator, settings: SampleSettings | None = None, prompt: str = ""):
        """unit -> its text; an escape's spelling is drawn from `rng` with the sample's settings."""
        spell = lambda unit: self.spell(unit, rng, settings)  # noqa: E731
        return kenlm_decoder(spell, self.eos, prompt) if self.config.kenlm_compat else spell  # spaced tokens

    def spell(self, unit: int, rng: np.random.Generator, settings: SampleSettings | None = None) -> str:
        if unit == self.escape:
            if self.char_vocab is not None:
                return self.char_vocab.random_unseen(rng)
            if self.spelling is not None:
                return self.spelling.sample_spelling(rng, settings)
            return UNK_NAME
        if unit == self.eos:
            return "\n"
        return self.units[unit]

    def sample_spelling(self, rng: np.random.Generator, settings: SampleSettings | None = None,
                        limit: int = 40) -> str:
        """For a word model's speller: an unknown word's letters, drawn one at a time with the
        sample's settings (temperature 1 without any; greedy at temperature 0) until EOW (or
        `limit` letters)."""
        settings = settings or SampleSettings(temperature=1.0)
        ctx, text = [self.bos], ""
        for _ in range(limit):
            unit = int(choose(self.next_logprobs([ctx]), settings, rng)[0])
            if unit == self.eos:
                break
            text += self.spell(unit, rng)
            ctx.append(unit)
        return text
