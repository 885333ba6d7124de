"""The units of the n-gram rungs, and text turned into unit streams (lmladder.counts counts them).

Three kinds of unit, each a vocabulary `units` (id -> spelling) with a boundary id (BOS, before
every document; never predicted) and an escape id:

    letters       Unicode code points seen in train, then the escape (U+FFFD: any unseen
                  character, spelled through lmladder.vocab) and BOS
    word units    lmladder.wordtok's reversible units; the vocabulary and its UNK are chosen by
                  the open-vocabulary model (lmladder.openvocab), whose speller reads spellings
                  as `BOS c1 ... cm EOW`
    KenLM tokens  the tokens of lines as KenLM splits them (ASCII spaces, lines at "\\n" only),
                  `<s> tokens </s>`, anything unseen <unk> (KenLM's ids: <unk> 0, <s> 1, </s> 2)

Every stream is one int array of all documents, BOS first in each (lmladder.counts' rule).
"""

from __future__ import annotations

from itertools import chain
from typing import Callable, Sequence

import numpy as np

from lmladder import wordtok
from lmladder.counts import bracket
from lmladder.errors import LadderError
from lmladder.vocab import CharVocab, codepoints

BOS_NAME, EOS_NAME, UNK_NAME = "<s>", "</s>", "<unk>"

# what the train stream functions return: units, boundary, escape and end ids, the stream
Prepared = tuple[list[str], int, int, int | None, np.ndarray]


def _require_text(documents: Sequence[str]) -> None:
    if not any(documents):
        raise LadderError("the train split is empty; give a corpus with text in it")


# --- letters --------------------------------------------------------------------------------


def unit_dtype(size: int) -> type:
    """The narrowest unsigned integer type that holds ids 0..size-1 (streams are counted as they are)."""
    return next(t for t in (np.uint8, np.uint16, np.uint32, np.int64) if size <= np.iinfo(t).max)


def letter_units(documents: Sequence[str]) -> Prepared:
    """The letter vocabulary of the training documents and their stream, through a lookup table:
    O(T), no sort (the same ids as CharVocab). The stream is as narrow as the vocabulary allows
    (one byte a character for up to 255 letters): each document's code points are looked up
    straight into it, so no wider copy of the text is ever held."""
    _require_text(documents)
    seen_mask = np.zeros(0x110000, dtype=bool)
    for doc in documents:
        seen_mask[codepoints(doc)] = True
    seen = np.flatnonzero(seen_mask)
    cv = CharVocab(seen.astype(np.uint32).tobytes().decode("utf-32-le"))
    if len(cv.chars) < 2:
        raise LadderError(f"the train split has only one distinct character ({cv.chars!r}); "
                          "an n-gram model needs at least two")
    units = list(cv.chars) + ["\ufffd", BOS_NAME]  # the escape (shown as U+FFFD), then the boundary
    bos = len(units) - 1
    lut = np.full(int(seen[-1]) + 1, cv.escape_id, dtype=unit_dtype(len(units)))
    lut[seen] = np.arange(len(seen))
    seq = np.empty(sum(len(d) for d in documents) + len(documents), dtype=lut.dtype)
    at = 0
    for doc in documents:
        seq[at] = bos
        seq[at + 1:at + 1 + len(doc)] = lut[codepoints(doc)]
        at += len(doc) + 1
    return units, bos, cv.escape_id, None, seq


# --- KenLM tokens -----------------------------------------------------------------------------

# The bytes that separate tokens in KenLM (all ASCII, so they are the same characters in a str).
# lmplz reads a line's tokens between NUL, tab, CR and space (lm/builder/corpus_count.cc builds
# its delimiters from "\0\t\n\r "); query between C's isspace, tab, VT, FF, CR and space
# (util/spaces.cc). Both end a line at "\n" only: a no-break space, U+2028, VT or FF in lmplz's
# input is part of a token, and CR only separates tokens.
LMPLZ_SPACES = "\x00\t\r "
QUERY_SPACES = "\t\x0b\x0c\r "
KENLM_SPECIALS = (UNK_NAME, BOS_NAME, EOS_NAME)


def kenlm_tokens(documents: Sequence[str], spaces: str):
    """The tokens of the documents read one after another as KenLM reads a file (an Arrow string
    array) and how many tokens each line has, tokens cut at the characters of `spaces` (space
    last). Every line ended by "\\n" is a sentence; the text after the last "\\n" is one more,
    which KenLM gives no </s> (kenlm_sentences)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    text = "".join(documents)
    lines = pa.array(text.split("\n"), pa.string() if len(text) < (1 << 29) else pa.large_string())
    del text
    for space in spaces[:-1]:  # every space as " ", then one literal split (~5x faster than a regex)
        lines = pc.replace_substring(lines, space, " ")
    pieces = pc.split_pattern(lines, " ")  # empty strings where spaces touch or end a line
    words = pc.list_flatten(pieces)
    line_of = pc.list_parent_indices(pieces).to_numpy()
    real = pc.greater(pc.binary_length(words), 0)
    tokens = words.filter(real)
    lengths = np.bincount(line_of[real.to_numpy(zero_copy_only=False)], minlength=len(lines)).astype(np.int64)
    return tokens, lengths


def kenlm_sentences(ids: np.ndarray, lengths: np.ndarray, bos: int, eos: int, dtype=np.int64) -> np.ndarray:
    """`<s> tokens </s>` for every line but the last (the text after the last "\\n"), which is
    `<s> tokens` when it has tokens and nothing otherwise."""
    last = int(lengths[-1])
    seq = bracket(ids[:len(ids) - last], lengths[:-1], bos, eos, dtype)
    if last == 0:
        return seq
    return np.concatenate([seq, np.array([bos], dtype), ids[len(ids) - last:]]).astype(dtype, copy=False)


def kenlm_stream(documents: Sequence[str], index: dict[str, int], bos: int, eos: int, unk: int) -> np.ndarray:
    """The documents as KenLM's query reads them: `<s> tokens </s>` for every line, tokens split
    at QUERY_SPACES, anything outside `index` <unk>."""
    import pyarrow as pa
    import pyarrow.compute as pc

    tokens, lengths = kenlm_tokens(documents, QUERY_SPACES)
    vocab = pa.array(list(index.keys()), tokens.type)
    ids_of = np.fromiter(index.values(), dtype=np.int64, count=len(index))
    pos = pc.index_in(tokens, value_set=vocab).fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    return kenlm_sentences(np.where(pos >= 0, ids_of[np.maximum(pos, 0)], unk), lengths, bos, eos)


def kenlm_decoder(spell: Callable[[int], str], eos: int, prompt: str) -> Callable[[int], str]:
    """A --kenlm-compat sample's text: its units are whitespace-separated tokens and line ends
    (`eos`), so a space goes before each token but the first of a line, or the first after a
    prompt that ends in whitespace (or is empty)."""
    fresh = prompt == "" or prompt[-1].isspace()

    def decode(unit: int) -> str:
        nonlocal fresh
        gap = "" if fresh or unit == eos else " "
        fresh = unit == eos
        return gap + spell(unit)

    return decode


def kenlm_units(documents: Sequence[str]) -> Prepared:
    """lmplz's vocabulary and stream of the documents read one after another as one file:
    tokens split at LMPLZ_SPACES, ids <unk> 0, <s> 1, </s> 2, then every token in order of first
    sight (lmplz's own ids, which decide the n-gram it flushes last; lmladder.ngramestimate)."""
    import pyarrow.compute as pc

    _require_text(documents)
    tokens, lengths = kenlm_tokens(documents, LMPLZ_SPACES)
    if len(tokens) == 0:
        raise LadderError("the train split has no tokens; give a corpus with text in it")
    encoded = pc.dictionary_encode(tokens)  # the dictionary in order of first sight
    vocab = encoded.dictionary.to_pylist()
    seen = set(vocab)
    special = [name for name in KENLM_SPECIALS if name in seen]
    if special:
        raise LadderError(f"the train text holds {', '.join(special)} as a token; KenLM's lmplz refuses "
                          "<s>, </s> and <unk> in its input (its --skip_symbols reads them as spaces): "
                          "remove or rename them")
    units = [*KENLM_SPECIALS, *vocab]
    ids = encoded.indices.to_numpy(zero_copy_only=False).astype(unit_dtype(len(units)))
    ids += len(KENLM_SPECIALS)
    del tokens, encoded
    return units, 1, 0, 2, kenlm_sentences(ids, lengths, 1, 2, ids.dtype)


# --- word units and spellings ---------------------------------------------------------------


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
        return bracket(ids, self.lengths, bos)


def word_stream(documents: Sequence[str], index: dict[str, int], bos: int, unk: int):
    """Unit ids with BOS before each document (`index` maps the vocabulary to ids, anything
    else is `unk`), and the unit strings (without BOS)."""
    import pyarrow as pa

    units = WordUnits(documents)
    values = np.fromiter(index.values(), dtype=np.int64, count=len(index))
    return units.ids(pa.array(list(index), pa.string()), bos, unk, values), units.texts()


def spelling_stream(words: Sequence[str], vocab: CharVocab, bos: int, eow: int) -> np.ndarray:
    """`BOS c1 ... cm EOW` for every word (what an open-vocabulary model's speller reads)."""
    lengths = np.array([len(w) for w in words], dtype=np.int64)
    return bracket(vocab.encode("".join(words)), lengths, bos, eow)
