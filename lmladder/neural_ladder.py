"""The neural kinds (gpt, mlp) as a ladder file builds them: sized by the bench profile, trained
by lmladder.train in a scratch folder, and loaded back as rungs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from lmladder import artifacts, canonical, metrics, tokensplit
from lmladder.config import resolve
from lmladder.errors import Interrupted, LadderError
from lmladder.neural import load as load_rung
from lmladder.neural import pick_device
from lmladder.rung import Built
from lmladder.train import Job, train
from lmladder.train.plan import with_vocabulary

# profile -> rung kind -> (preset, overrides): cpu is sized so the default ladder on Tiny Shakespeare
# takes ~10 minutes on 2 cores (each GPT ~4 minutes); gpu takes the presets with overrides of its own
BENCH_PROFILES = {
    "cpu": {"mlp": ("mlp", {"model": dict(block_size=16, n_hidden=256), "optim": dict(batch_size=64, lr=1e-2),
                            "data": dict(seq_len=64), "run": dict(max_steps=1500, eval_interval=750)}),
            "gpt": ("gpt-char", {"model": dict(n_layer=4, n_head=4, n_embd=128, block_size=128, dropout=0.0),
                                 "optim": dict(batch_size=32, lr=3e-3, min_lr=3e-4, warmup_steps=50),
                                 "run": dict(max_steps=1500, eval_interval=750, eval_batch_size=64)})},
    # each neural rung stops 4 passes over val after its best one (patience) and keeps the best weights
    "gpu": {"mlp": ("mlp", {"model": dict(n_embd=48, n_hidden=2048, dropout=0.25), "optim": dict(batch_size=512),
                            "run": dict(max_steps=12000, eval_interval=500, eval_batch_size=512, patience=4)}),
            # issue 23's 60 s recipe (benchmarks/results/ttq-h200-2026-12-02-muon): 6 x 512, dropout 0.2,
            # weight decay 3, a 512 context, Muon for the block matrices, 5% of the inputs replaced by random
            # units, evaluated through a moving average of its weights (Tiny Shakespeare test 1.916 bits/char
            # against 1.969 with AdamW at 8 layers: benchmarks/results/ladder-gpu-tinyshakespeare-2026-12-02-muon);
            # the blocks gone through twice: 1.877 against 1.922 (3 times: 1.913; benchmarks/results/loops-h200-2026-12-02)
            "gpt": ("gpt-char", {"model": dict(n_layer=6, n_embd=512, n_head=8, dropout=0.2, block_size=512, n_loop=2),
                                 "optim": dict(batch_size=32, weight_decay=3.0, ema=0.995, optimizer="muon"),
                                 "data": dict(input_noise=0.05),
                                 "run": dict(max_steps=6000, eval_interval=250, eval_batch_size=256, patience=4)}),
            # a BPE GPT overfits sooner: more weight decay, token dropout, and canonical scoring (512-token
            # BPE: 1.964 with these, 1.996 with weight decay 4, token dropout 0.05 and no canonical:
            # benchmarks/results/bpe-canonical-gpu-2026-12-02); characters first, its token dropout falling
            # from 1 over 1,000 steps (1.929 against 1.946-1.953: -bpe-curriculum-h200-2026-12-02); the
            # char GPT's 512 context at batch 32 (1,024 tokens: 1.885 against 1.940 with 256 at batch 64;
            # 512 tokens: 1.864; benchmarks/results/bpe-context-h200-2026-12-02)
            "gpt-bpe": (None, {"optim": dict(weight_decay=6.0),
                               "data": dict(token_dropout=0.1, token_dropout_steps=1000, canonical=True)})},
}

# a BPE rung's vocabulary where its ladder entry gives none (the default ladder's): with the gpu profile
# 512 tokens scored 1.864 against 1,024's 1.886 on Tiny Shakespeare's test (val: 1.8229 and 1.8241;
# benchmarks/results/ladder-gpu-tinyshakespeare-2026-12-02-context), with the cpu profile 2.197 and 2.190
BPE_VOCAB = 512


class _BenchCorpus:
    def __init__(self, splits):
        import hashlib

        digest = hashlib.sha256()
        for name in ("train", "val", "test"):
            for doc in splits[name]:
                digest.update(doc.encode("utf-8"))
        self.name, self.sha256 = "bench", digest.hexdigest()

    def identity(self) -> dict[str, Any]:
        return {"name": self.name, "kind": "bench", "sha256": self.sha256}


def rung_config(kind: str, settings: dict, profile: str):
    """A neural rung's TrainConfig: the profile's preset and values for the kind (and, over them,
    its values for the kind with that tokenizer, e.g. "gpt-bpe"), then the rung's own tables."""
    preset, values = BENCH_PROFILES[profile][kind]
    values = {section: dict(entries) for section, entries in values.items()}
    tokenizer = settings.get("tokenizer", "char")
    layers = [BENCH_PROFILES[profile].get(f"{kind}-{tokenizer}", (None, {}))[1], settings]
    for layer in layers:
        for section in ("model", "optim", "data", "run"):
            entries = layer.get(section, {})
            if not isinstance(entries, dict):
                raise LadderError(f"a {kind} rung's {section} must be a table of {section} settings, e.g. "
                                  f"{section} = {{ ... }} (got {entries!r})")
            values.setdefault(section, {}).update(entries)
    return resolve(kind, preset, values, {})


def check(kind: str, settings: dict, profile: str):
    """A neural rung's settings, checked before any rung builds (bench.run): its TrainConfig over
    the profile (rung_config), its tokenizer, BPE vocabulary and token dropout. Returns the config."""
    config = rung_config(kind, settings, profile)
    tokenizer = settings.get("tokenizer", "char")
    if tokenizer not in ("char", "bpe"):
        raise LadderError(f"tokenizer must be char or bpe (got {tokenizer!r})")
    if tokenizer == "bpe":
        from lmladder import bpe

        vocab = settings.get("bpe_vocab", BPE_VOCAB)
        if not isinstance(vocab, int) or isinstance(vocab, bool):
            raise LadderError(f"bpe_vocab must be an integer (got {vocab!r})")
        bpe.BPESettings(vocab_size=vocab).check()
        if config.data.canonical and vocab > canonical.MAX_VOCAB:
            raise LadderError(f"data.canonical supports BPEs of at most {canonical.MAX_VOCAB:,} tokens (got "
                              f"bpe_vocab {vocab:,})")
    elif tokensplit.in_use(config.data):
        raise LadderError("data.token_dropout and token_dropout_steps split BPE tokens into their merges; the char "
                          "tokenizer has none (set tokenizer = \"bpe\", or leave them out)")
    elif config.data.canonical:
        raise LadderError("data.canonical renormalises over BPE encodings; a char rung has one already "
                          "(set tokenizer = \"bpe\", or leave canonical out)")
    return config


def split_factors(rows: list[dict], data, parents, train_ids: np.ndarray) -> list[float]:
    """For each train-loss row (step k), the mean number of tokens a train-split token was cut into
    (lmladder.tokensplit) over the steps its loss averages, those since the row before, each at its
    own token dropout (DataConfig `data`); 1s where nothing is split (parents None)."""
    if parents is None:
        return [1.0] * len(rows)
    counts = np.bincount(train_ids, minlength=len(parents[0]))[:len(parents[0])]
    pieces: dict[float, float] = {0.0: 1.0}

    def at(step: int) -> float:
        p = tokensplit.dropout_at(data, step)
        if p not in pieces:
            pieces[p] = float(counts @ tokensplit.expected_pieces(parents, p)) / max(1, len(train_ids))
        return pieces[p]

    out, since = [], 0
    for r in rows:
        out.append(sum(at(s) for s in range(since, r["step"])) / max(1, r["step"] - since) if r["step"] > since
                   else at(since))
        since = r["step"]
    return out


def from_ladder(kind: str, settings: dict, splits, profile: str) -> Built:
    """The `gpt` and `mlp` rung kinds of a ladder file. Settings: tokenizer ("char" or "bpe"),
    bpe_vocab (the BPE's vocabulary size, default BPE_VOCAB, 512), and tables model, optim, data
    and run of training settings over the profile's (rung_config). Trained in a scratch folder
    under the cache, which is removed once the model is loaded."""
    import shutil
    import tempfile

    from lmladder import home, tokens

    config = check(kind, settings, profile)
    train_docs = splits.require("train")
    if settings.get("tokenizer", "char") == "bpe":
        from lmladder import bpe

        tok = bpe.train(train_docs, bpe.BPESettings(vocab_size=settings.get("bpe_vocab", BPE_VOCAB)))
    else:
        from lmladder.vocab import CharVocab

        tok = tokens.CharTokenizer(CharVocab.from_texts(train_docs))
    problems: list[str] = []
    config = with_vocabulary(config, tok, problems)  # a new config: the profile's stays as it is
    parents = tokensplit.parents_for(config, tok)
    if problems:
        raise LadderError("; ".join(problems))
    train_ids = tokens.encode_documents(tok, train_docs)
    val_ids = tokens.encode_documents(tok, splits["val"]) if any(splits["val"]) else None
    if len(train_ids) < config.seq_len + 1:
        raise LadderError(f"the train split has {len(train_ids):,} tokens, shorter than one window of "
                          f"{config.seq_len + 1} for the {kind} rung")
    scratch = home.cache_dir("bench-train")
    scratch.mkdir(parents=True, exist_ok=True)
    out = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=scratch))
    try:
        job = Job(config, _BenchCorpus(splits), str(splits.spec), tok, train_ids, val_ids,
                  sum(len(d) for d in splits["val"]), [], out / "run", None, pick_device(config.run.device),
                  parents=parents)
        result = train(job)
        if result["stopped"] != "finished":  # a rung cut short is no result: never scored, never cached
            raise Interrupted(f"the {kind} rung was stopped by {result['stopped']} at step {result['steps']:,}; "
                              "rungs that finished are cached: run the same bench again to go on",
                              result["stopped"])
        rows = [json.loads(line) for line in (out / "run" / "metrics.jsonl").read_text().splitlines()]
        curve = [(r["time"], r["val_bits_per_char"]) for r in rows if "val_bits_per_char" in r]
        # the train loss is nats a token: bits a character through the train split's tokens per character
        per_char = len(train_ids) / max(1, sum(len(d) for d in train_docs))
        trained = [r for r in rows if "train_loss" in r]
        train_curve = [(r["time"], metrics.bits_per_char(r["train_loss"] * per_char * f, 1))
                       for r, f in zip(trained, split_factors(trained, config.data, parents, train_ids))]
        rung = load_rung(out / "run", artifacts.read_header(out / "run", "lmladder-model"))
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return Built(rung, rung.parameters, "parameters", curve=curve or None, train_curve=train_curve or None)
