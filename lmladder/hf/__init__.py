"""Models that leave the ladder: a GPT run as a transformers GPT-2 folder, and GPT-2 folders back.

`export(source, out)` writes a folder that transformers' AutoModelForCausalLM and AutoTokenizer
load with no code of lmladder's:

    OUT/config.json              GPT-2's config (lmladder.hf.weights.config_json)
        model.safetensors        the weights in GPT-2's names and layouts (float32), a CRC-32 of
                                 them in its metadata (checked when lmladder reads the folder)
        tokenizer.json           the tokenizer's pipeline (lmladder.hf.tokenizer), with
        tokenizer_config.json    its special tokens and settings, and
        special_tokens_map.json
        generation_config.json   <|endoftext|> as bos, eos and pad; the vocabulary's padding ids in
                                 suppress_tokens, so generation never draws them
        README.md                a model card: corpus, split, test bits/char, config, provenance
        lmladder.json            format "lmladder-hf-export": `source`, what the run's header says
                                 of it (corpus, split, config, test scores, tokenizer, lmladder
                                 version), carried unchanged when an export is exported again

`load(folder)` goes the other way: a GPT-2 folder that lmladder's GPT computes exactly (one it
exported, or real GPT-2 weights) becomes a rung keeping lmladder.rung's contract, so `lmladder
score` and `lmladder sample` work on it; `init_source` gives the weights a training starts from.

Writing and reading need torch, safetensors and tokenizers only; transformers is needed to use
the folder in transformers, not here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmladder import artifacts
from lmladder.atomic import MARKER
from lmladder.errors import LadderError

FORMAT = "lmladder-hf-export"
# what an export keeps of a run's header (lmladder.artifacts: a training run's lmladder.json)
RUN_FIELDS = ("lmladder_version", "unit", "corpus", "split", "tokenizer", "config", "parameters", "status", "step",
              "best_val", "test")


def _json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LadderError(f"{path} is missing; {what}") from None
    except (ValueError, UnicodeDecodeError, OSError):
        raise LadderError(f"{path} is corrupt (not JSON); {what}") from None


def is_transformers_folder(folder: str | Path) -> bool:
    """A folder this module reads: an lmladder export, or a folder transformers wrote (a
    config.json with a model_type and no lmladder.json)."""
    folder = Path(folder)
    try:
        if (folder / MARKER).is_file():
            return json.loads((folder / MARKER).read_text(encoding="utf-8")).get("format") == FORMAT
        return "model_type" in json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, AttributeError, TypeError):
        return False


def _source(folder: Path) -> dict[str, Any] | None:
    """An export's `source` (its run's header, in part), or None for a folder lmladder did not write."""
    if not (folder / MARKER).is_file():
        return None
    return artifacts.read_header(folder, FORMAT, what="transformers export").get("source") or {}


def model_header(folder: str | Path) -> dict[str, Any]:
    """What lmladder's model header (lmladder.json of a run) says, for a transformers folder:
    kind gpt, and where lmladder exported it the run's corpus, split, config and test scores."""
    source = _source(Path(folder)) or {}
    return {"kind": "gpt", **{k: source[k] for k in RUN_FIELDS if k in source}}


def load(folder: str | Path, device: str = "auto"):
    """The rung (lmladder.neural.NeuralRung) of a transformers GPT-2 folder: lmladder's GPT with
    the mapped config and weights, and lmladder's tokenizer for its tokenizer.json. A folder
    lmladder exported comes back as the run it was made from (without biases where the run had
    none); any other keeps its biases."""
    import torch

    from lmladder.config import TrainConfig
    from lmladder.gpt import GPT
    from lmladder.hf import tokenizer as tok
    from lmladder.hf import weights
    from lmladder.neural import NeuralRung, pick_device, refuse_misfit, saved_config

    folder = Path(folder)
    if not folder.is_dir():
        raise LadderError(f"{folder} is not a folder; give a model folder")
    source = _source(folder)
    data = _json(folder / "config.json", "a transformers model folder holds its config there")
    if not isinstance(data, dict) or data.get("model_type") != "gpt2":
        found = data.get("model_type") if isinstance(data, dict) else None
        raise LadderError(f"{folder} holds a transformers {found or 'model of no model_type'}; lmladder reads GPT-2 "
                          "(model_type gpt2) only")
    # the run's config as its export recorded it, checked as a run's own (types, ranges), or refused
    saved = saved_config(folder, source) if source and source.get("config") else None
    state, biased = weights.from_transformers(weights.read_tensors(folder), data.get("tie_word_embeddings", True),
                                              str(folder))
    bias = biased or saved is None or saved.model.bias
    config = weights.gpt_config(data, str(folder), bias, saved.model.residual_dtype if saved else "float32")
    source = source or {}
    tokenizer = tok.read(folder, source.get("corpus"), source.get("split"))
    if tokenizer.vocab_size > config.vocab_size:
        raise LadderError(f"{folder}'s tokenizer has {tokenizer.vocab_size:,} ids but the model only "
                          f"{config.vocab_size:,} rows; they do not belong together")
    state = state if bias else weights.drop_biases(state)
    if saved is not None and saved.model_kind == "gpt":  # an export of a looped GPT comes back looped
        state, config = weights.folded(state, config, saved.model.n_loop)
    refuse_misfit(lambda: GPT(config), {k: tuple(v.shape) for k, v in state.items()},
                  f"{folder}'s weights do not fit its config.json", "the two do not belong together")
    model = GPT(config)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        detail = str(exc).splitlines()[-1].strip()[:160]
        raise LadderError(f"{folder}'s weights do not fit its config.json ({detail})") from None
    missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        raise LadderError(f"{folder}'s weights do not fit its config.json (missing {missing[:3]}, unexpected "
                          f"{unexpected[:3]})")
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        raise LadderError(f"{folder} holds weights that are not finite numbers (NaN or inf)")
    run = {s: getattr(saved, s) for s in ("optim", "data", "run")} if saved else {}
    device = pick_device(device)
    return NeuralRung(model.to(device), tokenizer, TrainConfig("gpt", config, **run), device)


@dataclass
class _Source:
    """A GPT to export, and what its export's lmladder.json says of where it came from."""

    rung: Any  # lmladder.neural.NeuralRung
    info: dict[str, Any]


def _read_source(folder: str | Path) -> _Source:
    """A GPT run of lmladder's, an lmladder export, or another transformers GPT-2 folder. The
    source's name, not its path, is kept: a shared folder should not carry the maker's paths."""
    folder = Path(folder)
    if is_transformers_folder(folder):
        info = _source(folder)
        return _Source(load(folder, "cpu"), info if info is not None else {"transformers": folder.name})
    from lmladder.neural import load as load_run

    header = artifacts.read_header(folder, "lmladder-model")
    check_gpt(folder, header.get("kind"), "hf")
    rung = load_run(folder, header)
    return _Source(rung, {"run": folder.resolve().name, **{k: header[k] for k in RUN_FIELDS if k in header}})


def check_gpt(folder: str | Path, kind: Any, fmt: str) -> None:
    """Refuse a model that is not a GPT, saying which format it has instead."""
    if kind == "gpt":
        return
    instead = {"ngram": "export it with --format arpa", "mlp": "an MLP is not a GPT and has no export format"}
    raise LadderError(f"{folder} holds a model of kind {kind!r}; --format {fmt} exports GPT runs as transformers' "
                      f"GPT-2: {instead.get(str(kind), 'this kind has no export format')}")


def export(source: str | Path, out: str | Path, force: bool = False) -> dict[str, Any]:
    """Write the GPT in `source` as a transformers GPT-2 folder `out` (layout above), atomically;
    an existing export is replaced only with `force`, a folder of another kind never."""
    from lmladder import __version__, registry
    from lmladder.atomic import atomic_dir, check_output_dir, locked, write_json
    from lmladder.hf import card, weights
    from lmladder.hf import tokenizer as tok

    header = registry.model_header(source)
    check_gpt(source, header.get("kind"), "hf")
    weights.check_exportable(((header.get("config") or {}).get("model") or {}).get("position", "learned"), str(source))
    check_output_dir(out, FORMAT, None, force)
    src = _read_source(source)
    rung = src.rung
    config = rung.config.model
    tokenizer = rung.tokenizer
    v = tokenizer.vocab_size
    generation = {"bos_token_id": tokenizer.eot_id, "eos_token_id": tokenizer.eot_id, "pad_token_id": tokenizer.eot_id}
    if config.vocab_size > v:
        generation["suppress_tokens"] = list(range(v, config.vocab_size))
    if rung.canonical is not None:
        from lmladder.console import log

        log("[yellow]this run scores with its distributions renormalised over canonical BPE encodings "
            "(--canonical); transformers will give the network's own, a little less probable on text[/]")
    tensors = weights.to_transformers(rung.model)
    files = {
        "config.json": _dump(weights.config_json(config, tokenizer.eot_id)),
        "generation_config.json": _dump(generation),
        **tok.files(tokenizer, config.block_size),
        "README.md": card.model_card(src.info, config, tokenizer, __version__).encode("utf-8"),
    }
    with locked(out), atomic_dir(out) as tmp:
        weights.write_tensors(tensors, tmp / "model.safetensors")
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        write_json(tmp / MARKER, artifacts.header(FORMAT, kind="gpt", source=src.info))
    return {"model": str(source), "format": "hf", "out": str(out),
            "files": sorted([*files, "model.safetensors", MARKER]),
            "tokenizer": tokenizer.kind, "vocab_size": v, "padded_vocab_size": config.vocab_size,
            "canonical": rung.canonical is not None}


def _dump(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def init_source(source: str | Path):
    """(GPTConfig, state dict in lmladder's names, tokenizer) that `lmladder train --init-from
    SOURCE` starts a GPT from: a GPT run of lmladder's or a transformers GPT-2 folder. The state
    leaves out lm_head.weight, tied to transformer.wte.weight (as in lmladder's checkpoints)."""
    from lmladder import registry

    folder = Path(source)
    header = registry.model_header(folder)
    if header.get("kind") != "gpt":
        raise LadderError(f"{folder} holds a model of kind {header.get('kind')!r}; a GPT starts only from a GPT (a GPT "
                          "run of lmladder's or a transformers GPT-2 folder)")
    rung = load(folder, "cpu") if is_transformers_folder(folder) else registry.load_model(folder)
    state = {k: v.detach().cpu() for k, v in rung.model.state_dict().items() if k != "lm_head.weight"}
    return rung.config.model, state, rung.tokenizer
