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

from typing import Sequence

import numpy as np

from lmladder import counts as counting
from lmladder import wordtok
from lmladder.errors import LadderError
from lmladder.vocab import CharVocab

AUTO_CANDIDATES = (2, 3, 4, 6)


def _units(documents: Sequence[str]) -> list[list[str]]:
    return [wordtok.units(d) for d in documents]


def word_stream(documents: Sequence[str], index: dict[str, int], bos: int, unk: int):
    """Unit ids with BOS before each document, and the unit strings (without BOS)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    per_doc = _units(documents)
    flat = [u for doc in per_doc for u in doc]
    keys = pa.array(list(index.keys()), pa.string())
    ids_of = np.asarray(list(index.values()), dtype=np.int64)
    pos = pc.index_in(pa.array(flat, pa.string()), value_set=keys).fill_null(-1).to_numpy()
    ids = np.where(pos >= 0, ids_of[np.maximum(pos, 0)], unk)
    lengths = np.array([len(d) for d in per_doc], dtype=np.int64)
    out = np.empty(len(ids) + len(lengths), dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths + 1)[:-1]]).astype(np.int64)
    out[starts] = bos
    mask = np.ones(len(out), dtype=bool)
    mask[starts] = False
    out[mask] = ids
    return out, flat


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


def _build(config, documents, memory_bytes, min_count: int):
    import pyarrow as pa
    import pyarrow.compute as pc

    from lmladder import ngram

    flat = [u for doc in _units(documents) for u in doc]
    if not flat:
        raise LadderError("the train split is empty; give a corpus with text in it")
    vc = pc.value_counts(pa.array(flat, pa.string()))
    values, freq = vc.field("values").to_pylist(), vc.field("counts").to_numpy()
    order = np.argsort(-freq, kind="stable")
    words = [values[i] for i in order.tolist() if freq[i] >= min_count]
    rare = set(values[i] for i in order.tolist() if freq[i] < min_count)
    if len(words) + (1 if rare else 0) < 2:
        raise LadderError("the train split has only one distinct word; a word n-gram needs at least two")
    units = words + [ngram.UNK_NAME, ngram.BOS_NAME]
    unk, bos = len(words), len(words) + 1
    index = {w: i for i, w in enumerate(words)}
    seq, _ = word_stream(documents, index, bos, unk)
    c = counting.count(seq, config.order, len(units), bos, memory_bytes)
    model = ngram.from_counts(config, units, bos, unk, None, c, {"min_count": min_count})
    # the speller: a letter n-gram over the rare words' spellings (every token, so frequent
    # rare words weigh more); with no rare words it is trained on all spellings
    spell_words = [u for u in flat if u in rare] or flat
    cv = CharVocab.from_texts(spell_words)
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

    if config.min_count > 0:
        return _build(config, documents, memory_bytes, config.min_count)
    if not val or not any(val):
        config.min_count = AUTO_CANDIDATES[0]
        return _build(config, documents, memory_bytes, config.min_count)
    best = None
    for k in AUTO_CANDIDATES:
        model = _build(config, documents, memory_bytes, k)
        bpc = metrics.evaluate(model, val).bits_per_char
        model.meta["val_bits_per_char"] = bpc
        if best is None or bpc < best[0]:
            best = (bpc, model)
    best[1].config.min_count = best[1].meta["min_count"]
    return best[1]
