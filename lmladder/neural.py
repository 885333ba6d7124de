"""The neural rungs (GPT and MLP) as the rest of lmladder sees them: a rung object that scores
documents through the one contract and samples text, and the model built from a run's config
(lmladder.config).

Scoring: each document is the id sequence [eot] doc, and every unit of doc is predicted from the
units before it (never across documents), over windows of the model's context that overlap so
that each unit past the first window sees at least half a context (the MLP: its whole context).
End-of-text is not a unit of the text, so its probability is removed and the rest renormalised.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lmladder.config import TrainConfig
from lmladder.errors import LadderError


def padded_vocab(tokenizer_vocab: int, asked: int = 0) -> int:
    return asked if asked else 64 * math.ceil(tokenizer_vocab / 64)


def build_model(config: TrainConfig):
    if config.model_kind == "gpt":
        from lmladder.gpt import GPT

        return GPT(config.model)
    from lmladder.mlp import MLP

    return MLP(config.model)


def context_overlap(model_kind: str, block_size: int) -> int:
    """How many units of each scoring window (after the first) only serve as context."""
    return block_size - 1 if model_kind == "mlp" else block_size // 2


def window_plan(n: int, window: int, overlap: int) -> list[tuple[int, int]]:
    """(start, first scored position) of each window over a sequence of n ids; window k reads
    ids[start : start + window] and predicts ids[start + 1 : start + window + 1]; together they
    predict ids[1:] exactly once each."""
    if n < 2:
        return []
    stride = max(1, window - overlap)
    plan, start = [(0, 0)], 0
    while start + window < n - 1:
        start += stride
        plan.append((start, overlap))
    return plan


def window_logprobs(model, seqs: Sequence[np.ndarray], window: int, overlap: int, batch_size: int,
                    device, dtype=None, allowed: int | None = None, excluded: int | None = None,
                    canonical=None) -> list[np.ndarray]:
    """ln P of ids[1:] of each sequence (float64), each id predicted from the ids before it,
    in batches of windows. Logits past `allowed` (padding of the vocabulary) and at `excluded`
    (end-of-text) are removed before the softmax; `canonical` (lmladder.canonical.Canonical)
    then renormalises each position's distribution after the id before it."""
    import torch
    from torch.nn import functional as F

    jobs = []  # (sequence, start, first scored)
    for s, seq in enumerate(seqs):
        jobs.extend((s, start, first) for start, first in window_plan(len(seq), window, overlap))
    out = [np.zeros(max(0, len(seq) - 1)) for seq in seqs]
    autocast = (torch.autocast("cuda", dtype=dtype) if dtype is not None and torch.device(device).type == "cuda"
                else contextlib.nullcontext())
    for i in range(0, len(jobs), batch_size):
        part = jobs[i : i + batch_size]
        x = np.zeros((len(part), window), dtype=np.int64)
        y = np.zeros((len(part), window), dtype=np.int64)
        lengths = []
        for j, (s, start, _) in enumerate(part):
            chunk = np.asarray(seqs[s][start : start + window + 1], dtype=np.int64)
            x[j, : len(chunk) - 1] = chunk[:-1]
            y[j, : len(chunk) - 1] = chunk[1:]
            lengths.append(len(chunk) - 1)
        width = max(lengths)
        xt = torch.from_numpy(x[:, :width]).to(device)
        with torch.no_grad(), autocast:
            logits = model(xt)
        logits = logits.float()
        if allowed is not None:
            logits = logits[..., :allowed]
        if excluded is not None:
            logits[..., excluded] = -math.inf
        lp = F.log_softmax(logits, dim=-1)
        if canonical is not None:
            lp = canonical(lp, xt)
        picked = lp.gather(-1, torch.from_numpy(y[:, :width]).to(device)[..., None])[..., 0]
        picked = picked.double().cpu().numpy()
        for j, (s, start, first) in enumerate(part):
            out[s][start + first : start + lengths[j]] = picked[j, first : lengths[j]]
    return out


class NeuralRung:
    """A trained GPT or MLP with its tokenizer, keeping the rung contract (lmladder.rung)."""

    def __init__(self, model, tokenizer, config: TrainConfig, device: str = "cpu"):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.config = config
        self.device = device
        self.kind = config.model_kind
        self.parameters = sum(p.numel() for p in model.parameters())
        from lmladder import canonical

        self.canonical = canonical.for_run(config, tokenizer, device)  # None unless the run asked for it

    @property
    def window(self) -> int:
        return self.config.model.block_size if self.kind == "gpt" else max(256, 2 * self.config.model.block_size)

    def score(self, documents: Sequence[str]):
        from lmladder.metrics import UnitScores

        tok = self.tokenizer
        encoded = tok.encode_batch(list(documents))
        seqs = [np.concatenate([[tok.eot_id], ids]).astype(np.int64) for ids in encoded]
        dtype = _autocast_dtype(self.config.run.dtype)
        overlap = context_overlap(self.kind, self.config.model.block_size)
        lps = window_logprobs(self.model, seqs, self.window, overlap, self.config.run.eval_batch_size,
                              self.device, dtype, tok.vocab_size, tok.eot_id, self.canonical)
        parts = [UnitScores(lp + tok.spelling_logprob(ids), len(doc), len(doc.encode("utf-8")))
                 for doc, ids, lp in zip(documents, encoded, lps)]
        return UnitScores.concat(parts)

    # -- the sampling contract (lmladder.rung, driven by lmladder.generate) --------------------
    @property
    def stop_unit(self) -> int:
        return self.tokenizer.eot_id  # the end of a document ends a sample

    def prompt_units(self, prompt: str) -> list[int]:
        """End-of-text (the start of a document), then the prompt's tokens."""
        from lmladder.console import log

        ids = [self.tokenizer.eot_id] + self.tokenizer.encode(prompt).tolist()
        block = self.config.model.block_size
        if len(ids) > block:
            log(f"[yellow]the prompt is {len(ids) - 1:,} tokens; the model sees only its last {block:,}[/]")
        return ids[-block:]

    def context_window(self, length: int) -> int:
        """How many of the latest tokens of a context of `length` (that started at most a block
        long) the model reads for the next one: all up to a block; past it, a GPT reads what its
        key-value cache holds, which slides back to 3/4 of a block each time it fills
        (lmladder.decode), so the plain loop draws exactly what the fast path draws."""
        block = self.config.model.block_size
        if self.kind != "gpt" or length <= block:
            return min(length, block)
        from lmladder.decode import slide_keep

        keep = slide_keep(block)
        return keep + (length - block - 1) % (block - keep + 1)

    def stream_decoder(self, rng: np.random.Generator, settings=None, prompt: str = ""):
        return self.tokenizer.stream_decoder(rng)

    def next_logprobs(self, contexts: list[list[int]]) -> np.ndarray:
        """(B, V) ln P(next token | the context's latest `context_window` tokens), over the
        tokenizer's vocabulary (the padding of the output layer removed)."""
        import torch

        tails = [list(c[-self.context_window(len(c)):]) for c in contexts]
        out = np.empty((len(contexts), self.tokenizer.vocab_size))
        for width in sorted({len(t) for t in tails}):  # contexts of one length in one batch
            rows = [i for i, t in enumerate(tails) if len(t) == width]
            x = torch.tensor([tails[i] for i in rows], dtype=torch.long, device=self.device)
            with torch.no_grad():
                logits = self.model(x)[:, -1, : self.tokenizer.vocab_size]
            lp = torch.log_softmax(logits.double(), dim=-1)
            out[rows] = (self.canonical(lp, x[:, -1]) if self.canonical is not None else lp).cpu().numpy()
        return out

    def decode_units(self, prompt_ids: list[int], max_new: int, settings, rngs, on_units) -> None:
        """The fast path of the sampling loop: a GPT decodes with a key-value cache (CUDA graphs
        on a GPU), the MLP re-reads its short window; the same draws as next_logprobs gives."""
        from lmladder import decode

        decode.generate(self.model, prompt_ids, max_new, settings, rngs, vocab_size=self.tokenizer.vocab_size,
                        stop_id=self.tokenizer.eot_id, dtype=_autocast_dtype(self.config.run.dtype),
                        use_cache=self.kind == "gpt", on_tokens=on_units, canonical=self.canonical)


def _autocast_dtype(name: str):
    import torch

    return {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(name)


def pick_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise LadderError(f"--device {name} asked for, but torch sees no CUDA GPU; use --device cpu")
    if name != "cpu" and not name.startswith("cuda"):
        raise LadderError(f"unknown --device {name!r}; use auto, cpu, cuda or cuda:N")
    return name


def load(folder: Path, header: dict[str, Any]) -> NeuralRung:
    """The rung saved in a training folder (lmladder.registry: kinds gpt and mlp). A run that
    is still training, or was stopped, has its best/ weights used."""
    import torch

    from lmladder import checkpoint
    from lmladder.tokens import load_tokenizer

    config = saved_config(folder, header)
    named = header.get("weights")
    if named is not None and not isinstance(named, str):
        raise LadderError(f"{folder / 'lmladder.json'} names its weights {named!r}, not a file: the file is damaged; "
                          "restore it or retrain")
    candidates = [named] if named else ["best/model.safetensors", "latest/model.safetensors"]
    weights = next((folder / c for c in candidates if (folder / c).is_file()), None)
    if weights is None and named:
        raise LadderError(f"{folder / named} is missing, the weights its lmladder.json names: the folder is "
                          "incomplete; copy it again whole or train again")
    if weights is None:
        raise LadderError(f"{folder} holds no weights yet (the run stopped before its first checkpoint); "
                          f"continue it with `lmladder train --resume {folder}` or train again")
    tokenizer = load_tokenizer(folder / "tokenizer")
    recorded = header.get("tokenizer")
    if isinstance(recorded, dict) and recorded.get("sha256") not in (None, tokenizer.identity().get("sha256")):
        raise LadderError(f"{folder / 'tokenizer'} is not the tokenizer this model was trained with (its sha256 "
                          f"differs from the one lmladder.json records): the folder was changed; restore its "
                          "tokenizer/ or retrain")
    if config.model.vocab_size < tokenizer.vocab_size:
        raise LadderError(f"{folder}'s config has vocab_size {config.model.vocab_size}, fewer than its tokenizer's "
                          f"{tokenizer.vocab_size} tokens: the folder was changed; retrain it")
    _check_weights_fit(config, weights)  # before anything is allocated: an edited size cannot exhaust memory
    model = build_model(config)
    checkpoint.load_weights(model, weights)
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        raise LadderError(f"{weights} holds weights that are not finite numbers (NaN or inf): the file is "
                          "corrupt or the run diverged; train again")
    device = pick_device("auto")
    return NeuralRung(model.to(device), tokenizer, config, device)


def saved_config(folder: Path, header: dict[str, Any]) -> TrainConfig:
    """A saved run's config, with the checks a new one gets (lmladder.config.check) and its
    fields' types: an edited or damaged lmladder.json is refused, never half-loaded."""
    import dataclasses

    from lmladder.config import check, field_type, of_type

    damaged = f"{folder / 'lmladder.json'} holds a config that is not valid"
    try:
        config = TrainConfig.from_dict(header["config"])
        wrong = [f"{f.name} {getattr(part, f.name)!r}" for part in (config.model, config.optim, config.data, config.run)
                 for f in dataclasses.fields(part) if not of_type(getattr(part, f.name), field_type(f))]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise LadderError(f"{damaged} ({type(exc).__name__}: {exc}); the file is damaged: restore it or retrain") from None
    if wrong:
        raise LadderError(f"{damaged} (of the wrong type: {', '.join(wrong[:3])}); the file is damaged: restore it "
                          "or retrain")
    try:
        check(config)
    except LadderError as exc:
        raise LadderError(f"{damaged} ({exc}); the file is damaged: restore it or retrain") from None
    pad = getattr(config.model, "pad_id", 0)  # an MLP's end-of-text id; a GPT has none
    if not 0 <= pad < config.model.vocab_size:
        raise LadderError(f"{damaged} (pad_id {pad} is not a token of its {config.model.vocab_size}); the file is "
                          "damaged: restore it or retrain")
    return config


def _check_weights_fit(config: TrainConfig, weights: Path) -> None:
    """The shapes the weights file declares against those of the config's model, built on the
    meta device (no memory): a config edited to an absurd size is refused before it is built.
    A file whose header cannot be read is left to checkpoint.load_weights to report."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(weights), "pt") as handle:
            shapes = {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}
    except (SafetensorError, OSError):
        return
    refuse_misfit(lambda: build_model(config), shapes, f"{weights} does not fit the model of its config",
                  "the header or the weights were changed; retrain it")


def refuse_misfit(make, shapes: dict[str, tuple[int, ...]], what: str, fix: str) -> None:
    """A LadderError where a tensor of `shapes` (name -> shape, as a weights file declares them)
    differs from the one the model `make()` builds, built on the meta device: no memory is
    taken, however large an edited config makes it."""
    import torch
    from torch.nn import init

    # the initialisers skipped: on the meta device they run torch's reference ops, which import
    # torch._dynamo (seconds of start-up that loading a model does not otherwise pay)
    names = [n for n in dir(init) if n.endswith("_") and not n.startswith("_") and callable(getattr(init, n))]
    saved = {n: getattr(init, n) for n in names}
    try:
        for n in names:
            setattr(init, n, lambda tensor, *a, **k: tensor)
        with torch.device("meta"):
            mine = {k: tuple(v.shape) for k, v in make().state_dict().items()}
    finally:
        for n, f in saved.items():
            setattr(init, n, f)
    wrong = next((k for k in shapes if k in mine and shapes[k] != mine[k]), None)
    if wrong is not None:
        raise LadderError(f"{what} ({wrong} is {shapes[wrong]}, the config makes it {mine[wrong]}): {fix}")
