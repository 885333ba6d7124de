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


def merge_parents(tokenizer) -> tuple[np.ndarray, np.ndarray]:
    """(left, right): for each token id the ids of the two tokens its merge joined; -1 for a
    token no merge made (a byte, a special token)."""
    if getattr(tokenizer, "kind", None) != "bpe":
        raise LadderError("--token-dropout splits BPE tokens into their merges; the char tokenizer has none "
                          "(train with a BPE --tokenizer, or leave --token-dropout at 0)")
    model = json.loads(tokenizer.json_bytes)["model"]
    vocab: dict[str, int] = model["vocab"]
    left = np.full(tokenizer.vocab_size, -1, dtype=np.int64)
    right = np.full(tokenizer.vocab_size, -1, dtype=np.int64)
    for merge in model["merges"]:
        a, b = merge.split(" ", 1) if isinstance(merge, str) else merge
        joined = vocab[a + b]
        left[joined], right[joined] = vocab[a], vocab[b]
    return left, right


def parents_for(config, tokenizer) -> tuple[np.ndarray, np.ndarray] | None:
    """The merge table a run's training windows split by: None where its token_dropout is 0."""
    return merge_parents(tokenizer) if config.data.token_dropout > 0 else None


def split_windows(windows: np.ndarray, parents: tuple[np.ndarray, np.ndarray], p: float,
                  rng: np.random.Generator) -> np.ndarray:
    """windows (B, n) of token ids -> (B, n): each token split into its merge's two tokens with
    probability p, each half again with probability p, and so on; every row cut back to n."""
    left, right = parents
    batch, n = windows.shape
    w = np.asarray(windows, dtype=np.int64)
    fresh = np.ones(w.shape, dtype=bool)  # the tokens that may still split at this level
    while True:
        hit = fresh & (left[w] >= 0)
        hit &= rng.random(w.shape) < p
        if not hit.any():
            return w
        counts = 1 + hit.ravel()
        first = np.cumsum(counts) - counts  # where each token's first piece lands
        flat = np.repeat(w.ravel(), counts)
        new = np.zeros(len(flat), dtype=bool)
        whole = w.ravel()[hit.ravel()]
        at = first[hit.ravel()]
        flat[at], flat[at + 1] = left[whole], right[whole]
        new[at] = new[at + 1] = True
        row_start = np.concatenate(([0], np.cumsum(counts.reshape(batch, n).sum(1))[:-1]))
        keep = row_start[:, None] + np.arange(n)
        w, fresh = flat[keep], new[keep]
