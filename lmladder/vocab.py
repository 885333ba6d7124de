"""The character vocabulary and its escape rule, shared by every character-level rung.

A vocabulary is the set of characters (Unicode code points) seen in the training split,
sorted by code point and numbered 0..V-1, plus one escape symbol ESC with id V. A character
outside the vocabulary is scored as ESC followed by a uniform choice among the Unicode
scalar values (code points that are not surrogates, 1,112,064 of them) that are not in the
vocabulary:

    P(c | context) = P(ESC | context) / (1,112,064 - V)      for c not in the vocabulary.

So every rung gives every string a non-zero probability, with no `<unk>` escape hatch: an
unseen character costs about 20 bits plus the model's price for ESC.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from lmladder.errors import LadderError

UNICODE_SCALARS = 0x110000 - 0x800  # all code points minus the 2,048 surrogates
FORMAT = "lmladder-char-vocab"


def codepoints(text: str) -> np.ndarray:
    """The code points of `text` as uint32, without a Python loop."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")


class CharVocab:
    def __init__(self, chars: Sequence[str] | str):
        chars = sorted(set(chars))
        self.chars = "".join(chars)
        self.table = codepoints(self.chars).astype(np.uint32)  # sorted
        self.escape_id = len(self.chars)
        self.size = len(self.chars) + 1  # the chars plus ESC
        # ln of the uniform spelling of an unseen character, added after ln P(ESC)
        self.unseen_logprob = -math.log(UNICODE_SCALARS - len(self.chars))

    @classmethod
    def from_texts(cls, texts: Sequence[str]) -> "CharVocab":
        seen = np.unique(np.concatenate([np.unique(codepoints(t)) for t in texts] or [np.zeros(0, "<u4")]))
        if len(seen) == 0:
            raise LadderError("the training split has no characters; give a corpus with text in it")
        return cls(seen.astype(np.uint32).tobytes().decode("utf-32-le"))

    def encode(self, text: str) -> np.ndarray:
        """Ids (int64) of each character; characters not in the vocabulary map to ESC."""
        cps = codepoints(text)
        if len(self.table) == 0:
            return np.full(len(cps), self.escape_id, dtype=np.int64)
        pos = np.searchsorted(self.table, cps)
        pos_clipped = np.minimum(pos, len(self.table) - 1)
        known = self.table[pos_clipped] == cps
        return np.where(known, pos_clipped, self.escape_id).astype(np.int64)

    def spelling_logprob(self, ids: np.ndarray) -> np.ndarray:
        """What each unit costs beyond the model's ln P(id): the uniform spelling after ESC."""
        return np.where(ids == self.escape_id, self.unseen_logprob, 0.0)

    def decode(self, ids: Sequence[int], rng: np.random.Generator | None = None) -> str:
        """Characters of `ids`; ESC becomes a random unseen character (drawn from `rng`), or
        U+FFFD when no generator is given."""
        out = []
        for i in ids:
            if i == self.escape_id:
                out.append(self.random_unseen(rng) if rng is not None else "\ufffd")
            else:
                out.append(self.chars[i])
        return "".join(out)

    def random_unseen(self, rng: np.random.Generator) -> str:
        while True:
            cp = int(rng.integers(0, 0x110000))
            if not (0xD800 <= cp < 0xE000) and chr(cp) not in self.chars:
                return chr(cp)

    def to_json(self) -> dict:
        return {"format": FORMAT, "chars": self.chars, "escape_id": self.escape_id,
                "unicode_scalars": UNICODE_SCALARS}

    @classmethod
    def from_json(cls, data: dict, source: str = "vocabulary") -> "CharVocab":
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("chars"), str):
            raise LadderError(f"{source} is not an lmladder character vocabulary")
        return cls(data["chars"])

    def save(self, path: str | Path) -> None:
        from lmladder.atomic import write_json

        write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> "CharVocab":
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise LadderError(f"{path} is missing; retrain the model that should hold it") from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise LadderError(f"{path} is corrupt (not JSON); retrain the model that should hold it") from None
        return cls.from_json(data, str(path))
