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
"""

from __future__ import annotations

from itertools import chain
from typing import Sequence

import numpy as np

from lmladder import counts as counting
from lmladder import wordtok
from lmladder.errors import LadderError
from lmladder.vocab import CharVocab

AUTO_CANDIDATES = (2, 3, 4, 6)


class WordUnits:
    """The word units of some documents, tokenised once: all units as one Arrow string array,
    and how many units each document has."""

    def __init__(self, documents: Sequence[str]):
        import pyarrow as pa

        per_doc = [wordtok.units(d) for d in documents]
        self.lengths = np.array([len(d) for d in per_doc], dtype=np.int64)
        self.array = pa.array(list(chain.from_iterable(per_doc)), pa.string())

    def texts(self) -> list[str]:
        return self.array.to_pylist()

    def ids(self, keys, bos: int, unk: int, values: np.ndarray | None = None) -> np.ndarray:
        """Unit ids with BOS before each document: the i-th string of `keys` (an Arrow array)
        is id `values[i]` (default i), any other unit is `unk`."""
        import pyarrow.compute as pc

        pos = pc.index_in(self.array, value_set=keys).fill_null(-1).to_numpy(zero_copy_only=False)
        ids = np.where(pos >= 0, pos if values is None else values[np.maximum(pos, 0)], unk)
        return counting.bracket(ids, self.lengths, bos)


def word_stream(documents: Sequence[str], index: dict[str, int], bos: int, unk: int):
    """Unit ids with BOS before each document (`index` maps the vocabulary to ids, anything
    else is `unk`), and the unit strings (without BOS)."""
    import pyarrow as pa

    units = WordUnits(documents)
    values = np.fromiter(index.values(), dtype=np.int64, count=len(index))
    return units.ids(pa.array(list(index), pa.string()), bos, unk, values), units.texts()


def spelling_stream(words: Sequence[str], vocab: CharVocab, bos: int, eow: int) -> np.ndarray:
    """`BOS c1 ... cm EOW` for every word."""
    from lmladder.counts import bracket

    lengths = np.array([len(w) for w in words], dtype=np.int64)
    return bracket(vocab.encode("".join(words)), lengths, bos, eow)


def spelling_logprob(model, ids: np.ndarray, texts: list[str]) -> np.ndarray:
    """ln P(spelling) for each unit that is UNK, 0 for the others."""
    out = np.zeros(len(ids))
    where = np.flatnonzero(ids == model.escape)
    if len(where) == 0:
        return out
    sp = model.spelling
    words = [texts[i] for i in where.tolist()]
    seq = spelling_stream(words, sp.char_vocab, sp.bos, sp.eos)
    lp = sp.unit_logprob(seq)
    keep = seq != sp.bos
    lp = lp[keep] + sp.char_vocab.spelling_logprob(seq[keep])
    lengths = np.array([len(w) + 1 for w in words], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    out[where] = np.add.reduceat(lp, starts)
    return out


def sample_spelling(sp, rng: np.random.Generator, limit: int = 40) -> str:
    from lmladder.sampling import SampleSettings, choose

    ctx, text = [sp.bos], ""
    for _ in range(limit):
        unit = int(choose(sp.next_logprobs([ctx]), SampleSettings(temperature=1.0), rng)[0])
        if unit == sp.eos:
            break
        text += sp.spell(unit, rng)
        ctx.append(unit)
    return text


def _build(config, units: WordUnits, memory_bytes, min_count: int):
    import pyarrow as pa
    import pyarrow.compute as pc

    from lmladder import ngram

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
    units_list = words + [ngram.UNK_NAME, ngram.BOS_NAME]
    unk, bos = len(words), len(words) + 1
    seq = units.ids(keys, bos, unk)
    c = counting.count(seq, config.order, len(units_list), bos, memory_bytes)
    model = ngram.from_counts(config, units_list, bos, unk, None, c, {"min_count": min_count})
    # the speller: a letter n-gram over the rare words' spellings (every token, so frequent
    # rare words weigh more); with no rare words it is trained on all spellings
    rare = seq[seq != bos] == unk
    spell_words = (units.array.filter(pa.array(rare)) if rare.any() else units.array).to_pylist()
    cv = CharVocab.from_texts(["".join(spell_words)])
    sunits = list(cv.chars) + ["\ufffd", "</w>", ngram.BOS_NAME]
    sconf = ngram.NgramConfig(unit="char", order=config.spelling_order, smoothing="kn")
    sseq = spelling_stream(spell_words, cv, len(sunits) - 1, len(sunits) - 2)
    sc = counting.count(sseq, sconf.order, len(sunits), len(sunits) - 1, memory_bytes)
    model.spelling = ngram.from_counts(sconf, sunits, len(sunits) - 1, cv.escape_id, len(sunits) - 2, sc, {})
    return model


def train(config, documents: Sequence[str], memory_bytes: int | None = None,
          val: Sequence[str] | None = None):
    """The open-vocabulary word model; min_count 0 tunes k on `val` (bits per character)."""
    from lmladder import metrics

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
