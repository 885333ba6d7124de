"""The neural rungs on a GPU, in one go (issue 5's benchmarks):

1. time to quality: Tiny Shakespeare characters, nanoGPT's split 0.9,0.1,0; the wall time from
   launching `lmladder train` to the first full-pass val loss <= 1.47 nats/char, and the best
   val loss within 60 s of launch (a few recipes; the best is reported);
2. throughput of the gpt2-124m preset (context 1024, vocabulary 50,304): tokens/s and MFU
   against the GPU's dense bf16 peak;
3. the MLP: test bits/char after 2 minutes (the corpus's default split);
4. with --scaling: gpt2-124m tokens/s on 1 and on all GPUs (torchrun).

    LMLADDER_MIRROR=/path/to/corpora PYTHONPATH=. python3 benchmarks/bench_gpu.py [--only ttq,mfu,mlp] [--scaling]

Prints a short table; writes gpu-train.json (and each run's metrics) under $OUT (or ./bench-gpu-out).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # children, when loaded by path
import children  # noqa: E402

from lmladder.bench import code_digest, git_commit  # noqa: E402

NANOGPT = {"time_to_best_s": 102.5, "best_val": 1.4626, "ms_per_step": 15.0, "gpt2_124m_tokens_per_s": 439_000,
           "gpt2_124m_mfu": 0.38}
L6E512 = ["--n-embd", "512", "--n-head", "8"]
MUON = ["--optimizer", "muon"]
L8E512 = ["--n-layer", "8", *L6E512]
EMA_WD3 = ["--ema", "0.995", "--weight-decay", "3.0"]
CTX512 = ["--block-size", "512", "--batch-size", "32"]
BPE512_DIR = Path(tempfile.gettempdir()) / "lmladder-bench-bpe512-0.9"  # made by bpe_tokenizer() when a recipe needs it
BPE512 = ["--tokenizer", str(BPE512_DIR), "--token-dropout", "0.05"]
TTQ_RECIPES = {  # name -> options on top of --preset gpt-char (and --time-budget, which a recipe may override)
    "nanogpt-recipe": [],
    "b128-lr1.5e-3": ["--batch-size", "128", "--lr", "1.5e-3", "--min-lr", "1.5e-4"],
    "b192-lr2e-3": ["--batch-size", "192", "--lr", "2e-3", "--min-lr", "2e-4"],
    # short runs: the cosine reaches min_lr within the budget, and the anneal brings val down early
    "b64-anneal12": ["--time-budget", "12"],
    "b64-anneal9": ["--time-budget", "9"],
    "b128-anneal10": ["--batch-size", "128", "--lr", "1.5e-3", "--min-lr", "1.5e-4", "--time-budget", "10"],
    # compiled: each kernel does more, but compiling costs start-up (the second run finds the cache)
    "b64-compile": ["--compile", "--time-budget", "40"],
    "b64-compile-again": ["--compile", "--time-budget", "40"],
    # bigger models with more dropout, for the best val within 60 s
    "l8-e512-do0.3": ["--n-layer", "8", "--n-head", "8", "--n-embd", "512", "--dropout", "0.3"],
    "l6-e512-do0.3": ["--n-embd", "512", "--n-head", "8", "--dropout", "0.3"],
    # rotary positions and a moving average of the weights, alone and together
    "l6-e512-do0.3-rope": ["--n-embd", "512", "--n-head", "8", "--dropout", "0.3", "--position", "rotary"],
    "l6-e512-do0.3-ema": ["--n-embd", "512", "--n-head", "8", "--dropout", "0.3", "--ema", "0.995"],
    "l6-e512-do0.3-rope-ema": ["--n-embd", "512", "--n-head", "8", "--dropout", "0.3", "--position", "rotary",
                               "--ema", "0.995"],
    "l8-e512-do0.35-rope-ema": ["--n-layer", "8", "--n-head", "8", "--n-embd", "512", "--dropout", "0.35",
                                "--position", "rotary", "--ema", "0.995"],
    "gpt-char-rope-ema": ["--position", "rotary", "--ema", "0.995"],
    "l6-e512-do0.3-rope-ema-ctx512": ["--n-embd", "512", "--n-head", "8", "--dropout", "0.3", "--position", "rotary",
                                      "--ema", "0.995", "--block-size", "512", "--batch-size", "32"],
    # the averaged 512-wide model overfits after ~2,000 steps: shorter schedules, more regularisation
    "l6-e512-do0.3-ema-t30": ["--n-embd", "512", "--n-head", "8", "--dropout", "0.3", "--ema", "0.995",
                              "--time-budget", "30"],
    "l6-e512-do0.35-ema-t40": ["--n-embd", "512", "--n-head", "8", "--dropout", "0.35", "--ema", "0.995",
                               "--time-budget", "40"],
    "l6-e512-do0.4-ema": ["--n-embd", "512", "--n-head", "8", "--dropout", "0.4", "--ema", "0.995"],
    "l6-e512-do0.3-ema.998": ["--n-embd", "512", "--n-head", "8", "--dropout", "0.3", "--ema", "0.998"],
    "l6-e512-do0.3-ema-wd0.5": ["--n-embd", "512", "--n-head", "8", "--dropout", "0.3", "--ema", "0.995",
                                "--weight-decay", "0.5"],
    "l6-e512-do0.3-ema-wd1": ["--n-embd", "512", "--n-head", "8", "--dropout", "0.3", "--ema", "0.995",
                              "--weight-decay", "1.0"],
    "l6-e512-do0.3-ema-wd2": ["--n-embd", "512", "--n-head", "8", "--dropout", "0.3", "--ema", "0.995",
                              "--weight-decay", "2.0"],
    "l6-e512-do0.3-ema-wd2-bf16res": ["--n-embd", "512", "--n-head", "8", "--dropout", "0.3", "--ema", "0.995",
                                      "--weight-decay", "2.0", "--residual-dtype", "autocast"],
    # the fused head loss forced (auto leaves a 65-character vocabulary to the plain loss; in run O,
    # before auto, these ran as nanogpt-recipe and l6-e512-do0.3-ema-wd2 against *-plain-head twins)
    "nanogpt-recipe-fused-head": ["--head-loss", "fused"],
    "l6-e512-do0.3-ema-wd2-fused-head": ["--n-embd", "512", "--n-head", "8", "--dropout", "0.3", "--ema", "0.995",
                                         "--weight-decay", "2.0", "--head-loss", "fused"],
    "l6-e512-do0.3-ema-wd2-plain-gelu": ["--n-embd", "512", "--n-head", "8", "--dropout", "0.3", "--ema", "0.995",
                                         "--weight-decay", "2.0", "--gelu-fusion", "plain"],
    "l6-e512-do0.2-ema-wd1": ["--n-embd", "512", "--n-head", "8", "--dropout", "0.2", "--ema", "0.995",
                              "--weight-decay", "1.0"],
    "l6-e512-do0.3-rope-ema-lr2e-3": ["--n-embd", "512", "--n-head", "8", "--dropout", "0.3", "--position", "rotary",
                                      "--ema", "0.995", "--lr", "2e-3", "--min-lr", "2e-4"],
    # issue 23: Muon (lmladder/train/muon.py) on the block matrices, short schedules for the time
    # to 1.47, long ones for the best val within 60 s
    "adamw-t12": [*L6E512, "--dropout", "0.2", "--ema", "0.995", "--weight-decay", "1.0", "--time-budget", "12"],
    "muon-t12": [*L6E512, "--dropout", "0.2", "--ema", "0.995", "--weight-decay", "1.0", *MUON, "--time-budget", "12"],
    "muon.04-t12": [*L6E512, "--dropout", "0.2", "--ema", "0.995", "--weight-decay", "1.0", *MUON, "--muon-lr",
                    "0.04", "--time-budget", "12"],
    "muon.01-t12": [*L6E512, "--dropout", "0.2", "--ema", "0.995", "--weight-decay", "1.0", *MUON, "--muon-lr",
                    "0.01", "--time-budget", "12"],
    "muon-t8": [*L6E512, "--dropout", "0.2", "--ema", "0.995", "--weight-decay", "1.0", *MUON, "--time-budget", "8"],
    # after the first H200 try (12 s schedules end at 1.478-1.490, AdamW's at 1.630): 16 s
    "muon-t16": [*L6E512, "--dropout", "0.2", "--ema", "0.995", "--weight-decay", "1.0", *MUON, "--time-budget", "16"],
    "muon-do0.1-t16": [*L6E512, "--dropout", "0.1", "--ema", "0.995", "--weight-decay", "1.0", *MUON,
                       "--time-budget", "16"],
    "muon-noema-t16": [*L6E512, "--dropout", "0.2", "--weight-decay", "1.0", *MUON, "--time-budget", "16"],
    "muon-do0.1-t12": [*L6E512, "--dropout", "0.1", "--ema", "0.995", "--weight-decay", "1.0", *MUON,
                       "--time-budget", "12"],
    "muon-b128-t12": [*L6E512, "--dropout", "0.2", "--ema", "0.995", "--weight-decay", "1.0", *MUON,
                      "--batch-size", "128", "--time-budget", "12"],
    "muon-noema-t12": [*L6E512, "--dropout", "0.2", "--weight-decay", "1.0", *MUON, "--time-budget", "12"],
    # after the second H200 run (muon-do0.1-t16 reached 1.47 at 11.2-12.2 s, 1.8-2.8 s of it start-up):
    # shorter schedules, a bigger batch, a higher Muon rate, evaluation twice as often
    "muon-do0.1-t14": [*L6E512, "--dropout", "0.1", "--ema", "0.995", "--weight-decay", "1.0", *MUON,
                       "--time-budget", "14"],
    "muon-do0.1-t16-e25": [*L6E512, "--dropout", "0.1", "--ema", "0.995", "--weight-decay", "1.0", *MUON,
                           "--time-budget", "16", "--eval-interval", "25"],
    "muon-do0.1-b96-t14": [*L6E512, "--dropout", "0.1", "--ema", "0.995", "--weight-decay", "1.0", *MUON,
                           "--batch-size", "96", "--time-budget", "14"],
    "muon.03-do0.1-t14": [*L6E512, "--dropout", "0.1", "--ema", "0.995", "--weight-decay", "1.0", *MUON,
                          "--muon-lr", "0.03", "--time-budget", "14"],
    # the first step's attention took 0.74 s (its kernels loaded on first use): another kernel
    "muon-do0.1-t16-efficient": [*L6E512, "--dropout", "0.1", "--ema", "0.995", "--weight-decay", "1.0", *MUON,
                                 "--time-budget", "16", "--attention", "efficient"],
    "muon-l6-e512-do0.3": [*L6E512, "--dropout", "0.3", "--ema", "0.995", "--weight-decay", "1.0", *MUON],
    "muon-l8-e768-do0.35": ["--n-layer", "8", "--n-embd", "768", "--n-head", "12", "--dropout", "0.35", "--ema",
                            "0.995", "--weight-decay", "1.0", *MUON],
    # session 13: the best val within 60 s (AdamW's 1.41-1.42 at weight decay 1-2 is best ~36 s in, then
    # overfits): stronger weight decay (the BPE rung's search found 4 best), longer contexts (the val
    # windows are the model's block, so a unit's mean context doubles), more layers or width
    "adamw-wd3": [*L6E512, "--dropout", "0.3", "--ema", "0.995", "--weight-decay", "3.0"],
    "adamw-wd4": [*L6E512, "--dropout", "0.3", "--ema", "0.995", "--weight-decay", "4.0"],
    "adamw-wd6": [*L6E512, "--dropout", "0.3", "--ema", "0.995", "--weight-decay", "6.0"],
    "adamw-do0.2-wd3": [*L6E512, "--dropout", "0.2", "--ema", "0.995", "--weight-decay", "3.0"],
    "adamw-wd3-ctx512": [*L6E512, "--dropout", "0.3", "--ema", "0.995", "--weight-decay", "3.0", "--block-size", "512",
                         "--batch-size", "32"],
    "adamw-wd3-ctx1024": [*L6E512, "--dropout", "0.3", "--ema", "0.995", "--weight-decay", "3.0", "--block-size",
                          "1024", "--batch-size", "16"],
    "adamw-l8-wd3": ["--n-layer", "8", *L6E512, "--dropout", "0.3", "--ema", "0.995", "--weight-decay", "3.0"],
    "adamw-e768-wd4": ["--n-embd", "768", "--n-head", "12", "--dropout", "0.3", "--ema", "0.995", "--weight-decay",
                       "4.0"],
    # after the first round (wd3 1.4040; dropout 0.2 1.3967, a 512 context 1.3969, 8 layers 1.3935; wd4
    # 1.4080, wd6 1.4422, 1024 context at batch 16 1.4206, 768 wide at wd4 1.4114): together
    "adamw-l8-do0.2-wd3-ctx512": [*L8E512, "--dropout", "0.2", *EMA_WD3, *CTX512],
    "adamw-l8-do0.2-wd4-ctx512": [*L8E512, "--dropout", "0.2", "--ema", "0.995", "--weight-decay", "4.0", *CTX512],
    "adamw-l10-do0.2-wd3-ctx512": ["--n-layer", "10", *L6E512, "--dropout", "0.2", *EMA_WD3, *CTX512],
    "adamw-l8-e640-do0.2-wd3-ctx512": ["--n-layer", "8", "--n-embd", "640", "--n-head", "10", "--dropout", "0.2",
                                       *EMA_WD3, *CTX512],
    "adamw-do0.2-wd3-ctx512": [*L6E512, "--dropout", "0.2", *EMA_WD3, *CTX512],
    # the BPE rung's best on the ladder's val (512 tokens, dropout 0.2, wd 4, token dropout 0.05), and
    # with 8 layers (val in nats/token: compare BPE runs with each other only)
    "bpe512-l6-do0.2-wd4-td0.05": [*BPE512, *L6E512, "--dropout", "0.2", "--ema", "0.995", "--weight-decay", "4.0"],
    "bpe512-l8-do0.2-wd4-td0.05": [*BPE512, *L8E512, "--dropout", "0.2", "--ema", "0.995", "--weight-decay", "4.0"],
    "bpe512-l8-do0.2-wd3-td0.05": [*BPE512, *L8E512, "--dropout", "0.2", *EMA_WD3],
    # --input-noise (inputs replaced by random characters, the targets kept): on a CPU proxy (30 k characters,
    # 4 x 128, 1,400 steps) 0.1 took the best val from 1.9105 to 1.8101 and held overfitting back
    "adamw-l8-wd3-noise0.1": [*L8E512, "--dropout", "0.3", *EMA_WD3, "--input-noise", "0.1"],
    "adamw-l8-do0.2-wd3-ctx512-noise0.05": [*L8E512, "--dropout", "0.2", *EMA_WD3, *CTX512, "--input-noise", "0.05"],
    "adamw-l8-do0.2-wd3-ctx512-noise0.1": [*L8E512, "--dropout", "0.2", *EMA_WD3, *CTX512, "--input-noise", "0.1"],
    # after round two (8 x 512, dropout 0.2, a 512 context: wd3 1.3880, wd4 1.3824, wd3 + noise 0.05 1.3810 and
    # its val still 1.3928 at 55 s against 1.4485 without): noise with more weight decay, or in place of dropout
    "adamw-l8-do0.2-wd4-ctx512-noise0.05": [*L8E512, "--dropout", "0.2", "--ema", "0.995", "--weight-decay", "4.0",
                                            *CTX512, "--input-noise", "0.05"],
    "adamw-l8-do0.1-wd3-ctx512-noise0.1": [*L8E512, "--dropout", "0.1", *EMA_WD3, *CTX512, "--input-noise", "0.1"],
    # after round three (noise 0.05 + wd 4: best at 53.7 of 55 s, val still 1.3853 at the end): those runs are
    # short of steps, not of regularisation, so round four gives them the optimizer that learns fastest here
    # (Muon: 1.47 at ~500 steps where AdamW needs ~1,400) or a higher AdamW learning rate
    "muon-l8-do0.2-wd4-ctx512-noise0.05": [*L8E512, "--dropout", "0.2", "--ema", "0.995", "--weight-decay", "4.0",
                                           *CTX512, "--input-noise", "0.05", *MUON],
    "muon-l8-do0.2-wd3-ctx512-noise0.1": [*L8E512, "--dropout", "0.2", *EMA_WD3, *CTX512, "--input-noise", "0.1",
                                          *MUON],
    "muon-l6-do0.2-wd3-ctx512-noise0.05": [*L6E512, "--dropout", "0.2", *EMA_WD3, *CTX512, "--input-noise", "0.05",
                                           *MUON],
    # the 60 s recipe's blocks gone through twice (--n-loop 2: the gpu profile's GPTs since 2026-12-02)
    "muon-l6-do0.2-wd3-ctx512-noise0.05-loop2": [*L6E512, "--dropout", "0.2", *EMA_WD3, *CTX512, "--input-noise",
                                                 "0.05", *MUON, "--n-loop", "2"],
    "adamw-l8-do0.2-wd4-ctx512-noise0.05-lr1.5e-3": [*L8E512, "--dropout", "0.2", "--ema", "0.995", "--weight-decay",
                                                     "4.0", *CTX512, "--input-noise", "0.05", "--lr", "1.5e-3",
                                                     "--min-lr", "1.5e-4"],
    "bpe512-l8-do0.2-wd4-td0.05-noise0.05": [*BPE512, *L8E512, "--dropout", "0.2", "--ema", "0.995", "--weight-decay",
                                             "4.0", "--input-noise", "0.05"],
    # tried on an H100 on 2026-11-23 and dropped: less dropout overfits before val reaches 1.47
    # (b128, lr 2e-3, dropout 0.1: best 1.4905; b256, lr 3e-3, dropout 0.1: best 1.5057)
}


def encode_tinyshakespeare() -> None:
    """Encode the corpus once (into LMLADDER_HOME's cache), so no timed run pays for it."""
    from lmladder import corpora, tokens

    corpus = corpora.load("tinyshakespeare")
    for split in ("0.9,0.1,0", corpus.default_split):
        tok = tokens.load_tokenizer("char", corpus, split)
        for name in ("train", "val", "test"):
            if any(corpus.split(split)[name]):
                tokens.encoded_split(tok, corpus, split, name)


def run_train(args: list[str], out: Path, timeout: float, nproc: int = 1) -> tuple[float, list[dict], str]:
    """Launch `lmladder train`; return the launch time, its metrics rows and its stderr tail."""
    cmd = [sys.executable, "-m", "lmladder", "train", "tinyshakespeare", *args, "--out", str(out)]
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "lmladder", *cmd[3:]]
    t0 = time.time()
    try:
        proc = children.run(cmd, timeout)
    except subprocess.TimeoutExpired as exc:
        proc = subprocess.CompletedProcess(cmd, -9, str(exc.stdout or ""), f"{exc.stderr or ''}\ntimed out after {timeout} s")
    rows = []
    if (out / "metrics.jsonl").is_file():
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    if proc.returncode != 0:
        print(f"FAILED ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}", file=sys.stderr)
    return t0, rows, proc.stdout if proc.returncode == 0 else proc.stderr[-2000:]


def bpe_tokenizer() -> None:
    """The 512-token BPE of Tiny Shakespeare's 90% train split that the bpe512-* recipes read."""
    if not (BPE512_DIR / "tokenizer.json").is_file():
        subprocess.run([sys.executable, "-m", "lmladder", "tokenizer", "train", "tinyshakespeare", "--out", str(BPE512_DIR),
                        "--vocab-size", "512", "--split", "0.9,0.1,0", "--force"], check=True, capture_output=True)


def time_to_quality(work: Path, budget: float, names: list[str]) -> dict:
    results = {}
    for name in names:
        extra = TTQ_RECIPES[name]
        if str(BPE512_DIR) in extra:
            bpe_tokenizer()
        out = work / f"ttq-{name}"
        args = ["--preset", "gpt-char", "--split", "0.9,0.1,0", "--time-budget", str(budget), "--max-steps", "0",
                "--eval-interval", "50", "--eval-batch-size", "256", "--checkpoint-interval", "0", "--log-interval", "25",
                *extra]  # a later option wins: a recipe's own --time-budget
        t0, rows, _ = run_train(args, out, budget + 120)
        vals = [(r["unix"] - t0, r["val_loss"], r["step"]) for r in rows if "val_loss" in r]
        starts = [r["unix"] - r["time"] - t0 for r in rows if "unix" in r]  # when the training clock started
        first = next(((t, s) for t, v, s in vals if v <= 1.47), (None, None))
        within = [v for t, v, _ in vals if t <= 60.0]
        steps = [r for r in rows if "tokens_per_s" in r]
        results[name] = {"options": extra, "time_to_1.47_s": first[0], "step_at_1.47": first[1],
                         "startup_s": min(starts) if starts else None,
                         "best_val_60s": min(within) if within else None,
                         "best_val": min((v for _, v, _ in vals), default=None),
                         "ms_per_step": 1000 * steps[-1]["time"] / steps[-1]["step"] if steps else None,
                         "final_step": steps[-1]["step"] if steps else None}
        shutil.copy(out / "metrics.jsonl", OUT / f"ttq-{name}.jsonl") if (out / "metrics.jsonl").is_file() else None
        print(f"ttq {name}: {results[name]}", flush=True)
    return results


MFU_VARIANTS = {"base": [], "cudnn": ["--attention", "cudnn"], "no-graph": ["--no-cuda-graph"],
                "autotune": ["--compile-mode", "max-autotune-no-cudagraphs"],
                "autotune-no-graph": ["--compile-mode", "max-autotune-no-cudagraphs", "--no-cuda-graph"],
                # the residual stream in float32 (the preset's is bf16); no biases (nanoGPT's bench.py
                # measures its 38% so)
                "fp32-residual": ["--residual-dtype", "float32"], "no-bias": ["--no-bias"],
                "no-bias-autotune-no-graph": ["--no-bias", "--compile-mode", "max-autotune-no-cudagraphs",
                                              "--no-cuda-graph"],
                # the head and its cross-entropy as nn.Linear + F.cross_entropy (the trainer's default
                # is lmladder.kernels.headloss's fused pass)
                "plain-head": ["--head-loss", "plain"], "no-bias-plain-head": ["--no-bias", "--head-loss", "plain"],
                # the MLP as Linear, GELU, Linear compiled (the trainer's default on a GPU is
                # lmladder.kernels.fusedmlp: GELU in cuBLASLt's epilogues)
                "plain-gelu": ["--gelu-fusion", "plain"],
                # GPT-2's biases (the preset has none since session 8, as nanoGPT's train.py and bench.py)
                "bias": ["--bias"], "bias-plain-gelu": ["--bias", "--gelu-fusion", "plain"],
                # the blocks' products in FP8 (lmladder/kernels/fp8.py; the MLP then unfused): compare
                # train_loss_last with base's, the same seed and batches, for whether the loss holds
                "fp8": ["--fp8"], "fp8-head": ["--head-loss", "fp8"],
                "fp8-head-blocks": ["--head-loss", "fp8", "--fp8"], "fp8-autotune-no-graph": ["--fp8", "--compile-mode", "max-autotune-no-cudagraphs",
                                                            "--no-cuda-graph"]}


def throughput(work: Path, nproc: int = 1, steps: int = 60, micro: int | None = None, variant: str = "base",
               repeat: int = 0) -> dict:
    """gpt2-124m's tokens/s and MFU; micro None: the preset's micro-batch (128), as the trainer
    fits it to the GPU's memory."""
    out = work / f"gpt2-124m-x{nproc}-{variant}-{repeat}"
    share = max(64, micro or 128)  # sequences a step per GPU
    args = ["--preset", "gpt2-124m", "--tokenizer", "char", "--vocab-size", "50304", "--split", "0.9,0.1,0",
            "--batch-size", str(share * nproc), *(["--micro-batch-size", str(micro)] if micro else []),
            "--max-steps", str(steps), "--eval-interval", "0", "--checkpoint-interval", "0", "--log-interval", "5",
            *MFU_VARIANTS[variant]]
    _, rows, tail = run_train(args, out, 580, nproc)
    logs = [r for r in rows if "tokens_per_s" in r and r["step"] > steps // 2]  # after compile and warm-up
    if not logs:
        return {"error": tail[-500:]}
    tps = sorted(r["tokens_per_s"] for r in logs)[len(logs) // 2]
    mfu = sorted(r["mfu"] or 0 for r in logs)[len(logs) // 2]
    micro = json.loads((out / "config.json").read_text())["optim"]["micro_batch_size"]
    return {"gpus": nproc, "tokens_per_s": tps, "mfu": mfu, "memory_gb": logs[-1]["memory_gb"],
            "train_loss_last": logs[-1].get("train_loss"),
            "tokens_per_step": share * nproc * 1024, "micro_batch": micro, "variant": variant,
            "options": MFU_VARIANTS[variant]}


def median_run(runs: list[dict]) -> dict:
    """The run of median tokens/s, with every run's tokens/s beside it."""
    done = sorted((r for r in runs if "tokens_per_s" in r), key=lambda r: r["tokens_per_s"])
    if not done:
        return runs[-1]
    return {**done[len(done) // 2], "runs_tokens_per_s": [round(r["tokens_per_s"]) for r in runs if "tokens_per_s" in r]}


def mlp(work: Path, budget: float) -> dict:
    out = work / "mlp"
    args = ["--preset", "mlp", "--n-embd", "48", "--n-hidden", "2048", "--dropout", "0.25",  # the gpu profile's shape
            "--time-budget", str(budget), "--max-steps", "0", "--batch-size", "512", "--eval-interval", "500",
            "--eval-batch-size", "512", "--checkpoint-interval", "0", "--log-interval", "50", "--json"]
    t0, rows, text = run_train(args, out, budget + 200)
    try:
        report = json.loads(text[text.index("{"): text.rindex("}") + 1])
    except ValueError:
        return {"error": text[-500:]}
    return {"test_bits_per_char": report["test"]["bits_per_char"], "best_val_loss": report["best_val_loss"],
            "steps": report["steps"], "parameters": report["parameters"], "wall_s": time.time() - t0}


def main() -> None:
    global OUT
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="ttq,mfu,mlp")
    parser.add_argument("--scaling", action="store_true", help="also gpt2-124m on all GPUs through torchrun")
    parser.add_argument("--recipes", default=",".join(TTQ_RECIPES), help="time-to-quality recipes to run")
    parser.add_argument("--micro", type=int, default=None,
                        help="gpt2-124m sequences per forward pass (default: the preset's 128, ~51 GB, or what fits)")
    parser.add_argument("--mfu-variants", default="base", help=f"gpt2-124m settings to run: {', '.join(MFU_VARIANTS)}")
    parser.add_argument("--mfu-steps", type=int, default=60, help="gpt2-124m steps a run (the second half is timed)")
    parser.add_argument("--mfu-repeats", type=int, default=1, help="runs of each variant (the median is reported)")
    parser.add_argument("--ttq-budget", type=float, default=55.0)
    parser.add_argument("--mlp-budget", type=float, default=110.0)
    opts = parser.parse_args()
    children.end_with_me()
    OUT = Path(os.environ.get("OUT") or "bench-gpu-out")
    OUT.mkdir(parents=True, exist_ok=True)
    import torch

    work = Path(tempfile.mkdtemp(prefix="lmladder-bench-gpu-"))
    os.environ.setdefault("LMLADDER_HOME", str(work / "home"))
    os.environ["LMLADDER_NO_PROGRESS"] = "1"
    encode_tinyshakespeare()
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    report = {"device": device, "gpus": torch.cuda.device_count(), "torch": torch.__version__,
              "date": dt.date.today().isoformat(), "git_commit": git_commit(), "lmladder_code": code_digest()[:16],
              "nanogpt_h100": NANOGPT}
    only = opts.only.split(",")
    if "ttq" in only:
        recipes = time_to_quality(work, opts.ttq_budget, opts.recipes.split(","))
        best = min(recipes, key=lambda k: (recipes[k]["time_to_1.47_s"] is None, recipes[k]["time_to_1.47_s"] or 0))
        report["time_to_quality"] = recipes
        report["time_to_1.47_s"] = recipes[best]["time_to_1.47_s"]
        report["time_to_1.47_recipe"] = best
        report["best_val_60s"] = min((r["best_val_60s"] for r in recipes.values() if r["best_val_60s"]), default=None)
    if "mfu" in only:
        runs: dict[str, list[dict]] = {v: [] for v in opts.mfu_variants.split(",")}
        for k in range(opts.mfu_repeats):  # interleaved, so a drift of the GPU's clock touches each alike
            for v in runs:
                runs[v].append(throughput(work, micro=opts.micro, variant=v, steps=opts.mfu_steps, repeat=k))
                print(f"gpt2-124m {v}: {runs[v][-1]}", flush=True)
        variants = {v: median_run(rs) for v, rs in runs.items()}
        report["gpt2_124m_variants"] = variants
        # the preset's own number when it ran (variant base), else the best variant's
        report["gpt2_124m"] = variants.get("base") or max(variants.values(), key=lambda res: res.get("tokens_per_s", 0))
    if opts.scaling and torch.cuda.device_count() > 1:
        same = dict(micro=opts.micro, steps=opts.mfu_steps)
        report["scaling"] = {"1": report.get("gpt2_124m") or throughput(work, **same),
                             str(torch.cuda.device_count()): throughput(work, torch.cuda.device_count(), **same)}
    if "mlp" in only:
        report["mlp"] = mlp(work, opts.mlp_budget)
    (OUT / "gpu-train.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n{device}, torch {torch.__version__}")
    print(f"{'benchmark':<36}{'lmladder':>14}{'nanoGPT (H100)':>16}")
    f = lambda v, d=2: "-" if v is None else f"{v:,.{d}f}"  # noqa: E731
    if "time_to_quality" in report:
        print(f"{'time to val 1.47 (s)':<36}{f(report['time_to_1.47_s'], 1):>14}{'102.5':>16}")
        print(f"{'best val within 60 s (nats/char)':<36}{f(report['best_val_60s'], 4):>14}{'1.4626*':>16}")
    if "gpt2_124m" in report and "tokens_per_s" in report["gpt2_124m"]:
        g = report["gpt2_124m"]
        name = "gpt2-124m" + ("" if g["variant"] == "base" else f" ({g['variant']})")
        print(f"{name + ' tokens/s':<36}{f(g['tokens_per_s'], 0):>14}{'439,000':>16}")
        print(f"{name + ' MFU':<36}{f(100 * g['mfu'], 1) + '%':>14}{'38%':>16}")
        for v, res in report["gpt2_124m_variants"].items():
            if v != g["variant"] and "tokens_per_s" in res:
                print(f"{'  variant ' + v + ' tokens/s':<36}{f(res['tokens_per_s'], 0):>14}{'':>16}")
    if "mlp" in report and "test_bits_per_char" in report["mlp"]:
        print(f"{'MLP test bits/char (2 min)':<36}{f(report['mlp']['test_bits_per_char'], 4):>14}{'-':>16}")
    print("nanoGPT's column is quoted from an H100 run, not measured here: not a ratio. "
          "benchmarks/bench_ttq.py runs nanoGPT beside lmladder.")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
