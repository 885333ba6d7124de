"""Reference compressors as rungs: a language model is a compressor, and back.

A compressor C is scored on test as the extra bits it needs to compress test after train,
8 * (|C(train + test)| - |C(train)|), spread as one unit over all of test's characters, so it
goes through the same metric code as every model.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import math
from typing import Callable, Sequence

import numpy as np

from lmladder.errors import LadderError
from lmladder.metrics import UnitScores
from lmladder.rung import Built

COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": lambda data: gzip.compress(data, compresslevel=9, mtime=0),
    "bz2": lambda data: bz2.compress(data, compresslevel=9),
    "xz": lambda data: lzma.compress(data, preset=9 | lzma.PRESET_EXTREME),
}


class CompressorRung:
    def __init__(self, method: str, train_docs: Sequence[str]):
        if method not in COMPRESSORS:
            raise LadderError(f"unknown compressor {method!r}; choose one of {', '.join(COMPRESSORS)}")
        self.method = method
        self.compress = COMPRESSORS[method]
        self.train = "".join(train_docs).encode("utf-8")
        self.train_size = len(self.compress(self.train))

    def score(self, documents: Sequence[str]) -> UnitScores:
        test = "".join(documents).encode("utf-8")
        bits = 8 * (len(self.compress(self.train + test)) - self.train_size)
        return UnitScores(np.array([-max(bits, 0) * math.log(2)]), sum(len(d) for d in documents), len(test))


def from_ladder(kind: str, settings: dict, splits, profile: str) -> Built:
    """The `compressor` kind of a ladder file: setting `method` (gzip, bz2 or xz)."""
    return Built(CompressorRung(settings["method"], splits.require("train")), None, None, has_tokens=False)
