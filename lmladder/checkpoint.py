"""Training checkpoints: folders written atomically, read without unpickling anything.

    OUT/latest/  model.safetensors   weights of the plain (uncompiled, unwrapped) module
                 optimizer.pt        AdamW state, read back with torch.load(weights_only=True)
                 lmladder.json       format "lmladder-checkpoint": config, step, tokens seen,
                                     data position, best val, RNG states (CPU and CUDA, base64)
                 ema.safetensors     the moving average of the weights, when the run keeps one
    OUT/best/    the same, without the optimizer: the weights of the best val loss (the
                 average's, when the run keeps one: that is what was evaluated)

The training data position is the step: batch k is drawn from a generator seeded by (seed, k),
so continuing at step k needs nothing else.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from lmladder import artifacts
from lmladder.atomic import MARKER, atomic_dir, write_json
from lmladder.errors import LadderError

FORMAT = "lmladder-checkpoint"
TIED = ("lm_head.weight",)  # shares its tensor with transformer.wte.weight: saved once


def _weights(model) -> dict[str, Any]:
    state = model.state_dict()
    tied = {k for k in TIED if k in state and "transformer.wte.weight" in state
            and state[k].data_ptr() == state["transformer.wte.weight"].data_ptr()}
    return {k: v for k, v in state.items() if k not in tied}


def save_tensors(tensors: dict[str, Any], path: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(path))


def save_weights(model, path: Path) -> None:
    save_tensors(_weights(model), path)


def load_tensors(path: Path) -> dict[str, Any]:
    """The tensors of a safetensors file, or a LadderError saying it is missing or corrupt."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not Path(path).is_file():
        raise LadderError(f"{path} is missing; the model folder is incomplete, retrain or resume it")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise LadderError(f"{path} is corrupt ({exc}); retrain or resume from another checkpoint") from None


def load_weights(model, path: Path) -> None:
    state = load_tensors(path)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k not in TIED]
    if missing or unexpected:
        raise LadderError(f"{path} does not fit the model of its config (missing {missing[:3]}, "
                          f"unexpected {unexpected[:3]}); retrain it")


def rng_state() -> dict[str, Any]:
    import torch

    enc = lambda t: base64.b64encode(t.cpu().numpy().tobytes()).decode("ascii")  # noqa: E731
    out = {"cpu": enc(torch.get_rng_state())}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = [enc(s) for s in torch.cuda.get_rng_state_all()]
    return out


def set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    dec = lambda s: torch.from_numpy(np.frombuffer(base64.b64decode(s), dtype=np.uint8).copy())  # noqa: E731
    torch.set_rng_state(dec(state["cpu"]))
    if "cuda" in state and torch.cuda.is_available():
        states = [dec(s) for s in state["cuda"]]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)


def save(folder: Path, model, optimizer, state: dict[str, Any], average: dict[str, Any] | None = None) -> None:
    """Write a checkpoint folder (weights, optimizer unless None, the weights' moving average
    unless None, state) in one atomic swap."""
    import torch

    with atomic_dir(folder) as tmp:
        save_weights(model, tmp / "model.safetensors")
        if optimizer is not None:
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        if average is not None:
            save_tensors(average, tmp / "ema.safetensors")
        write_json(tmp / MARKER, artifacts.header(FORMAT, **state, rng=rng_state()))


def read(folder: Path, need_optimizer: bool = True) -> dict[str, Any]:
    """The state of a checkpoint folder, after checking the folder is one."""
    state = artifacts.read_header(folder, FORMAT, what="checkpoint")
    for name in ("model.safetensors",) + (("optimizer.pt",) if need_optimizer else ()):
        if not (folder / name).is_file():
            raise LadderError(f"checkpoint {folder} has no {name}; it is incomplete")
    return state


def load_optimizer(optimizer, folder: Path) -> None:
    import pickle

    import torch

    try:
        optimizer.load_state_dict(torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True))
    except (pickle.UnpicklingError, RuntimeError, ValueError, KeyError, OSError) as exc:
        raise LadderError(f"{folder / 'optimizer.pt'} cannot be read ({str(exc).splitlines()[0][:160]}); "
                          "resume from another checkpoint") from None
