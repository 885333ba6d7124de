"""Training checkpoints: folders written atomically, read without unpickling anything.

    OUT/latest/  model.safetensors   weights of the plain (uncompiled, unwrapped) module
                 optimizer.safetensors  AdamW's moments, "{parameter index}.exp_avg" and
                                     "{parameter index}.exp_avg_sq"
                 optimizer.json      format "lmladder-optimizer": AdamW's parameter groups (their
                                     hyper-parameters and parameter indices) and each
                                     parameter's step count (float32 in AdamW, exact in JSON)
                 lmladder.json       format "lmladder-checkpoint": config, step, tokens seen,
                                     data position, best val, RNG states (CPU and CUDA, base64)
                 ema.safetensors     the moving average of the weights, when the run keeps one
    OUT/best/    the same, without the optimizer: the weights of the best val loss (the
                 average's, when the run keeps one: that is what was evaluated)

The training data position is the step: batch k is drawn from a generator seeded by (seed, k),
so continuing at step k needs nothing else.

Every safetensors file lmladder writes carries a checksum of its tensors' bytes (tensors_crc32) in
its metadata, "lmladder.crc32", checked when it is read: safetensors checks its header, not the
data, so bytes changed in place would otherwise load as different weights. Files without it (a
transformers folder from elsewhere, an older run) are read as they are. Metadata is written in a
fixed order (lmladder.tensorfile), so the same tensors make the same bytes.

A model's weights (model.safetensors, ema.safetensors) also carry the model settings they were
trained with, "lmladder.model" (model_settings: all but dropout and the residual stream's dtype,
which change training or rounding, not the function), compared with the model they are loaded
into: an edit of lmladder.json that keeps every shape (n_head, n_loop, a rotary GPT's block_size,
an MLP's pad_id) would otherwise load as a different model, silently.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from pathlib import Path
from typing import Any

from lmladder import artifacts
from lmladder.atomic import MARKER, atomic_dir, write_json
from lmladder.errors import LadderError

FORMAT = "lmladder-checkpoint"
OPTIMIZER_FORMAT = "lmladder-optimizer"
CRC_KEY = "lmladder.crc32"
MODEL_KEY = "lmladder.model"
NOT_SAVED = ("dropout", "residual_dtype")  # settings of training or rounding, free to differ on load
TIED = ("lm_head.weight",)  # shares its tensor with transformer.wte.weight: saved once


def _weights(model) -> dict[str, Any]:
    state = model.state_dict()
    tied = {k for k in TIED if k in state and "transformer.wte.weight" in state
            and state[k].data_ptr() == state["transformer.wte.weight"].data_ptr()}
    return {k: v for k, v in state.items() if k not in tied}


def tensors_crc32(tensors: dict[str, Any]) -> str:
    """A CRC-32 of each tensor's bytes, taken in threads (zlib releases the GIL, so a checkpoint
    costs a fraction of a core-second more, not a pass over every byte on one core), then a
    CRC-32 of "name crc" lines in name order: 8 hex digits."""
    import zlib
    from concurrent.futures import ThreadPoolExecutor

    import torch

    from lmladder.runtime import usable_cores

    names = sorted(tensors)
    flat = [tensors[n].detach().cpu().contiguous().reshape(-1) for n in names]
    one = lambda t: zlib.crc32(t.view(torch.uint8).numpy() if t.numel() else b"")  # noqa: E731
    with ThreadPoolExecutor(min(8, usable_cores())) as pool:
        crcs = list(pool.map(one, flat))
    lines = "".join(f"{name} {crc:08x}\n" for name, crc in zip(names, crcs))
    return f"{zlib.crc32(lines.encode()):08x}"


def model_settings(model) -> dict[str, Any] | None:
    """The settings of `model`'s config that its weights are saved with (MODEL_KEY)."""
    import dataclasses

    config = getattr(model, "config", None)
    if not dataclasses.is_dataclass(config):
        return None
    return {k: v for k, v in dataclasses.asdict(config).items() if k not in NOT_SAVED}


def save_tensors(tensors: dict[str, Any], path: Path, settings: dict[str, Any] | None = None) -> None:
    from lmladder import tensorfile

    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    metadata = {CRC_KEY: tensors_crc32(tensors)}
    if settings is not None:
        metadata[MODEL_KEY] = json.dumps(settings, sort_keys=True)
    tensorfile.save(tensors, path, metadata)  # the same tensors and settings, the same bytes


def save_weights(model, path: Path) -> None:
    save_tensors(_weights(model), path, model_settings(model))


def refuse_other_settings(model, path: Path) -> None:
    """A LadderError where the weights file at `path` (read by load_tensors: it opens) was saved
    with model settings (MODEL_KEY) other than `model`'s: its run's lmladder.json was edited since.
    A file without them (an older run) passes."""
    from safetensors import safe_open

    mine = model_settings(model) or {}
    with safe_open(str(path), "pt") as handle:  # a file load_tensors has read whole already
        text = (handle.metadata() or {}).get(MODEL_KEY)
    if text is None:
        return
    try:
        saved = json.loads(text)
    except ValueError:
        saved = None
    if not isinstance(saved, dict):
        raise LadderError(f"{path} is corrupt: its model settings ({MODEL_KEY}) are not a JSON object; retrain or "
                          "resume from another checkpoint")
    changed = [k for k in sorted(saved) if k in mine and saved[k] != mine[k]]
    if changed:
        what = "; ".join(f"{k} {saved[k]!r}, not {mine[k]!r}" for k in changed[:3])
        raise LadderError(f"{path} was trained with {what} as its run's lmladder.json says: the config was edited "
                          "since; restore it or retrain")


def load_tensors(path: Path) -> dict[str, Any]:
    """The tensors of a safetensors file, or a LadderError saying it is missing or corrupt."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    if not Path(path).is_file():
        raise LadderError(f"{path} is missing; the model folder is incomplete, retrain or resume it")
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), "pt") as handle:
            expected = (handle.metadata() or {}).get(CRC_KEY)
    except (SafetensorError, OSError) as exc:
        raise LadderError(f"{path} is corrupt ({exc}); retrain or resume from another checkpoint") from None
    if expected is not None and tensors_crc32(tensors) != expected:
        raise LadderError(f"{path} is corrupt: its tensors' checksum does not match the one written with them "
                          "(bytes changed since); retrain or resume from another checkpoint")
    return tensors


def load_weights(model, path: Path) -> None:
    state = load_tensors(path)
    refuse_other_settings(model, path)
    mine = model.state_dict()
    wrong = next((k for k, v in state.items() if k in mine and tuple(v.shape) != tuple(mine[k].shape)), None)
    if wrong is not None:
        raise LadderError(f"{path} does not fit the model of its config ({wrong} is {tuple(state[wrong].shape)}, "
                          f"the config makes it {tuple(mine[wrong].shape)}): the header or the weights were "
                          "changed; retrain it")
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
    torch.set_rng_state(dec(state["cpu"]))  # its size checked before (check_state)
    if "cuda" in state and torch.cuda.is_available():
        states = [dec(s) for s in state["cuda"]]
        if len(states) == torch.cuda.device_count():
            try:
                torch.cuda.set_rng_state_all(states)
            except RuntimeError as exc:  # a state of another size
                raise LadderError(f"the CUDA random state (rng.cuda) of the checkpoint is damaged ({exc}); "
                                  "restore the checkpoint from a copy, or train the run again") from None


def save(folder: Path, model, optimizer, state: dict[str, Any], average: dict[str, Any] | None = None) -> None:
    """Write a checkpoint folder (weights, optimizer unless None, the weights' moving average
    unless None, state) in one atomic swap."""
    with atomic_dir(folder) as tmp:
        save_weights(model, tmp / "model.safetensors")
        if optimizer is not None:
            save_optimizer(optimizer, tmp)
        if average is not None:
            save_tensors(average, tmp / "ema.safetensors", model_settings(model))
        write_json(tmp / MARKER, artifacts.header(FORMAT, **state, rng=rng_state()))


class BestWriter:
    """best/ written in a thread: the weights are copied on their device when val improves (a
    copy of tens of MB takes well under a millisecond on a GPU), and the thread brings them to the
    host and writes the folder while training goes on; a 6 x 512 GPT's best/ took ~0.1 s to write
    (safetensors), a stall at each improvement of a run evaluated every 50 steps. One write at a
    time: a newer best waits for the one before; `wait` returns when the last is on disk and
    raises its error, if it failed."""

    def __init__(self):
        self.pool, self.pending = None, None

    def save(self, folder: Path, model, state: dict[str, Any]) -> None:
        import torch

        self.wait()
        weights = {k: v.detach().clone() for k, v in _weights(model).items()}
        done = None
        if any(v.is_cuda for v in weights.values()):  # the thread waits for the copies, not the stream
            done = torch.cuda.Event()
            done.record()
        header = artifacts.header(FORMAT, **state, rng=rng_state())
        if self.pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(1, thread_name_prefix="lmladder-best")
        self.pending = self.pool.submit(self._write, folder, weights, header, done, model_settings(model))

    @staticmethod
    def _write(folder: Path, weights: dict[str, Any], header: dict[str, Any], done, settings=None) -> None:
        import contextlib

        import torch

        side = contextlib.nullcontext()
        if done is not None:  # copied to the host on a stream of its own (the default one would
            done.synchronize()  # wait for, and hold up, the training kernels)
            side = torch.cuda.stream(torch.cuda.Stream(next(v.device for v in weights.values() if v.is_cuda)))
        with atomic_dir(folder) as tmp, side:
            save_tensors(weights, tmp / "model.safetensors", settings)
            write_json(tmp / MARKER, header)

    def wait(self) -> None:
        pending, self.pending = self.pending, None
        if pending is not None:
            pending.result()


def read(folder: Path, need_optimizer: bool = True) -> dict[str, Any]:
    """The state of a checkpoint folder, after checking the folder is one."""
    state = artifacts.read_header(folder, FORMAT, what="checkpoint")
    if need_optimizer and not (folder / "optimizer.json").is_file() and (folder / "optimizer.pt").is_file():
        raise LadderError(f"checkpoint {folder} holds its optimizer state as optimizer.pt, a pickle written by an "
                          "older lmladder, which lmladder no longer reads (it now writes optimizer.safetensors and "
                          "optimizer.json); the run's weights still score and sample, but it cannot be resumed: "
                          "train it again")
    for name in ("model.safetensors",) + (("optimizer.safetensors", "optimizer.json") if need_optimizer else ()):
        if not (folder / name).is_file():
            raise LadderError(f"checkpoint {folder} has no {name}; it is incomplete")
    return state


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _finite(value: Any) -> bool:
    """A JSON number (not a bool) that is finite and >= 0."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


STATE_FIELDS = (  # (key, required, check, what it must be): what RunState.resumed reads
    ("step", True, _count, "a whole number >= 0"), ("tokens", True, _count, "a whole number >= 0"),
    ("data_position", False, _count, "a whole number >= 0"), ("stale", False, _count, "a whole number >= 0"),
    ("elapsed", False, _finite, "a finite number >= 0"),
    ("best_val", False, lambda v: v is None or _finite(v), "null or a finite number >= 0"))


def check_state(folder: Path, state: dict[str, Any]) -> None:
    """A checkpoint's state as a resumed run reads it (RunState.resumed, set_rng_state): its
    counts whole numbers >= 0, its data position its step, its best val null or a finite loss,
    its CPU random state base64 of torch's size; else a LadderError naming the file as damaged."""
    import torch

    wrong = [f"no {key}" if key not in state else f"{key} {state[key]!r:.40} is not {want}"
             for key, required, ok, want in STATE_FIELDS
             if (key in state and not ok(state[key])) or (required and key not in state)]
    if not wrong and state.get("data_position", state["step"]) != state["step"]:
        wrong.append(f"data_position {state['data_position']} is not its step {state['step']}")
    rng = state.get("rng")
    if not isinstance(rng, dict) or "cpu" not in rng:
        wrong.append("no random state (rng.cpu)")
    else:
        cuda = rng.get("cuda", [])
        try:
            sizes = [len(base64.b64decode(s, validate=True)) if isinstance(s, str) else None
                     for s in [rng["cpu"], *(cuda if isinstance(cuda, list) else [None])]]
        except (binascii.Error, TypeError, ValueError):
            sizes = [None]
        if None in sizes:
            wrong.append("its random state (rng) is not base64 text")
        elif sizes[0] != torch.get_rng_state().numel():
            wrong.append(f"its CPU random state has {sizes[0]} bytes, not torch's {torch.get_rng_state().numel()}")
    if wrong:
        raise LadderError(f"{folder / MARKER} is damaged ({'; '.join(wrong[:3])}); restore {folder} from a copy, "
                          "or train the run again")


def save_optimizer(optimizer, folder: Path) -> None:
    """optimizer.safetensors (every tensor of the state but the 0-dim float32 ones, the step
    counts) and optimizer.json (those, the other values, and the parameter groups)."""
    import torch

    saved = optimizer.state_dict()
    tensors: dict[str, Any] = {}
    numbers: dict[str, dict[str, Any]] = {}
    for index, entries in saved["state"].items():
        for key, value in entries.items():
            if torch.is_tensor(value) and (value.dim() > 0 or value.dtype != torch.float32):
                tensors[f"{index}.{key}"] = value
            else:  # a float32 scalar is exact as a JSON number (a double)
                numbers.setdefault(str(index), {})[key] = float(value) if torch.is_tensor(value) else value
    groups = [{k: float(v) if torch.is_tensor(v) else list(v) if isinstance(v, tuple) else v for k, v in g.items()}
              for g in saved["param_groups"]]
    save_tensors(tensors, folder / "optimizer.safetensors")
    write_json(folder / "optimizer.json", {"format": OPTIMIZER_FORMAT, "param_groups": groups, "state": numbers})


def load_optimizer(optimizer, folder: Path) -> None:
    """The state save_optimizer wrote, into `optimizer` (built for the same model): each value as
    it was saved (a step count a float32 tensor, betas a tuple), or a LadderError."""
    import torch

    path = folder / "optimizer.json"
    try:
        layout = json.loads(path.read_text(encoding="utf-8"))
        if layout.get("format") != OPTIMIZER_FORMAT:
            raise ValueError(f"format {layout.get('format')!r}, not {OPTIMIZER_FORMAT!r}")
        state: dict[int, dict[str, Any]] = {
            int(index): {k: torch.tensor(v, dtype=torch.float32) if isinstance(v, float) else v
                         for k, v in entries.items()} for index, entries in layout["state"].items()}
        for name, tensor in load_tensors(folder / "optimizer.safetensors").items():
            index, key = name.split(".", 1)
            state.setdefault(int(index), {})[key] = tensor
        groups = [{k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in g.items()}
                  for g in layout["param_groups"]]
        _check_groups(groups, optimizer.param_groups, state)
        optimizer.load_state_dict({"state": state, "param_groups": groups})
        for group in optimizer.param_groups:  # AdamW's moments, Muon's momentum: each its parameter's shape
            for p in group["params"]:
                shape = next((tuple(v.shape) for v in optimizer.state.get(p, {}).values()
                              if torch.is_tensor(v) and v.dim() and v.shape != p.shape), None)
                if shape is not None:
                    raise ValueError(f"a state of shape {shape} for a parameter of shape {tuple(p.shape)}")
    except LadderError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError, RuntimeError, OSError) as exc:
        raise LadderError(f"the optimizer state in {folder} cannot be read: {path.name} is damaged "
                          f"({str(exc).splitlines()[0][:160]}); restore {folder} from a copy, or train the run "
                          "again") from None


def _check_groups(saved: list[dict[str, Any]], live: list[dict[str, Any]], state: dict[int, Any]) -> None:
    """A ValueError unless the saved parameter groups fit this run's optimizer (`live`, as built):
    as many, each value of the live one's type (a number finite and >= 0, betas and momentum
    below 1, a name the same), parameter indices whole numbers, the state's among them and its
    counts finite numbers."""
    import torch

    if not isinstance(saved, list) or len(saved) != len(live) or not all(isinstance(g, dict) for g in saved):
        raise ValueError(f"its param_groups are not the {len(live)} groups of this run's optimizer")
    indices: list[Any] = []
    for i, (group, mine) in enumerate(zip(saved, live)):
        params = group.get("params")
        if not isinstance(params, list) or not all(_count(p) for p in params):
            raise ValueError(f"group {i}'s params are not parameter indices")
        indices += params
        for key, want in mine.items():
            value = group.get(key)
            if key == "params" or (key not in group and (want is None or isinstance(want, bool))):
                continue  # a flag torch fills in for a state saved by an older torch
            if isinstance(want, bool) or want is None:
                ok = value is None or isinstance(value, bool)
            elif torch.is_tensor(want) or isinstance(want, (int, float)):
                ok = _finite(value) and (key != "momentum" or value < 1)
            elif isinstance(want, tuple):
                ok = isinstance(value, tuple) and len(value) == len(want) and all(_finite(v) and v < 1 for v in value)
            else:
                ok = value == want
            if not ok:
                raise ValueError(f"group {i}'s {key} is {value!r:.40}")
    if len(set(indices)) != len(indices) or not set(state) <= set(indices):
        raise ValueError("its parameter indices repeat, or its state names a parameter of no group")
    for index, entries in state.items():  # step counts: 0-dim tensors (from JSON floats) or numbers
        values = [v.item() if torch.is_tensor(v) and v.dim() == 0 else v
                  for v in (entries.values() if isinstance(entries, dict) else [None])]
        if not all((torch.is_tensor(v) and v.dim()) or _finite(v) for v in values):
            raise ValueError(f"the state of parameter {index} is not numbers")
