"""Canonical BPE: a token model's probability of a text, counted on the text's own encoding only.

A BPE tokenizer gives every text one encoding, but a model over token ids also gives probability
to other sequences that spell the same text (" t" "he" for " the"), which the tokenizer never
makes: probability a text's score never collects. Token dropout (lmladder.tokensplit) trains
the model on such sequences on purpose, so it leaks more.

`--canonical` (DataConfig.canonical) scores, samples and compresses with the next-token
distribution renormalised over the tokens that may follow the previous one in an encoding, and
mixed with the model's own so that no token is ever impossible:

    p'(b | a) = (1 - EPS) * p(b) * M[a, b] / sum_c p(c) M[a, c]  +  EPS * p(b)

M[a, b] (pair_table) is True when the pair can occur: encoding the text of a then b gives
exactly [a, b] (Vieira et al. 2024, "Language models over canonical byte-pair encodings": for BPE
that pairwise test decides whether a sequence is canonical), or does so after one of CONTEXTS or
before one of FOLLOWERS (GPT-2's split pattern reads the characters around a pair: "a'm" splits
"'m" off, ",'tis" joins the apostrophe to the comma, and a run of whitespace leaves its last
character to what follows, so "\n\n\n\nC" is "\n\n" "\n" "\n" "C"). p' sums to 1 for every context,
so every score stays a proper probability, and a pair the table wrongly refuses costs
log2(1/EPS) ~ 10 bits, never an infinity. With 512- to 2,048-token BPEs of Tiny Shakespeare or
gutenberg-en, no adjacent pair of either corpus's encoding is refused.

The table costs ~1 s for 512 tokens and ~5 s for 1,024 (each pair encoded once, on every core),
and grows with the square of the vocabulary: MAX_VOCAB bounds it. It is kept in the cache
(lmladder.home.cache_dir), keyed by the tokenizer's sha256.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from lmladder.errors import LadderError

EPS = 1e-3
MAX_VOCAB = 4096
CONTEXTS = ("'", ",", "-", " ", "a", "\n")  # tried before a refused pair
FOLLOWERS = ("A", "a", "x", "1", ".")  # tried after one
VERSION = 2  # of the table's rule: part of the cache key and of a compressed file's run digest
CHAR_REFUSED = ("--canonical is for a BPE tokenizer's runs: a char tokenizer gives every text one sequence of "
                "units already (use --tokenizer bpe or a BPE folder, or leave --canonical out)")


def check(tokenizer) -> None:
    if getattr(tokenizer, "kind", None) != "bpe":
        raise LadderError(CHAR_REFUSED)
    if tokenizer.vocab_size > MAX_VOCAB:
        raise LadderError(f"--canonical needs a table of every pair of tokens; the tokenizer has "
                          f"{tokenizer.vocab_size:,} tokens, at most {MAX_VOCAB:,} are supported (each pair is "
                          "encoded once: about two minutes at 4,096, then cached)")


def _ordinary(tokenizer) -> list[int]:
    """The ids of text pieces: all but end-of-text and any other added (special) token."""
    special = {tokenizer.eot_id, *tokenizer.raw.get_added_tokens_decoder()}
    return [i for i in range(tokenizer.vocab_size) if i not in special]


def pair_table(tokenizer) -> np.ndarray:
    """(V, V) bool: True where token b may follow token a in an encoding (see the module). A
    special token's row and column are all True, and so is a row the test would leave with no
    ordinary token."""
    from lmladder.bpe import token_bytes

    check(tokenizer)
    V = tokenizer.vocab_size
    pieces = token_bytes(tokenizer)
    normal = _ordinary(tokenizer)
    encode = getattr(tokenizer.raw, "encode_batch_fast", tokenizer.raw.encode_batch)
    table = np.ones((V, V), dtype=bool)

    def test(pairs: list[tuple[int, int]], before: bytes = b"", after: bytes = b"") -> None:
        """Encode before + a + b + after for each pair: with nothing around, a pair whose encoding
        is not exactly [a, b] is refused; with a context, a refused pair whose encoding ends
        (before) or starts (after) with [a, b] is allowed again."""
        texts, kept = [], []
        for a, b in pairs:
            try:
                texts.append((before + pieces[a] + pieces[b] + after).decode("utf-8"))
                kept.append((a, b))
            except UnicodeDecodeError:  # a piece of a character: left True, the safe side
                pass
        for (a, b), enc in zip(kept, encode(texts, add_special_tokens=False)):
            ids = enc.ids
            if before:
                table[a, b] = len(ids) >= 2 and ids[-2:] == [a, b]
            elif after:
                table[a, b] = len(ids) >= 2 and ids[:2] == [a, b]
            else:
                table[a, b] = ids == [a, b]

    rows = max(1, 200_000 // max(1, len(normal)))
    for start in range(0, len(normal), rows):
        test([(a, b) for a in normal[start:start + rows] for b in normal])
    for before, after in [(c, "") for c in CONTEXTS] + [("", c) for c in FOLLOWERS]:
        test([(int(a), int(b)) for a, b in zip(*np.nonzero(~table))], before.encode("utf-8"), after.encode("utf-8"))
    return _whole_rows(table, normal)


def _whole_rows(table: np.ndarray, normal: list[int]) -> np.ndarray:
    """A row with no ordinary token allowed (which would leave only end-of-text) allows every one."""
    table[~table[:, normal].any(axis=1)] = True
    return table


def cached_table(tokenizer) -> np.ndarray:
    """pair_table, read from the cache when it has it (a damaged entry is made again)."""
    from lmladder.atomic import atomic_file
    from lmladder.home import cache_dir

    path = cache_dir("canonical") / f"{tokenizer.hash}-v{VERSION}.npy"
    V = tokenizer.vocab_size
    try:
        bits = np.load(path, allow_pickle=False)
        if bits.dtype == np.uint8 and bits.shape == (V, (V + 7) // 8):
            table = np.unpackbits(bits, axis=1, count=V).astype(bool)
            return _whole_rows(table, _ordinary(tokenizer))
    except (OSError, ValueError, EOFError):  # missing, empty or damaged: made again
        pass
    if V > 1024:  # ~4 s at 1,024 tokens, growing with the square
        from lmladder.console import log

        log(f"building the canonical pair table of {V:,} tokens (about {5 * (V / 1024) ** 2:.0f} s, once: it is "
            "cached)")
    table = pair_table(tokenizer)
    try:
        with atomic_file(path) as f:
            np.save(f, np.packbits(table, axis=1), allow_pickle=False)
    except (OSError, LadderError) as exc:  # the run goes on: the table is only made again next time
        from lmladder.console import log

        log(f"[yellow]could not cache the canonical pair table in {path.parent} ({exc}); it will be built again "
            "next time[/]")
    return table


class Canonical:
    """The renormalisation on a device: __call__(lp, prev) maps next-token log-probabilities
    lp (..., V) (normalised over the tokenizer's V ids, or the output layer's padded ones, which
    are in no encoding; some may be -inf) after tokens prev (...) to those of p' (the module's)."""

    def __init__(self, table: np.ndarray, device: Any):
        import torch

        self.array = table
        self.table = torch.as_tensor(table, device=device)
        self.log_keep, self.log_eps = math.log1p(-EPS), math.log(EPS)

    @property
    def digest(self) -> str:
        """The rule's version and the table's hash (a compressed file names the distribution)."""
        import hashlib

        return f"v{VERSION}-{hashlib.sha256(np.packbits(self.array, axis=1).tobytes()).hexdigest()[:16]}"

    def to(self, device: Any) -> Canonical:
        return Canonical(self.array, device)

    def __call__(self, lp, prev):
        import torch

        allowed = self.table[prev]
        extra = lp.shape[-1] - allowed.shape[-1]
        if extra > 0:  # the output layer's padding ids: in no encoding
            allowed = torch.cat([allowed, allowed.new_zeros(*allowed.shape[:-1], extra)], dim=-1)
        lz = torch.logsumexp(lp.masked_fill(~allowed, -math.inf), dim=-1, keepdim=True)
        mixed = torch.where(allowed, torch.logaddexp(lp - lz + self.log_keep, lp + self.log_eps), lp + self.log_eps)
        return torch.where(torch.isneginf(lz), lp, mixed)  # no allowed token has mass: the model's own


def for_run(config, tokenizer, device: Any) -> Canonical | None:
    """A run's renormalisation, or None where its config does not ask for one."""
    if not getattr(config.data, "canonical", False):
        return None
    return Canonical(cached_table(tokenizer), device)
