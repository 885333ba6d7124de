"""Byte-level BPE (Sennrich et al. 2016; byte-level as in GPT-2, Radford et al. 2019), trained
with Hugging Face `tokenizers`.

The pipeline is the library's own, saved whole in `tokenizer.json`:

    pre-tokeniser  ByteLevel (GPT-2's split pattern, no prefix space)
    model          BPE over the 256 byte symbols, no unknown token
    decoder        ByteLevel
    special        <|endoftext|>, put between documents by id (never matched inside text)

Trained on the train split only. A text is fed to the trainer in pieces cut where the
pre-tokeniser always splits (lmladder.tokens.chunks), so the pieces give the same word counts
as the whole documents while the library counts them on every core. The same corpus and
settings give a byte-identical `tokenizer.json`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from lmladder import artifacts
from lmladder.console import progress_enabled
from lmladder.errors import LadderError
from lmladder.tokens import EOT, FORMAT, BPETokenizer, chunks

SPECIAL_TOKENS = (EOT,)
MIN_VOCAB = 256 + len(SPECIAL_TOKENS)  # every byte, and the specials
MAX_VOCAB = 1 << 32  # ids must fit in uint32
TRAIN_PIECE_CHARS = 1 << 16  # small pieces keep both cores busy while counting words


@dataclass(frozen=True)
class BPESettings:
    vocab_size: int = 4096
    min_frequency: int = 2

    def check(self) -> None:
        problems = []
        if not MIN_VOCAB <= self.vocab_size <= MAX_VOCAB:
            problems.append(f"--vocab-size {self.vocab_size} is outside [{MIN_VOCAB}, {MAX_VOCAB}] "
                            f"(256 bytes + {len(SPECIAL_TOKENS)} special token at least; ids must fit in uint32)")
        if self.min_frequency < 1:
            problems.append(f"--min-frequency {self.min_frequency} must be at least 1")
        if problems:
            raise LadderError("; ".join(problems))


def new_tokenizer():
    """An untrained byte-level BPE pipeline."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def new_trainer(settings: BPESettings, show_progress: bool = False):
    from tokenizers import pre_tokenizers, trainers

    return trainers.BpeTrainer(
        vocab_size=settings.vocab_size,
        min_frequency=settings.min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes, seen or not
        show_progress=show_progress,
    )


def training_pieces(documents: Sequence[str]) -> Iterator[str]:
    for doc in documents:
        yield from chunks(doc, TRAIN_PIECE_CHARS)


def train_raw(documents: Sequence[str], settings: BPESettings, show_progress: bool = False):
    """A trained `tokenizers.Tokenizer` (the library object itself)."""
    tok = new_tokenizer()
    pieces = list(training_pieces(documents))
    tok.train_from_iterator(pieces, trainer=new_trainer(settings, show_progress), length=len(pieces))
    return tok


def train(documents: Sequence[str], settings: BPESettings, corpus: dict[str, Any] | None = None,
          split: str | None = None) -> BPETokenizer:
    """Train on `documents` (the train split) and return the wrapped tokenizer."""
    settings.check()
    if not any(documents):
        raise LadderError("the train split is empty; give a corpus with text in its train split")
    raw = train_raw(documents, settings, show_progress=progress_enabled())
    data = raw.to_str(pretty=True).encode("utf-8")
    header = artifacts.header(FORMAT, kind="bpe", corpus=corpus, split=split, settings=asdict(settings),
                              special_tokens=list(SPECIAL_TOKENS))
    return BPETokenizer.from_json_bytes(data, header)


# --- looking inside ----------------------------------------------------------------------


def _byte_decoder() -> dict[str, int]:
    """GPT-2's map from the printable stand-in characters back to bytes."""
    from tokenizers import pre_tokenizers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    # the library's alphabet is the same 256 characters as GPT-2's bytes_to_unicode
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    table = {chr(c): b for b, c in zip(bs, cs)}
    assert set(table) == set(alphabet)
    return table


def token_bytes(tokenizer: BPETokenizer) -> list[bytes]:
    """The raw bytes each id stands for (special tokens as their UTF-8 text)."""
    decoder = _byte_decoder()
    out = []
    for i in range(tokenizer.vocab_size):
        token = tokenizer.raw.id_to_token(i) or ""
        if all(ch in decoder for ch in token) and token != EOT:
            out.append(bytes(decoder[ch] for ch in token))
        else:
            out.append(token.encode("utf-8"))
    return out


def save(tokenizer: BPETokenizer, out: str | Path) -> None:
    tokenizer.save(out)
