"""The letter rungs (uniform, unigram) as coders: no context, so one distribution codes every
character at once, followed by the spellings of the characters the vocabulary lacks."""

from __future__ import annotations

import hashlib

import numpy as np

from lmladder.compress import streams
from lmladder.vocab import codepoints


class LetterCoder:
    unit = "char"

    def __init__(self, rung):
        self.rung = rung
        self.vocab = rung.vocab
        self.probs = np.exp(rung.logp).astype(np.float32)
        self.unseen = streams.Unseen(self.vocab)

    def digest(self) -> str:
        h = hashlib.sha256(f"{self.rung.kind}\0".encode())
        h.update(self.vocab.chars.encode("utf-8", "surrogatepass") + b"\0")
        h.update(np.ascontiguousarray(self.rung.counts, dtype="<i8").tobytes())
        return h.hexdigest()

    def encode(self, text: str, enc, block: int | None = None) -> dict:
        ids = self.vocab.encode(text)
        if len(ids):
            enc.encode(ids.astype(np.int32), streams.iid_model(self.probs))
        self.unseen.encode(enc, codepoints(text)[ids == self.vocab.escape_id])
        return {"units": int(len(ids))}

    def decode(self, params: dict, dec) -> str:
        n = int(params["units"])
        ids = dec.decode(streams.iid_model(self.probs), n).astype(np.int64) if n else np.zeros(0, np.int64)
        escaped = self.unseen.decode(dec, int((ids == self.vocab.escape_id).sum()))
        return streams.text_of(ids, self.vocab, escaped)
