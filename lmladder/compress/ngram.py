"""The n-gram rungs as coders, over the distributions of lmladder.compress.ngramrows.

Text is cut into blocks (lmladder.compress.streams.Blocks): the first starts after <s> as a
scored document does, the others with an empty context (unigram, then bigram, ...), which
costs a few bits per block; blocks are decoded side by side, one vectorised step per unit.
A word model codes its units so, then the spelling of every unknown word with its letter model
(each spelled from <s> to end-of-word, all words side by side), then the unseen characters.
"""

from __future__ import annotations

import hashlib

import numpy as np

from lmladder.compress import streams
from lmladder.compress.ngramrows import DENSE_BYTES, Distributions
from lmladder.errors import LadderError
from lmladder.vocab import codepoints

SEGMENT_ROWS = 1 << 19  # the encoder works out the states of this many coded units at a time
CHUNK_ROWS = 1 << 14  # and their distributions this many at a time (a few MB: they stay in cache)
BLOCK_UNITS = {"char": 4096, "word": 1024}  # default block lengths: a block start costs ~10 bits


class NgramCoder:
    """Letter and open-vocabulary word models (lmladder.ngrammodel) as coders."""

    def __init__(self, rung, budget: int = DENSE_BYTES):
        if rung.config.kenlm_compat:
            raise LadderError("this is a --kenlm-compat model: it hides unknown words behind <unk>, so it cannot "
                              "give every text back; train without --kenlm-compat to compress with it")
        self.rung = rung
        self.unit = rung.config.unit
        self.dist = Distributions(rung, budget)
        self.symbols = self.dist.V  # the width of the units' rows
        if self.unit == "char":
            self.vocab = rung.char_vocab
        else:
            self.speller = Distributions(rung.spelling, budget)
            self.vocab = rung.spelling.char_vocab
        self.unseen = streams.Unseen(self.vocab)

    def digest(self) -> str:
        h = hashlib.sha256()
        _digest_model(h, self.rung)
        if self.unit == "word":
            _digest_model(h, self.rung.spelling)
        return h.hexdigest()

    # -- coding sequences side by side ----------------------------------------------------
    def _encode(self, dist: Distributions, enc, units, starts, lengths, bos) -> None:
        longest = int(lengths.max()) if len(lengths) else 0
        per = max(1, SEGMENT_ROWS // max(1, len(lengths)))
        for s0 in range(0, longest, per):
            ctx, symbols = dist.states(units, starts, lengths, bos, s0, min(longest, s0 + per))
            for a in range(0, len(symbols), CHUNK_ROWS):
                probs, _ = dist.rows(ctx[:, a:a + CHUNK_ROWS])
                streams.encode_rows(enc, symbols[a:a + CHUNK_ROWS], probs)

    def _decode(self, dist: Distributions, dec, bos: np.ndarray, lengths: np.ndarray | None = None,
                stop: int | None = None, cap: int = 0) -> list[np.ndarray]:
        """Each sequence's units: `lengths` known (non-increasing, as blocks are), or each ends
        with `stop` (at most `cap` units)."""
        count = len(bos)
        ctx = dist.start_state(count, bos)
        alive = np.arange(count)
        got_seq, got_unit = [], []
        step = 0
        while len(alive):
            if lengths is not None:
                alive = alive[lengths[alive] > step]
                if not len(alive):
                    break
            elif step >= cap:
                raise LadderError("a spelled word never ended; the file is corrupt")
            prefix = lengths is not None  # blocks: only the last one is shorter, so the alive are a prefix
            sub = ctx[:, : len(alive)] if prefix else ctx[:, alive]
            probs, kids = dist.rows(sub, need_kids=True)
            units = streams.decode_rows(dec, probs)
            got_seq.append(alive)
            got_unit.append(units)
            nxt = dist.advance(sub, units, kids)
            if prefix:
                ctx[:, : len(alive)] = nxt
            else:
                ctx[:, alive] = nxt
            if stop is not None:
                alive = alive[units != stop]
            step += 1
        if not got_seq:
            return [np.zeros(0, np.int64) for _ in range(count)]
        seq, unit = np.concatenate(got_seq), np.concatenate(got_unit)
        order = np.argsort(seq, kind="stable")
        return np.split(unit[order], np.cumsum(np.bincount(seq, minlength=count))[:-1])

    # -- the text --------------------------------------------------------------------------
    def encode(self, text: str, enc, block: int | None = None) -> dict:
        if self.unit == "char":
            ids = self.vocab.encode(text)
            texts = None
        else:
            seq, texts = self.rung.encode([text])
            ids = seq[1:]
        plan = streams.plan(len(ids), block, BLOCK_UNITS[self.unit])
        if len(ids):
            bos = np.zeros(plan.count, dtype=bool)
            bos[0] = True
            lengths = np.full(plan.count, plan.length, dtype=np.int64)
            lengths[-1] = plan.last
            self._encode(self.dist, enc, ids, plan.starts(), lengths, bos)
        if self.unit == "char":
            escaped = codepoints(text)[ids == self.vocab.escape_id]
        else:
            words = [texts[i] for i in np.flatnonzero(ids == self.rung.escape).tolist()]
            spelled = np.concatenate([self.vocab.encode(w) for w in words] + [np.zeros(0, np.int64)])
            lengths = np.array([len(w) + 1 for w in words], dtype=np.int64)
            units = np.concatenate([np.append(self.vocab.encode(w), self.rung.spelling.eos) for w in words]
                                   + [np.zeros(0, np.int64)])
            self._encode(self.speller, enc, units, np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64),
                         lengths, np.ones(len(words), dtype=bool))
            escaped = codepoints("".join(words))[spelled == self.vocab.escape_id]
        self.unseen.encode(enc, escaped)
        return {"units": plan.units, "block": plan.length}

    def decode(self, params: dict, dec) -> str:
        plan = streams.Blocks(int(params["units"]), int(params["block"]))
        if plan.units < 0 or plan.length < 1:
            raise LadderError("the file's block plan is impossible; the file is corrupt")
        bos = np.zeros(plan.count, dtype=bool)
        bos[:1] = True
        lengths = np.full(plan.count, plan.length, dtype=np.int64)
        if plan.count:
            lengths[-1] = plan.last
        ids = np.concatenate(self._decode(self.dist, dec, bos, lengths) + [np.zeros(0, np.int64)])
        if self.unit == "char":
            escaped = self.unseen.decode(dec, int((ids == self.vocab.escape_id).sum()))
            return streams.text_of(ids, self.vocab, escaped)
        if np.any((ids < 0) | (ids >= self.rung.V) | (ids == self.rung.bos)):
            raise LadderError("a word decoded out of range; the file is corrupt")
        unknown = np.flatnonzero(ids == self.rung.escape)
        eow = self.rung.spelling.eos
        spellings = self._decode(self.speller, dec, np.ones(len(unknown), dtype=bool), stop=eow,
                                 cap=int(params.get("chars", 0)) + 2)
        letters = [s[:-1] for s in spellings]
        flat = np.concatenate(letters + [np.zeros(0, np.int64)])
        escaped = self.unseen.decode(dec, int((flat == self.vocab.escape_id).sum()))
        spelled = streams.text_of(flat, self.vocab, escaped)
        pieces = np.array(self.rung.units, dtype=object)[ids]
        at = 0
        for i, s in zip(unknown.tolist(), letters):
            pieces[i] = spelled[at:at + len(s)]
            at += len(s)
        return "".join(pieces.tolist())


def _digest_model(h, model) -> None:
    c = model.config
    h.update(f"{c.unit}|{c.order}|{c.smoothing}|{c.k!r}|{model.bos}|{model.escape}|{model.eos}|"
             f"{model.meta.get('tokens')}\0".encode())
    h.update("\0".join(model.units).encode("utf-8", "surrogatepass") + b"\0")
    for t in model.tables:
        for a in (t.keys, t.logp, t.backoff):
            h.update(np.ascontiguousarray(a).tobytes())
