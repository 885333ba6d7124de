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

from lmladder.config import FUSED_GELU_MIN_TOKENS, FUSED_HEAD_MIN_VOCAB, TrainConfig
from lmladder.errors import LadderError


def _chosen(config, switch: str) -> bool | None:
    """A GPT fusion switch (head_loss, gelu_fusion) as set: True (fused), False (plain, or not a
    GPT), None (auto: the caller decides)."""
    value = getattr(config.run, switch)
    if config.model_kind != "gpt" or value == "plain":
        return False
    return True if value == "fused" else None


def fused_head(config, device_type: str) -> bool:
    """Whether a run's GPT, on a device of this type (cuda, cpu, ...), takes its loss through
    lmladder.headloss: with auto only where its Triton kernel runs (off it, the torch version
    of the kernel makes float32 copies of the logits, and the compiled plain loss is better)."""
    chosen = _chosen(config, "head_loss")
    if chosen is not None:
        return chosen
    from lmladder.headloss import triton_usable

    return config.model.vocab_size >= FUSED_HEAD_MIN_VOCAB and triton_usable(device_type)


def fused_gelu(config, device_type: str, world: int = 1) -> bool:
    """Whether a run's GPT, on a device of this type, runs its MLPs through lmladder.fusedmlp:
    with auto only where cuBLASLt's epilogues run it: a GPU, bf16 or fp16 autocast, a width that
    is a multiple of 8, and FUSED_GELU_MIN_TOKENS tokens or more a micro-batch (each of `world`
    processes' share). Elsewhere it would be the same torch arithmetic as the compiled plain
    MLP's, hidden from the compiler."""
    chosen = _chosen(config, "gelu_fusion")
    if chosen is not None:
        return chosen
    o = config.optim
    tokens = (o.micro_batch_size or o.batch_size // world) * config.seq_len
    if (device_type != "cuda" or config.run.dtype not in ("bfloat16", "float16") or config.model.n_embd % 8
            or tokens < FUSED_GELU_MIN_TOKENS or tokens % 8):
        return False
    from lmladder import cublaslt

    return cublaslt.available()




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
                    device, dtype=None, allowed: int | None = None, excluded: int | None = None) -> list[np.ndarray]:
    """ln P of ids[1:] of each sequence (float64), each id predicted from the ids before it,
    in batches of windows. Logits past `allowed` (padding of the vocabulary) and at `excluded`
    (end-of-text) are removed before the softmax."""
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
        picked = lp.gather(-1, torch.from_numpy(y[:, :width]).to(device)[..., None])[..., 0]
        picked = picked.double().cpu().numpy()
        for j, (s, start, first) in enumerate(part):
            out[s][start + first : start + lengths[j]] = picked[j, first : lengths[j]]
    return out


class NeuralRung:
    """A trained GPT or MLP with its tokenizer: score(documents) and sample(...)."""

    def __init__(self, model, tokenizer, config: TrainConfig, device: str = "cpu"):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.config = config
        self.device = device
        self.kind = config.model_kind
        self.parameters = sum(p.numel() for p in model.parameters())

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
                              self.device, dtype, tok.vocab_size, tok.eot_id)
        parts = [UnitScores(lp + tok.spelling_logprob(ids), len(doc), len(doc.encode("utf-8")))
                 for doc, ids, lp in zip(documents, encoded, lps)]
        return UnitScores.concat(parts)

    def sample(self, prompt: str = "", max_new_chars: int | None = None, settings=None, seed: int = 0,
               num_samples: int = 1, on_text=None, max_new_tokens: int | None = None) -> list[str]:
        """Continue `prompt` for `max_new_chars` characters or `max_new_tokens` tokens, or until
        a sample reaches the end of a document. A GPT decodes with a key-value cache
        (lmladder.decode); the MLP re-reads its short fixed window. Samples are drawn in parallel,
        each with its own generator; `on_text(i, piece)` sees sample i's text as it grows."""
        from lmladder import decode
        from lmladder.console import log
        from lmladder.sampling import SampleSettings, sample_rngs

        settings = settings or SampleSettings()
        if max_new_chars is None and max_new_tokens is None:
            max_new_chars = 200
        tok = self.tokenizer
        block = self.config.model.block_size
        prompt_ids = np.concatenate([[tok.eot_id], tok.encode(prompt)]).astype(np.int64)
        if len(prompt_ids) > block:
            log(f"[yellow]the prompt is {len(prompt_ids) - 1:,} tokens; the model sees only its last {block:,}[/]")
        tokens: list[list[int]] = [[] for _ in range(num_samples)]
        texts = [""] * num_samples

        def decoded(i: int) -> str:  # the same random spelling for an escape every time
            return tok.decode(tokens[i], rng=np.random.default_rng([seed, i, 1]))

        def on_tokens(ids: np.ndarray, alive: np.ndarray) -> bool:
            for i in np.flatnonzero(alive):
                tokens[i].append(int(ids[i]))
                text = decoded(i)
                if max_new_chars is not None:
                    text = text[:max_new_chars]
                if on_text and len(text) > len(texts[i]) and text.startswith(texts[i]):
                    on_text(int(i), text[len(texts[i]):])
                texts[i] = text
            return max_new_chars is not None and all(len(texts[i]) >= max_new_chars for i in np.flatnonzero(alive))

        limit = max_new_tokens if max_new_tokens is not None else 4 * max_new_chars + 16
        decode.generate(self.model, prompt_ids.tolist(), limit, settings, sample_rngs(seed, num_samples),
                        vocab_size=tok.vocab_size, stop_id=tok.eot_id, dtype=_autocast_dtype(self.config.run.dtype),
                        use_cache=self.kind == "gpt", on_tokens=on_tokens)
        return [prompt + t for t in texts]


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
    """The rung saved in a training folder (artifacts.MODEL_LOADERS: kinds gpt and mlp)."""
    from lmladder import checkpoint
    from lmladder.tokens import load_tokenizer

    try:
        config = TrainConfig.from_dict(header["config"])
        weights = folder / header["weights"]
    except (KeyError, TypeError) as exc:
        raise LadderError(f"{folder} has a model header without a usable config ({exc}); retrain it") from None
    tokenizer = load_tokenizer(folder / "tokenizer")
    model = build_model(config)
    checkpoint.load_weights(model, weights)
    device = pick_device("auto")
    return NeuralRung(model.to(device), tokenizer, config, device)

