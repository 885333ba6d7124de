"""Token splitting: BPE-dropout's effect on training windows, drawn without re-encoding.

BPE-dropout (Provilkov et al. 2020) skips each merge with probability p while encoding, so a
word comes out in smaller pieces some of the time: the model sees a word and its parts, and a
small corpus stretches further. Re-encoding the corpus every step is slow and the library's
dropout draws from an unseeded generator, so lmladder does the equivalent on the encoded
windows instead: each token of a window is split, with probability p, into the two tokens whose
merge made it, and each half again with probability p, down to single bytes. A split stream is
still a valid spelling of the same text (the halves decode to the token's bytes), so the model
learns the text, only cut differently. Val and test always use the deterministic encoding.

A window is drawn at seq_len + 1 tokens, split, and cut back to seq_len + 1 (splitting only
lengthens it). Everything is whole-array numpy, one pass per level of the merge trees.
"""

from __future__ import annotations

import json

import numpy as np

from lmladder.errors import LadderError


CHAR_REFUSED = ("--token-dropout and --token-dropout-steps split BPE tokens into their merges; the char tokenizer "
                "has none (train with a BPE --tokenizer, or leave them at 0)")


def merge_parents(tokenizer) -> tuple[np.ndarray, np.ndarray]:
    """(left, right): for each token id the ids of the two tokens its merge joined; -1 for a
    token no merge made (a byte, a special token)."""
    if getattr(tokenizer, "kind", None) != "bpe":
        raise LadderError(CHAR_REFUSED)
    model = json.loads(tokenizer.json_bytes)["model"]
    vocab: dict[str, int] = model["vocab"]
    size = max(tokenizer.vocab_size, max(vocab.values(), default=-1) + 1)
    left = np.full(size, -1, dtype=np.int64)
    right = np.full(size, -1, dtype=np.int64)
    for merge in model["merges"]:
        a, b = merge.split(" ", 1) if isinstance(merge, str) else merge
        if a not in vocab or b not in vocab or a + b not in vocab:  # e.g. a word-piece prefix or suffix
            raise LadderError(f"--token-dropout: the tokenizer's merge {a!r} + {b!r} does not join two of its "
                              "tokens into a third; it needs a byte-level BPE as `lmladder tokenizer train` makes")
        joined = vocab[a + b]
        left[joined], right[joined] = vocab[a], vocab[b]
    return left, right


def expected_pieces(parents: tuple[np.ndarray, np.ndarray], p: float) -> np.ndarray:
    """For each id, the mean number of tokens split_windows turns it into: 1 - p + p (E[left] +
    E[right]), a byte 1 (a merge's parts come before it in the merge order, so one pass in id
    order would do; the loop below does not rely on it)."""
    left, right = parents
    pieces = np.ones(len(left))
    merged = np.flatnonzero(left >= 0)
    for _ in range(len(merged) + 1):  # each pass settles one more level of the merge trees
        new = pieces.copy()
        new[merged] = 1 - p + p * (pieces[left[merged]] + pieces[right[merged]])
        if np.array_equal(new, pieces):
            break
        pieces = new
    return pieces


def in_use(data) -> bool:
    """Whether a run's training windows split tokens (DataConfig data: a token dropout, or a fall to one)."""
    return data.token_dropout > 0 or data.token_dropout_steps > 0


def dropout_at(data, step: int) -> float:
    """The token dropout of optimizer step `step`: --token-dropout, or over the first
    --token-dropout-steps steps a straight line from 1 at step 0 down to it."""
    if step >= data.token_dropout_steps:
        return data.token_dropout
    return 1.0 - (1.0 - data.token_dropout) * step / data.token_dropout_steps


def parents_for(config, tokenizer) -> tuple[np.ndarray, np.ndarray] | None:
    """The merge table a run's training windows split by: None where they never split (in_use)."""
    return merge_parents(tokenizer) if in_use(config.data) else None


def split_windows(windows: np.ndarray, parents: tuple[np.ndarray, np.ndarray], p: float,
                  rng: np.random.Generator) -> np.ndarray:
    """windows (B, n) of token ids -> (B, n): each token split into its merge's two tokens with
    probability p, each half again with probability p, and so on; every row cut back to n.

    One draw over the whole batch picks the tokens that split; their pieces are then worked out
    level by level in a compact array of the split tokens' pieces alone (a fraction p of the
    batch, each level only the halves just made may split), and the batch is rebuilt once."""
    left, right = parents
    batch, n = windows.shape
    flat = np.asarray(windows, dtype=np.int64).ravel()
    hit = np.flatnonzero((left[flat] >= 0) & (rng.random(flat.shape) < p))
    if len(hit) == 0:
        return flat.reshape(batch, n)
    # the split tokens' pieces, in order: owner (which split token) and id, and which may split
    owner = np.repeat(np.arange(len(hit)), 2)
    piece = np.stack([left[flat[hit]], right[flat[hit]]], axis=1).ravel()
    fresh = np.ones(len(piece), dtype=bool)
    while True:
        more = np.flatnonzero(fresh & (left[piece] >= 0))
        more = more[rng.random(len(more)) < p]
        if len(more) == 0:
            break
        counts = np.ones(len(piece), dtype=np.int64)
        counts[more] = 2
        first = np.cumsum(counts) - counts  # where each piece's first part lands
        whole = piece[more]
        owner, piece = np.repeat(owner, counts), np.repeat(piece, counts)
        piece[first[more]], piece[first[more] + 1] = left[whole], right[whole]
        fresh = np.zeros(len(piece), dtype=bool)
        fresh[first[more]] = fresh[first[more] + 1] = True
    # the batch again: each split token's place widened to its pieces
    counts = np.ones(len(flat), dtype=np.int64)
    counts[hit] = np.bincount(owner, minlength=len(hit))
    start = np.cumsum(counts) - counts
    out = np.repeat(flat, counts)
    block = np.cumsum(counts[hit]) - counts[hit]  # where each split token's pieces begin in `piece`
    out[start[hit][owner] + np.arange(len(piece)) - block[owner]] = piece
    row_start = np.concatenate(([0], np.cumsum(counts.reshape(batch, n).sum(1))[:-1]))
    return out[row_start[:, None] + np.arange(n)]
