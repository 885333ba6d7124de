"""The open-vocabulary word n-gram: exact bits per character for a word model.

Words (lmladder.wordtok units) seen at least k times in train are the vocabulary; every other
word is the unit UNK, whose spelling is scored by a letter n-gram over the spellings of the
rare training words, each spelling ended by an end-of-word symbol EOW:

    P(word | context) = P(UNK | context) * P(c1 ... cm EOW)       for a word outside the vocabulary

with unseen letters going through lmladder.vocab's escape. Every string therefore gets a
non-zero probability and its cost is counted in full, so the bits per character compare
directly with letter rungs (KenLM's "perplexity including OOVs" instead charges one <unk>
token whatever the spelling). The model is slightly deficient (an in-vocabulary word could also
be spelled out as UNK), so its probabilities sum to at most 1 and the bits are an honest upper
bound. k is chosen on the validation split when it is 0 ("auto").

This module trains the model (its vocabulary, the word n-gram and the speller);
lmladder.ngrammodel scores and samples it, lmladder.ngramunits makes its unit streams.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from lmladder import counts as counting
from lmladder import metrics
from lmladder.errors import LadderError
from lmladder.ngramestimate import from_counts
from lmladder.ngrammodel import NgramConfig, NgramModel
from lmladder.ngramunits import BOS_NAME, UNK_NAME, WordUnits, spelling_stream
from lmladder.vocab import CharVocab

AUTO_CANDIDATES = (2, 3, 4, 6)


def _build(config: NgramConfig, units: WordUnits, memory_bytes: int | None, min_count: int) -> NgramModel:
    """The word model whose vocabulary is the words seen at least `min_count` times, with its speller."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if len(units.array) == 0:
        raise LadderError("the train split is empty; give a corpus with text in it")
    vc = pc.value_counts(units.array)
    freq = vc.field("counts").to_numpy()
    order = np.argsort(-freq, kind="stable")
    common = order[freq[order] >= min_count]
    if len(common) + (1 if len(common) < len(order) else 0) < 2:
        raise LadderError("the train split has only one distinct word; a word n-gram needs at least two")
    keys = vc.field("values").take(pa.array(common))
    words = keys.to_pylist()
    units_list = words + [UNK_NAME, BOS_NAME]
    unk, bos = len(words), len(words) + 1
    seq = units.ids(keys, bos, unk)
    c = counting.count(seq, config.order, len(units_list), bos, memory_bytes)
    rare = seq[seq != bos] == unk
    del seq  # the counts are all estimation needs
    model = from_counts(config, units_list, bos, unk, None, c, {"min_count": min_count})
    # the speller: a letter n-gram over the rare words' spellings (every token, so frequent
    # rare words weigh more); with no rare words it is trained on all spellings
    spell_words = (units.array.filter(pa.array(rare)) if rare.any() else units.array).to_pylist()
    cv = CharVocab.from_texts(["".join(spell_words)])
    sunits = list(cv.chars) + ["\ufffd", "</w>", BOS_NAME]
    sconf = NgramConfig(unit="char", order=config.spelling_order, smoothing="kn")
    sseq = spelling_stream(spell_words, cv, len(sunits) - 1, len(sunits) - 2)
    sc = counting.count(sseq, sconf.order, len(sunits), len(sunits) - 1, memory_bytes)
    model.spelling = from_counts(sconf, sunits, len(sunits) - 1, cv.escape_id, len(sunits) - 2, sc, {})
    return model


def train(config: NgramConfig, documents: Sequence[str], memory_bytes: int | None = None,
          val: Sequence[str] | None = None) -> NgramModel:
    """The open-vocabulary word model; min_count 0 tunes k on `val` (bits per character)."""
    units = WordUnits(documents)
    if config.min_count > 0:
        return _build(config, units, memory_bytes, config.min_count)
    if not val or not any(val):
        config.min_count = AUTO_CANDIDATES[0]
        return _build(config, units, memory_bytes, config.min_count)
    best = None
    for k in AUTO_CANDIDATES:
        model = _build(config, units, memory_bytes, k)
        bpc = metrics.evaluate(model, val).bits_per_char
        model.meta["val_bits_per_char"] = bpc
        if best is None or bpc < best[0]:
            best = (bpc, model)
    best[1].config.min_count = best[1].meta["min_count"]
    return best[1]
