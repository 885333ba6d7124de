"""`lmladder train CORPUS --model KIND --out DIR`: the baselines, the MLP and the GPT.

Every field of a neural run's config (lmladder.config: model, optim, data, run) is an option,
generated from the field with its help: `n_layer` -> `--n-layer`, a bool `--bias/--no-bias`,
each None unless given, so the preset and the config file keep what the command line leaves
out. The other options are written out below. Under torchrun (`torchrun --nproc_per_node=K -m
lmladder train ...`) each process runs this command and they train one model together.
"""

from __future__ import annotations

import inspect
from typing import Any, Optional

import typer

from lmladder import config as conf
from lmladder import registry
from lmladder.cli.common import JSON_OPTION, emit_json, report
from lmladder.errors import LadderError

O = typer.Option

CONFIG_OPTIONS = conf.option_fields()
SECTION_OF = {o.name: section for section, entries in CONFIG_OPTIONS.items() for o in entries}


def train(
    corpus: Optional[str] = typer.Argument(
        None, help="A registered corpus name, or a .txt file or folder (default: tinyshakespeare; with --resume, "
                   "the run's own)."),
    model: Optional[str] = O(None, "--model", help=f"What to train: {', '.join(registry.TRAIN_MODELS)} "
                             "(default: the preset's)."),
    out: Optional[str] = O(None, "--out", help="Folder to write the model to (default with --resume: that folder)."),
    tokenizer: Optional[str] = O(None, "--tokenizer", help="Neural models: char (default) or a tokenizer folder."),
    preset: Optional[str] = O(None, "--preset", help=f"{', '.join(conf.PRESETS)} (default: "
                              f"{' / '.join(conf.DEFAULT_PRESET.values())})."),
    config: Optional[str] = O(None, "--config", help="A TOML file with [model], [optim], [data], [run] tables."),
    resume: Optional[str] = O(None, "--resume", help="Continue the run saved in this folder exactly."),
    init_from: Optional[str] = O(None, "--init-from", help="Fine-tune: start a GPT from a trained one, a lmladder "
                                 "GPT run or a transformers GPT-2 folder (its architecture and tokenizer)."),
    force: bool = O(False, "--force", help="Replace a model of the same kind already in --out (never another kind)."),
    json: bool = JSON_OPTION,
    **options: Any,
) -> None:
    """Train a rung on the corpus's train split and save it as a self-describing folder."""
    given = {k: v for k, v in options.items() if v is not None}
    if model is not None and model not in registry.TRAIN_MODELS:
        raise LadderError(f"unknown --model {model!r}; choose one of {', '.join(registry.TRAIN_MODELS)}")
    if model in registry.BASELINES:
        extra = [k for k in given if k != "split"] + [k for k, v in (("tokenizer", tokenizer), ("preset", preset),
                                                                     ("config", config), ("resume", resume),
                                                                     ("init_from", init_from)) if v]
        if extra:
            raise LadderError(f"--{extra[0].replace('_', '-')} does not apply to --model {model}")
        if out is None:
            raise LadderError("give --out DIR, the folder to write the model to")
        return _baseline(corpus, model, out, given.get("split"), force, json)
    _neural(corpus, model, out, tokenizer, preset, config, resume, init_from, given, force, json)


def _config_option(option: conf.Option) -> inspect.Parameter:
    flag = f"--{option.name.replace('_', '-')}"
    decl = f"{flag}/--no-{flag[2:]}" if option.type is bool else flag
    return inspect.Parameter(option.name, inspect.Parameter.KEYWORD_ONLY, annotation=Optional[option.type],
                             default=O(None, decl, help=option.help))


def _signature(command) -> inspect.Signature:
    """command's own parameters with the config's options in place of **options, before --json
    (typer reads a command's options from its signature)."""
    own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
           for p in inspect.signature(command, eval_str=True).parameters.values()
           if p.kind is not inspect.Parameter.VAR_KEYWORD]
    at = [p.name for p in own].index("json")
    generated = [_config_option(o) for entries in CONFIG_OPTIONS.values() for o in entries]
    return inspect.Signature(own[:at] + generated + own[at:], return_annotation=None)


train.__signature__ = _signature(train)  # type: ignore[attr-defined]


def _baseline(corpus: str, model: str, out: str, split: Optional[str], force: bool, json: bool) -> None:
    from lmladder import baselines, corpora
    from lmladder.atomic import check_output_dir, locked
    from lmladder.splits import SplitSpec

    spec = SplitSpec.parse(split) if split else None  # parsed once, and a bad one fails before the corpus loads
    check_output_dir(out, "lmladder-model", model, force)
    data = corpora.load(corpus)
    splits = data.split(spec)
    rung = baselines.train(model, splits.require("train"))
    split_text = str(splits.spec)
    with locked(out):
        rung.save(out, data.identity(), split_text)
    result = {"model": model, "out": out, "corpus": data.identity(), "split": split_text,
              "parameters": rung.parameters}
    report(result, json, f"trained {model} on {data.name} ({split_text}) -> {out}")


def _neural(corpus, model, out, tokenizer, preset, config, resume, init_from, given, force, json) -> None:
    import contextlib
    import os
    import shutil
    from pathlib import Path

    from lmladder import artifacts

    options: dict[str, dict[str, Any]] = {section: {} for section in conf.SECTIONS}
    for name, value in given.items():
        options[SECTION_OF[name]][name] = value
    file_values = None
    init_weights = None
    if resume is not None:
        if preset or config or model or force or init_from:
            raise LadderError("--resume continues a run with its saved config; leave out --preset, --config, --model, "
                              "--init-from and --force")
        if out is not None and Path(out).resolve() != Path(resume).resolve():
            raise LadderError("--resume writes to the folder it continues; leave out --out or give the same folder")
        folder = Path(resume)
        try:
            header = artifacts.read_header(folder, "lmladder-model", what="training run")
        except LadderError as exc:
            raise LadderError(f"--resume {resume}: {exc}") from None
        if header.get("kind") not in conf.MODEL_KINDS or not (folder / "latest").is_dir():
            raise LadderError(f"--resume {resume} is not a checkpoint of lmladder train (no latest/ in it)")
        from lmladder.train.plan import resumed_config

        cfg = resumed_config(folder, header, given)  # a damaged lmladder.json is refused, never half-read
        out = resume
        corpus = corpus or (header.get("corpus") or {}).get("name")
    else:
        if out is None:
            raise LadderError("give --out DIR, the folder to write the run to")
        file_values = conf.read_config_file(config) if config else None
        if model is None and preset is None and init_from is None:
            raise LadderError(f"give --model ({', '.join(registry.TRAIN_MODELS)}) or --preset "
                              f"({', '.join(conf.PRESETS)})")
        cfg = conf.resolve(model or ("gpt" if init_from and not preset else None), preset, file_values, options)
        if init_from is not None:
            cfg, tokenizer, init_weights = _from_source(init_from, cfg, tokenizer, options, file_values)
    from lmladder import canonical, tokensplit

    if (tokensplit.in_use(cfg.data) or cfg.data.canonical) and tokenizer in (None, "char") and resume is None \
            and init_from is None:  # before torch is imported and the corpus read
        raise LadderError(tokensplit.CHAR_REFUSED if tokensplit.in_use(cfg.data) else canonical.CHAR_REFUSED)
    from lmladder.train.plan import machine_problems

    problems = machine_problems(cfg, cfg.run.device)  # threads and memory, before torch and the corpus
    if problems:
        raise LadderError("; ".join(problems))
    from lmladder.atomic import check_output_dir, locked

    main_process = int(os.environ.get("RANK", "0")) == 0  # under torchrun, process 0 writes the folder
    if resume is None and main_process:
        check_output_dir(out, "lmladder-model", cfg.model_kind, force)
    with locked(out) if main_process else contextlib.nullcontext():
        # --force: the run of this kind that was there is set aside, and removed once the new
        # run has passed its checks (put back if it does not)
        aside = Path(out).with_name(f".{Path(out).name}.replaced") if force and Path(out).exists() else None
        if aside is not None and main_process:
            shutil.rmtree(aside, ignore_errors=True)
            os.replace(out, aside)
        try:
            job, dist = _prepare_neural(corpus, tokenizer, cfg, out, resume, file_values, options, init_weights)
        except BaseException:
            if aside is not None and main_process:
                os.replace(aside, out)
            raise
        if aside is not None and main_process:
            shutil.rmtree(aside, ignore_errors=True)
            job.out_before = "empty"  # the folder was there: a run that fails is emptied from it, never removes it
        _train_neural(job, dist, out, json)


def _from_source(source: str, cfg, tokenizer, options, file_values):
    """--init-from: the run's config with the source GPT's architecture (its dropout the run's
    own), the source's tokenizer, and its weights to start from."""
    import dataclasses

    from lmladder import hf

    if cfg.model_kind != "gpt":
        raise LadderError("--init-from starts a GPT; leave out --model mlp or use a GPT preset")
    if tokenizer is not None:
        raise LadderError("--init-from brings its own tokenizer; leave out --tokenizer")
    shaped = sorted({*options["model"], *((file_values or {}).get("model") or {})} - {"dropout"})
    if shaped:
        raise LadderError(f"--{shaped[0].replace('_', '-')} is part of the architecture, which comes from --init-from")
    model, state, tokenizer = hf.init_source(source)
    model = dataclasses.replace(model, dropout=cfg.model.dropout)
    cfg = dataclasses.replace(cfg, model=model)
    conf.check(cfg)
    return cfg, tokenizer, state


def _prepare_neural(corpus, tokenizer, cfg, out, resume, file_values, options, init_weights=None):
    import torch  # noqa: F401  (the training stack, only after the cheap checks)

    from lmladder import runtime
    from lmladder.neural import pick_device
    from lmladder.train import init_distributed, prepare

    runtime.mark("torch")  # imported
    dist, device = init_distributed(pick_device(cfg.run.device))
    # a micro-batch the user chose (option or config file) is kept; one from a preset or the
    # defaults is fitted to each process's share of the batch and to the GPU
    chosen = {**((file_values or {}).get("optim") or {}), **options["optim"]}
    job = prepare(corpus, tokenizer, cfg, out, resume=resume is not None, dist=dist, device=device,
                  fit_micro=resume is None and "micro_batch_size" not in chosen, init_weights=init_weights)
    runtime.mark("data")  # the device, the tokenizer and the encoded splits
    return job, dist


def _train_neural(job, dist, out, json) -> None:
    from lmladder.train import train

    try:
        result = train(job, dist)
    finally:
        _leave_process_group(dist)
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


def _leave_process_group(dist) -> None:
    """A torchrun process leaves the group before it exits: a gloo group left to the interpreter's
    teardown could abort a process ("terminate called without an active exception", SIGABRT)."""
    if dist.world > 1:
        import torch.distributed as td

        if td.is_initialized():
            td.destroy_process_group()
