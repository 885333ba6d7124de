"""lmladder's GPT and transformers' GPT-2: the config and the weights, both ways, exactly.

The two compute the same function: pre-norm blocks, a learned position table, LayerNorm with
eps 1e-5, GELU's tanh approximation, attention scaled by 1/sqrt(hs), the head tied to wte. They
differ in layout only:

- GPT-2's Conv1D keeps a Linear's weight transposed: (in, out) against nn.Linear's (out, in);
- GPT-2 always has biases: a GPT trained with bias=False gets zeros, which add nothing;
- both save the tied head once, as transformer.wte.weight.

So the mapping is a loop over lmladder's modules, not a table of names. What GPT-2 cannot hold
(rotary positions), or lmladder's GPT cannot (another activation, LayerNorm eps, an untied
head, cross-attention), is refused with the reason.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lmladder.config import GPTConfig
from lmladder.errors import LadderError

# torch's gelu(approximate="tanh"): the very function lmladder's MLP (and its fused kernel) computes
ACTIVATION = "gelu_pytorch_tanh"
# transformers' other names for GELU's tanh approximation: the same function, written out in
# Python (GPT-2's own gelu_new), equal to float32 rounding
TANH_GELUS = (ACTIVATION, "gelu_new", "gelu_fast", "gelu_python_tanh")
LAYER_NORM_EPS = 1e-5  # nn.LayerNorm's default, which lmladder's GPT keeps
# GPT2Config's defaults: transformers writes only the values that differ from them
DEFAULTS: dict[str, Any] = dict(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12, n_inner=None,
                                activation_function="gelu_new", resid_pdrop=0.1, embd_pdrop=0.1, attn_pdrop=0.1,
                                layer_norm_epsilon=1e-5, scale_attn_weights=True, scale_attn_by_inverse_layer_idx=False,
                                add_cross_attention=False, tie_word_embeddings=True)
# old GPT-2 files keep the causal mask as a buffer named attn.bias; it is not a weight
_MASK_BUFFER = re.compile(r"\.attn\.(masked_)?bias$")
_BLOCK = re.compile(r"^(transformer\.h\.)(\d+)(\..*)$")


def config_json(config: GPTConfig, eot_id: int) -> dict[str, Any]:
    """GPT-2's config.json for a GPT of `config` (vocab_size the padded one: the table's rows)."""
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": config.vocab_size,
        "n_positions": config.block_size,
        "n_embd": config.n_embd,
        "n_layer": config.depth,  # a GPT with n_loop > 1 unrolled: its blocks' weights written once a pass
        "n_head": config.n_head,
        "n_inner": None,  # 4 * n_embd, as lmladder's MLP
        "activation_function": ACTIVATION,
        # lmladder's one dropout is applied where GPT-2 has its three
        "resid_pdrop": config.dropout,
        "embd_pdrop": config.dropout,
        "attn_pdrop": config.dropout,
        "layer_norm_epsilon": LAYER_NORM_EPS,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "tie_word_embeddings": True,
        "bos_token_id": eot_id,
        "eos_token_id": eot_id,
        "use_cache": True,
        "torch_dtype": "float32",  # the key transformers 4 reads; 5 reads it too
    }


def check_exportable(position: str, what: str) -> None:
    """Refuse a GPT that transformers' GPT-2 cannot compute exactly: one without GPT-2's learned
    position table (the only setting of lmladder's GPTConfig that GPT-2 has no room for)."""
    if position != "learned":
        raise LadderError(f"{what} is a GPT with {position} positions (position={position}); transformers' GPT-2 "
                          "has a learned position table only, so it cannot hold this model exactly")


def gpt_config(data: dict[str, Any], source: str, bias: bool, residual_dtype: str = "float32") -> GPTConfig:
    """lmladder's GPTConfig for a GPT-2 config.json, or one error naming everything it cannot hold."""
    c = {**DEFAULTS, **data}
    problems = []
    if c["n_inner"] not in (None, 4 * c["n_embd"]):
        problems.append(f"an MLP of width n_inner={c['n_inner']} (lmladder's is 4 * n_embd = {4 * c['n_embd']})")
    if c["activation_function"] not in TANH_GELUS:
        problems.append(f"activation {c['activation_function']!r} (lmladder's GPT uses GELU's tanh approximation: "
                        f"{', '.join(TANH_GELUS)})")
    if c["layer_norm_epsilon"] != LAYER_NORM_EPS:
        problems.append(f"layer_norm_epsilon {c['layer_norm_epsilon']} (lmladder's is {LAYER_NORM_EPS})")
    if not c["scale_attn_weights"] or c["scale_attn_by_inverse_layer_idx"]:
        problems.append("attention scaled otherwise than by 1/sqrt(head size)")
    if c["add_cross_attention"]:
        problems.append("cross-attention")
    sizes = {k: c[k] for k in ("n_positions", "vocab_size", "n_layer", "n_head", "n_embd")}
    problems += [f"{k} {v!r} (it must be a whole number, at least 1)" for k, v in sizes.items()
                 if not isinstance(v, int) or isinstance(v, bool) or v < 1]
    if not isinstance(c["resid_pdrop"], (int, float)) or not 0 <= c["resid_pdrop"] < 1:
        problems.append(f"resid_pdrop {c['resid_pdrop']!r} (a dropout probability is in [0, 1))")
    if problems:
        raise LadderError(f"{source} is a GPT-2 that lmladder's GPT cannot compute exactly: {'; '.join(problems)}")
    # lmladder's one dropout for GPT-2's three (equal in the folders lmladder writes, and in OpenAI's);
    # it matters only to training
    try:
        return GPTConfig(block_size=c["n_positions"], vocab_size=c["vocab_size"], n_layer=c["n_layer"],
                         n_head=c["n_head"], n_embd=c["n_embd"], dropout=float(c["resid_pdrop"]), bias=bias,
                         position="learned", residual_dtype=residual_dtype)
    except (ValueError, TypeError) as exc:
        raise LadderError(f"{source} has an unusable GPT-2 config: {exc}") from None


def to_transformers(model) -> dict[str, torch.Tensor]:
    """The GPT's weights in GPT-2's names and layouts (float32, on the CPU): Linear weights
    transposed into Conv1D's, absent biases as zeros, the tied head once (as wte)."""
    if model.lm_head.weight is not model.transformer.wte.weight:
        raise LadderError("the GPT's head is not tied to its token embedding, as GPT-2's is")
    out: dict[str, torch.Tensor] = {}
    for name, module in model.named_modules():
        if name == "lm_head" or not isinstance(module, (nn.Linear, nn.LayerNorm, nn.Embedding)):
            continue
        weight = module.weight.detach().float().cpu()
        out[f"{name}.weight"] = (weight.t() if isinstance(module, nn.Linear) else weight).contiguous()
        if isinstance(module, nn.Embedding):
            continue
        width = module.out_features if isinstance(module, nn.Linear) else module.normalized_shape[0]
        bias = module.bias.detach().float().cpu() if module.bias is not None else torch.zeros(width)
        out[f"{name}.bias"] = bias.contiguous()
    return unrolled(out, model.config.n_layer, model.config.n_loop)


def unrolled(tensors: dict[str, torch.Tensor], n_layer: int, n_loop: int) -> dict[str, torch.Tensor]:
    """GPT-2 tensors of a GPT that goes through its n_layer blocks n_loop times, as the n_layer x
    n_loop blocks of a plain GPT-2: block i + k n_layer is block i (transformers' GPT-2 has no
    shared blocks; the copies compute the same function)."""
    out = dict(tensors)
    for name, tensor in tensors.items():
        found = _BLOCK.match(name)
        if found:
            for k in range(1, n_loop):
                # a copy: safetensors refuses tensors that share memory
                out[f"{found[1]}{int(found[2]) + k * n_layer}{found[3]}"] = tensor.clone()
    return out


def folded(state: dict[str, torch.Tensor], config: GPTConfig,
           n_loop: int) -> tuple[dict[str, torch.Tensor], GPTConfig]:
    """An export of a GPT with n_loop > 1 (unrolled) as that GPT again: its n_layer / n_loop blocks
    and config with n_loop, where block i + k n_layer / n_loop is block i's copy in every tensor.
    Otherwise (the copies changed, say by fine-tuning in transformers) the GPT-2 as it is."""
    if n_loop <= 1 or config.n_layer % n_loop:
        return state, config
    n = config.n_layer // n_loop
    layers: dict[int, dict[str, torch.Tensor]] = {}  # block -> its tensors, by name within the block
    for name, tensor in state.items():
        found = _BLOCK.match(name)
        if found:
            layers.setdefault(int(found[2]), {})[found[3]] = tensor
    if sorted(layers) != list(range(config.n_layer)):  # a block missing, or one past config.json's
        return state, config
    for i in range(n, config.n_layer):
        first, copy = layers[i % n], layers[i]
        if first.keys() != copy.keys() or not all(torch.equal(first[k], copy[k]) for k in first):
            return state, config
    kept = {name: t for name, t in state.items() if not (_BLOCK.match(name) and int(_BLOCK.match(name)[2]) >= n)}
    return kept, dataclasses.replace(config, n_layer=n, n_loop=n_loop)


def write_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """model.safetensors: metadata "format" "pt" (transformers refuses a file without it) and
    lmladder's CRC-32 of the tensors (checkpoint.load_tensors checks it where present; transformers
    ignores it), in a fixed order (lmladder.tensorfile): the same weights make the same bytes."""
    from lmladder import tensorfile
    from lmladder.checkpoint import CRC_KEY, tensors_crc32

    tensorfile.save(tensors, path, {"format": "pt", CRC_KEY: tensors_crc32(tensors)})


def read_tensors(folder: Path) -> dict[str, torch.Tensor]:
    """The tensors of a transformers folder: model.safetensors, or the shards its index names."""
    from lmladder.checkpoint import load_tensors

    index = folder / "model.safetensors.index.json"
    if (folder / "model.safetensors").is_file() or not index.is_file():
        if not (folder / "model.safetensors").is_file() and (folder / "pytorch_model.bin").is_file():
            raise LadderError(f"{folder} holds its weights as pytorch_model.bin, a pickle lmladder does not read; "
                              "save it again with transformers' save_pretrained, which writes model.safetensors")
        return load_tensors(folder / "model.safetensors")
    try:
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise LadderError(f"{index} is corrupt (no weight_map); save the model again") from None
    out: dict[str, torch.Tensor] = {}
    for shard in shards:
        out.update(load_tensors(folder / shard))
    return out


def from_transformers(tensors: dict[str, torch.Tensor], tied: bool,
                      source: str) -> tuple[dict[str, torch.Tensor], bool]:
    """(lmladder's state dict, float32 and without the tied head; whether any bias is not zero)
    of GPT-2 tensors, named with or without the "transformer." prefix."""
    state: dict[str, torch.Tensor] = {}
    head = None
    for name, tensor in tensors.items():
        if _MASK_BUFFER.search(name):
            continue
        if name == "lm_head.weight":
            head = tensor
            continue
        name = name if name.startswith("transformer.") else f"transformer.{name}"
        conv1d = name.endswith(".weight") and (".attn.c_" in name or ".mlp.c_" in name)
        state[name] = (tensor.t() if conv1d else tensor).float().contiguous()
    wte = state.get("transformer.wte.weight")
    if wte is None:
        raise LadderError(f"{source} has no token embedding (wte.weight); it is not a GPT-2 model")
    if (head is not None and not torch.equal(head.float(), wte)) or (head is None and not tied):
        raise LadderError(f"{source} has an output head of its own, not tied to the token embedding; lmladder's "
                          "GPT, as GPT-2, ties them")
    biased = any(name.endswith(".bias") and bool(t.any()) for name, t in state.items())
    return state, biased


def drop_biases(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state of a GPT without biases (every bias in `state` is zero)."""
    return {k: v for k, v in state.items() if not k.endswith(".bias")}
