"""`lmladder train CORPUS --model KIND --out DIR`: the baselines, the MLP and the GPT.

The neural options map one-to-one onto the fields of the run's config sections
(lmladder.neural: model, optim, data, run); a test checks that no field lacks its option.
Under torchrun (`torchrun --nproc_per_node=K -m lmladder train ...`) each process runs this
command and they train one model together.
"""

from __future__ import annotations

from typing import Optional

import typer

from lmladder.cli.common import JSON_OPTION, emit_json, report
from lmladder.errors import LadderError

BASELINES = ("uniform", "unigram")
NEURAL = ("gpt", "mlp")
MODELS = BASELINES + NEURAL

O = typer.Option


def train(
    corpus: str = typer.Argument("tinyshakespeare", help="A registered corpus name, or a .txt file or folder."),
    model: Optional[str] = O(None, "--model", help=f"What to train: {', '.join(MODELS)} (default: the preset's)."),
    out: Optional[str] = O(None, "--out", help="Folder to write the model to (default with --resume: that folder)."),
    tokenizer: Optional[str] = O(None, "--tokenizer", help="Neural models: char (default) or a tokenizer folder."),
    preset: Optional[str] = O(None, "--preset", help="gpt-char, gpt2-124m, gpt-tiny or mlp (default: gpt-char / mlp)."),
    config: Optional[str] = O(None, "--config", help="A TOML file with [model], [optim], [data], [run] tables."),
    resume: Optional[str] = O(None, "--resume", help="Continue the run saved in this folder exactly."),
    # [model]
    block_size: Optional[int] = O(None, help="Context length (GPT: the longest; MLP: the n units it sees)."),
    vocab_size: Optional[int] = O(None, help="Output size (default: the tokenizer's, padded to 64 for a GPT)."),
    n_layer: Optional[int] = O(None, help="GPT: transformer blocks."),
    n_head: Optional[int] = O(None, help="GPT: attention heads."),
    n_embd: Optional[int] = O(None, help="Embedding width (GPT) or feature dimensions m of C (MLP)."),
    dropout: Optional[float] = O(None, help="Dropout probability while training."),
    bias: Optional[bool] = O(None, "--bias/--no-bias", help="GPT: biases in Linear and LayerNorm layers."),
    position: Optional[str] = O(None, help="GPT: learned (GPT-2's position table) or rotary position embeddings."),
    residual_dtype: Optional[str] = O(None, help="GPT: the residual stream's dtype under autocast: float32, or "
                                      "autocast (bf16 on a GPU: less memory traffic, a faster step)."),
    n_hidden: Optional[int] = O(None, help="MLP: hidden tanh units."),
    direct: Optional[bool] = O(None, "--direct/--no-direct", help="MLP: direct connections to the output."),
    # [optim]
    batch_size: Optional[int] = O(None, help="Sequences per optimizer step, over all processes."),
    micro_batch_size: Optional[int] = O(None, help="Sequences per forward pass per process (0: all at once)."),
    lr: Optional[float] = O(None, help="Peak learning rate."),
    min_lr: Optional[float] = O(None, help="Learning rate at the end of the schedule."),
    warmup_steps: Optional[int] = O(None, help="Steps of linear warmup."),
    schedule: Optional[str] = O(None, help="cosine or wsd (warmup-stable-decay)."),
    weight_decay: Optional[float] = O(None, help="AdamW weight decay (matrices only)."),
    beta1: Optional[float] = O(None, help="AdamW beta1."),
    beta2: Optional[float] = O(None, help="AdamW beta2."),
    grad_clip: Optional[float] = O(None, help="Clip the gradient norm to this (0: no clipping)."),
    ema: Optional[float] = O(None, help="Decay of a moving average of the weights, evaluated and kept (0: none)."),
    # [data]
    split: Optional[str] = O(None, "--split", help="TRAIN,VAL,TEST fractions (default: the corpus's)."),
    seq_len: Optional[int] = O(None, help="Training window (0: the block size)."),
    # [run]
    max_steps: Optional[int] = O(None, help="Stop after this many optimizer steps."),
    max_tokens: Optional[int] = O(None, help="Stop after this many training tokens."),
    time_budget: Optional[float] = O(None, help="Stop after this many seconds of training."),
    eval_interval: Optional[int] = O(None, help="Steps between full val passes (0: only at the end)."),
    eval_batch_size: Optional[int] = O(None, help="Windows per batch when evaluating and scoring."),
    log_interval: Optional[int] = O(None, help="Steps between progress updates and metrics lines."),
    checkpoint_interval: Optional[int] = O(None, help="Steps between checkpoints (0: only at the end)."),
    seed: Optional[int] = O(None, help="Seed of the weights and the batches."),
    device: Optional[str] = O(None, help="auto, cpu, cuda or cuda:N."),
    compile: Optional[bool] = O(None, "--compile/--no-compile", help="torch.compile the model with its loss (pays off on long GPU runs)."),
    cuda_graph: Optional[bool] = O(None, "--cuda-graph/--no-cuda-graph",
                                   help="On one GPU, replay each training step as a CUDA graph (default on)."),
    compile_mode: Optional[str] = O(None, help="torch.compile mode: default or max-autotune-no-cudagraphs."),
    attention: Optional[str] = O(None, help="CUDA attention kernel: auto, flash, cudnn, efficient or math."),
    dtype: Optional[str] = O(None, help="Autocast dtype on CUDA: bfloat16, float16 or float32."),
    head_loss: Optional[str] = O(None, help="GPT: fused (the head and cross-entropy in one pass, a Triton kernel "
                                 "on a GPU), plain (nn.Linear, then F.cross_entropy) or auto (fused on a GPU "
                                 "from a vocabulary of 1,024 up; default)."),
    gelu_fusion: Optional[str] = O(None, help="GPT: fused (GELU inside the MLP's matrix products, cuBLASLt's "
                                   "epilogues on a GPU), plain (Linear, GELU, Linear) or auto (fused on a GPU under "
                                   "bf16/fp16 from 65,536 tokens a micro-batch; default)."),
    json: bool = JSON_OPTION,
) -> None:
    """Train a rung on the corpus's train split and save it as a self-describing folder."""
    given = {k: v for k, v in locals().items() if v is not None and k not in (
        "corpus", "model", "out", "tokenizer", "preset", "config", "resume", "json")}
    if model is not None and model not in MODELS:
        raise LadderError(f"unknown --model {model!r}; choose one of {', '.join(MODELS)}")
    if model in BASELINES:
        extra = [k for k in given if k != "split"] + [k for k, v in (("tokenizer", tokenizer), ("preset", preset),
                                                                     ("config", config), ("resume", resume)) if v]
        if extra:
            raise LadderError(f"--{extra[0].replace('_', '-')} does not apply to --model {model}")
        if out is None:
            raise LadderError("give --out DIR, the folder to write the model to")
        return _baseline(corpus, model, out, split, json)
    _neural(corpus, model, out, tokenizer, preset, config, resume, given, json)


def _baseline(corpus: str, model: str, out: str, split: Optional[str], json: bool) -> None:
    from lmladder import baselines, corpora
    from lmladder.atomic import check_output_dir

    check_output_dir(out)
    data = corpora.load(corpus)
    splits = data.split(split)
    rung = baselines.train(model, splits.require("train"))
    rung.save(out, data.identity(), str(splits.spec))
    result = {"model": model, "out": out, "corpus": data.identity(), "split": str(splits.spec),
              "parameters": rung.parameters}
    report(result, json, f"trained {model} on {data.name} ({splits.spec}) -> {out}")


RESUMABLE = ("max_steps", "max_tokens", "time_budget", "eval_interval", "eval_batch_size", "log_interval",
             "checkpoint_interval", "device", "compile", "head_loss", "gelu_fusion")


def _neural(corpus, model, out, tokenizer, preset, config, resume, given, json) -> None:
    from pathlib import Path

    from lmladder import artifacts
    from lmladder import config as neural
    from lmladder.config import TrainConfig
    from lmladder.neural import pick_device
    from lmladder.train import init_distributed, prepare, train

    sections = {section: {name for name, _, _ in entries} for section, entries in neural.option_fields().items()}
    options = {s: {k: v for k, v in given.items() if k in names} for s, names in sections.items()}
    file_values = None
    if resume is not None:
        if preset or config or model:
            raise LadderError("--resume continues a run with its saved config; leave out --preset, --config, --model")
        if out is not None and Path(out).resolve() != Path(resume).resolve():
            raise LadderError("--resume writes to the folder it continues; leave out --out or give the same folder")
        folder = Path(resume)
        try:
            header = artifacts.read_header(folder, "lmladder-model", what="training run")
        except LadderError as exc:
            raise LadderError(f"--resume {resume}: {exc}") from None
        if header.get("kind") not in neural.MODEL_KINDS or not (folder / "latest").is_dir():
            raise LadderError(f"--resume {resume} is not a checkpoint of lmladder train (no latest/ in it)")
        changed = [k for k in given if k not in RESUMABLE]
        if changed:
            raise LadderError(f"--{changed[0].replace('_', '-')} cannot change on --resume; only "
                              + ", ".join(f"--{k.replace('_', '-')}" for k in RESUMABLE) + " can")
        cfg = TrainConfig.from_dict(header["config"])
        for k, v in given.items():
            setattr(cfg.run, k, v)
        neural.check(cfg)
        out = resume
    else:
        if out is None:
            raise LadderError("give --out DIR, the folder to write the run to")
        file_values = neural.read_config_file(config) if config else None
        if model is None and preset is None:
            raise LadderError(f"give --model ({', '.join(MODELS)}) or --preset ({', '.join(neural.PRESETS)})")
        cfg = neural.resolve(model, preset, file_values, options)
    import torch  # noqa: F401  (after the cheap checks)

    dist, device = init_distributed(pick_device(cfg.run.device))
    # a micro-batch the user chose (option or config file) is kept; one from a preset or the
    # defaults is fitted to each process's share of the batch and to the GPU
    chosen = {**((file_values or {}).get("optim") or {}), **options["optim"]}
    job = prepare(corpus, tokenizer, cfg, out, resume=resume is not None, dist=dist, device=device,
                  fit_micro=resume is None and "micro_batch_size" not in chosen)
    result = train(job, dist)
    if not dist.main:
        return
    if json:
        emit_json(result)
    else:
        line = f"trained {result['model']} ({result['parameters']:,} parameters) for {result['steps']:,} steps -> {out}"
        if result.get("best_val_loss") is not None:
            line += f"; best val {result['best_val_loss']:.4f} nats/token"
        if result.get("test"):
            line += f"; test {result['test']['bits_per_char']:.4f} bits/char"
        typer.echo(line)
    if result["stopped"] != "finished":
        raise typer.Exit(130 if result["stopped"] == "SIGINT" else 143)
