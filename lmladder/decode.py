"""Decoding the GPT rung with a key-value cache.

Without a cache (nanoGPT's sample.py) every new token re-runs the whole context: T positions of
work for one token. Here each block's keys and values are kept, so a new token costs one
position: the query of the new token attends to the cached keys. When the cache is full
(block_size positions), it slides: the last 3/4 of the block is re-encoded from scratch (one
prefill) and decoding goes on, so the model always sees at least 3/4 of a block of context.
(With learned absolute position embeddings, keys cannot simply be shifted; rotary ones re-encode
the same way.)

On a GPU a one-token step is a few hundred small kernels, and launching them from Python costs
far more than running them. So there decoding is written with fixed shapes (`StaticDecoder`:
the new keys go in at a position held in a tensor, and the query attends to the whole cache
through a mask of the filled positions), the next token is drawn on the device (the host
sampler's arithmetic, from the same per-sample uniforms) and fed back, and that step, like the
slide of a full cache, is recorded once as a CUDA graph: one launch per token. The host looks
at the tokens every SYNC_EVERY steps (stops, streaming). The same steps run eagerly on the CPU
in the tests, against `forward_cached` and `choose`.

The next token is chosen by lmladder.sampling.choose, the one sampler of every rung; batches of
samples decode in parallel, each with its own random generator.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from lmladder.sampling import SampleSettings, choose, choose_torch

SYNC_EVERY = 32  # device sampling: steps between looks at the tokens (stops, streaming)


def slide_keep(block: int) -> int:
    """How many of the latest tokens a full cache keeps (re-encoded from position 0): 3/4 of it."""
    return max(1, (3 * block) // 4)


class KVCache:
    def __init__(self, model, batch: int, device, dtype: torch.dtype):
        c = model.config
        shape = (c.depth, batch, c.n_head, c.block_size, c.n_embd // c.n_head)  # (L, B, nh, T, hs)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.length = 0


def _attend(attn, x: torch.Tensor, pos: torch.Tensor, cache: KVCache, layer: int, start: int) -> torch.Tensor:
    B, T, C = x.shape
    q, k, v = attn.heads(x, pos)  # each (B, nh, T, hs)
    cache.k[layer, :, :, start:start + T] = k
    cache.v[layer, :, :, start:start + T] = v
    keys = cache.k[layer, :, :, : start + T]  # (B, nh, start+T, hs)
    values = cache.v[layer, :, :, : start + T]
    # a prefill (start 0) is causal; a single new query may see every cached position
    y = F.scaled_dot_product_attention(q, keys.to(q.dtype), values.to(q.dtype), is_causal=(T > 1 and start == 0))
    return attn.c_proj(y.transpose(1, 2).reshape(B, T, C))


@torch.no_grad()
def forward_cached(model, idx: torch.Tensor, cache: KVCache, start: int) -> torch.Tensor:
    """Logits (B, V) after the last of `idx` (B, T), which sits at positions start..start+T-1;
    fills the cache for those positions."""
    if start > 0 and idx.shape[1] > 1:
        raise ValueError("only a prefill (start 0) may feed several positions at once")
    tr = model.transformer
    pos = torch.arange(start, start + idx.shape[1], device=idx.device)
    x = model.embed(idx, pos)  # (B, T, C)
    for i, block in enumerate(model.blocks()):
        x = x + _attend(block.attn, block.ln_1(x), pos, cache, i, start)
        x = x + block.mlp(block.ln_2(x))
    cache.length = start + idx.shape[1]
    return model.lm_head(tr.ln_f(x[:, -1]))  # (B, V)


class StaticDecoder:
    """Decoding with fixed shapes, for CUDA graphs.

    `step()`: draw the next token of every sample from `logits` (B, V) with choose_torch and the
    step's uniforms (`uniforms[t]`), write it to `made[t]`, and feed it: its keys and values go
    into the cache at position `pos` (a tensor, so the same recorded kernels serve every
    position), the query attends to the cache through a mask of the filled positions, and the
    new logits replace `logits`; `t` and `pos` move on, on the device.
    `slide()` (the cache is full): draw, then re-encode the last `keep` tokens (those in the
    cache, `ctx`, and the new one) from position 0: one prefill of a fixed shape.
    On a GPU each is recorded once as a CUDA graph and replayed: one launch per token, no look
    at the tokens needed. Without a GPU (the tests) they run eagerly, with the same arithmetic."""

    def __init__(self, model, cache: KVCache, settings: SampleSettings, uniforms: torch.Tensor, *,
                 vocab_size: int, ban_id: int | None = None, keep: int | None = None, canonical=None):
        self.model, self.cache, self.settings = model, cache, settings
        self.vocab_size, self.ban_id, self.canonical = vocab_size, ban_id, canonical
        device = cache.k.device
        batch = cache.k.shape[1]
        block = model.config.block_size
        self.keep = keep or slide_keep(block)
        self.uniforms = uniforms  # (N, B): the draws of step t in row t
        self.made = torch.zeros(uniforms.shape, dtype=torch.long, device=device)  # (N, B)
        self.tok = torch.zeros(batch, 1, dtype=torch.long, device=device)
        self.ctx = torch.zeros(batch, block, dtype=torch.long, device=device)  # the token at each cache position
        self.recent = torch.zeros(batch, self.keep, dtype=torch.long, device=device)
        self.pos = torch.zeros((), dtype=torch.long, device=device)
        self.t = torch.zeros((), dtype=torch.long, device=device)
        self.logits = torch.zeros(batch, model.config.vocab_size, device=device)
        self.slots = torch.arange(block, device=device)
        self.graphs: dict[str, torch.cuda.CUDAGraph] = {}

    def start(self, prompt: torch.Tensor) -> None:
        """Prefill the (B, P) prompt ids (P <= block); the next step draws after them."""
        self.ctx[:, : prompt.shape[1]] = prompt
        self.logits.copy_(forward_cached(self.model, prompt, self.cache, 0))
        self.pos.fill_(prompt.shape[1])

    def _draw(self) -> None:
        """Step t's tokens from the current logits into made[t] and tok; t += 1."""
        u = self.uniforms.index_select(0, self.t.view(1)).view(-1)
        z = self.logits[:, : self.vocab_size]
        if self.canonical is not None:  # renormalised after the last token (the one at pos - 1)
            last = self.ctx.index_select(1, (self.pos - 1).view(1)).view(-1)
            z = self.canonical(torch.log_softmax(z.float(), dim=-1), last)
        ids = choose_torch(z, self.settings, u, self.ban_id)
        self.made.index_copy_(0, self.t.view(1), ids.view(1, -1))
        self.tok.copy_(ids.view(-1, 1))
        self.t.add_(1)

    def _feed(self) -> None:
        """Run `tok` (B, 1) at position `pos`: cache its keys and values, set `logits`; pos += 1."""
        model, cache = self.model, self.cache
        tr = model.transformer
        B, C = self.tok.shape[0], model.config.n_embd
        pos = self.pos.view(1)
        self.ctx.index_copy_(1, pos, self.tok)
        visible = (self.slots <= self.pos).view(1, 1, 1, -1)  # (1, 1, 1, block): the filled positions
        x = model.embed(self.tok, pos)  # (B, 1, C)
        for i, block in enumerate(model.blocks()):
            attn = block.attn
            q, k, v = attn.heads(block.ln_1(x), pos)  # each (B, nh, 1, hs)
            cache.k[i].index_copy_(2, pos, k.to(cache.k.dtype))
            cache.v[i].index_copy_(2, pos, v.to(cache.v.dtype))
            y = F.scaled_dot_product_attention(q, cache.k[i].to(q.dtype), cache.v[i].to(q.dtype), attn_mask=visible)
            x = x + attn.c_proj(y.transpose(1, 2).reshape(B, 1, C))
            x = x + block.mlp(block.ln_2(x))
        self.logits.copy_(model.lm_head(tr.ln_f(x[:, -1])))  # (B, V)
        self.pos.add_(1)

    def _slide(self) -> None:
        """Draw after a full cache, then re-encode the last `keep` tokens from position 0."""
        self._draw()
        block = self.ctx.shape[1]
        self.recent.copy_(torch.cat([self.ctx[:, block - self.keep + 1:], self.tok], dim=1))
        self.ctx[:, : self.keep] = self.recent
        self.logits.copy_(forward_cached(self.model, self.recent, self.cache, 0))
        self.pos.fill_(self.keep)

    def _step(self) -> None:
        self._draw()
        self._feed()

    @torch.no_grad()
    def step(self) -> None:
        self._run("step", self._step)

    @torch.no_grad()
    def slide(self) -> None:
        self._run("slide", self._slide)

    def _run(self, name: str, body) -> None:
        graph = self.graphs.get(name)
        if graph is not None:
            graph.replay()
        else:
            body()

    @torch.no_grad()
    def warm_up(self) -> None:
        """Run step() and slide() once each, as a capture's warm-up, and undo what they wrote. Each
        runs from position 1, one both can run from: a prompt may have left the cache full, where
        step() would write past its end."""
        state = (self.cache.k, self.cache.v, self.made, self.tok, self.ctx, self.recent, self.pos, self.t, self.logits)
        saved = [x.clone() for x in state]
        for body in (self._step, self._slide):
            self.pos.fill_(1)
            body()
        for x, old in zip(state, saved):
            x.copy_(old)

    @torch.no_grad()
    def capture(self, dtype: torch.dtype | None) -> None:
        """Record step() and slide() as CUDA graphs, after a warm-up on a side stream (recording
        runs nothing, so the state is as it was)."""
        device = self.tok.device
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream), _autocast(device, dtype, cache=False):
            self.warm_up()
        torch.cuda.current_stream().wait_stream(stream)
        pool = None
        for name, body in (("step", self._step), ("slide", self._slide)):
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool), _autocast(device, dtype, cache=False):
                body()
            pool = graph.pool()
            self.graphs[name] = graph


def decoding_copy(model, dtype: torch.dtype | None):
    """The model for autocast decoding on a GPU: a copy whose blocks' Linear weights are stored
    in `dtype` already, so that autocast does not cast each of them again at every token (the
    same rounding, so the same logits; embeddings and norms stay as they are)."""
    import copy

    if dtype is None or next(model.parameters()).device.type != "cuda":
        return model
    return cast_block_linears(copy.deepcopy(model), dtype)


def cast_block_linears(model, dtype: torch.dtype):
    """Store the Linear layers of every block in `dtype` (in place); returns the model."""
    for block in model.transformer.h:
        for module in block.modules():
            if isinstance(module, torch.nn.Linear):
                module.to(dtype)
    return model


def _autocast(device: torch.device, dtype: torch.dtype | None, cache: bool = True):
    if device.type == "cuda" and dtype is not None:
        return torch.autocast("cuda", dtype=dtype, cache_enabled=cache)
    return contextlib.nullcontext()


@torch.no_grad()
def generate(model, prompt: Sequence[int], max_new: int, settings: SampleSettings,
             rngs: Sequence[np.random.Generator], *, vocab_size: int, stop_id: int | None = None,
             ban_id: int | None = None, dtype: torch.dtype | None = None, use_cache: bool = True,
             static: bool | None = None, on_tokens: Callable[[np.ndarray, np.ndarray], bool] | None = None,
             canonical=None) -> list[list[int]]:
    """New token ids for len(rngs) samples continuing `prompt` (ids; the last block_size are used).

    `stop_id` ends a sample (it is not returned); `ban_id` is never drawn; `on_tokens(ids,
    alive)` sees each step's tokens and may return True to stop every sample. `use_cache=False`
    re-runs the whole window every step, as nanoGPT does (the baseline of the benchmark).
    `static` decodes through StaticDecoder (default: on a GPU, where each step is a replayed CUDA
    graph); then the next token is drawn on the device (choose_torch, from the uniforms
    each sample's generator would give `choose`), and the host looks at the tokens every
    SYNC_EVERY steps instead of after each one. `canonical` (lmladder.canonical.Canonical)
    renormalises each step's distribution after the token before it."""
    device = next(model.parameters()).device
    block = model.config.block_size
    batch = len(rngs)
    prompt = list(prompt)[-block:]
    history = torch.tensor([prompt] * batch, dtype=torch.long, device=device)  # (B, T)
    out: list[list[int]] = [[] for _ in range(batch)]
    alive = np.ones(batch, dtype=bool)
    keep = slide_keep(block)

    def take(ids: np.ndarray) -> bool:
        """Book one step's ids; True when sampling should stop."""
        nonlocal alive
        if stop_id is not None:
            alive &= ids != stop_id
        for i in np.flatnonzero(alive):
            out[i].append(int(ids[i]))
        return bool(on_tokens and on_tokens(ids, alive)) or not alive.any()

    def advance(nxt: torch.Tensor) -> torch.Tensor:
        """Feed the (B, 1) new ids; the logits after them (the host loop's step)."""
        nonlocal history
        history = torch.cat([history, nxt], dim=1)[:, -block:]
        if not use_cache:
            return model(history)[:, -1]
        if cache.length < block:
            return forward_cached(model, nxt, cache, cache.length)
        return forward_cached(model, history[:, -keep:], cache, 0)  # full: slide, re-encode 3/4 of a block

    if use_cache and (static or (static is None and device.type == "cuda" and max_new > 1)):
        _generate_static(decoding_copy(model, dtype), history, max_new, settings, rngs, take,
                         vocab_size=vocab_size, ban_id=ban_id, dtype=dtype, canonical=canonical)
        return out
    with _autocast(device, dtype):
        if use_cache:
            cache = KVCache(model, batch, device, dtype if device.type == "cuda" and dtype else torch.float32)
            logits = forward_cached(model, history, cache, 0)
        else:
            logits = model(history)[:, -1]
        for _ in range(max_new):
            z = logits.float()[:, :vocab_size]
            if canonical is not None:
                z = canonical(torch.log_softmax(z, dim=-1), history[:, -1])
            if ban_id is not None:
                z[:, ban_id] = -float("inf")
            ids = choose(z.cpu().numpy(), settings, rngs)
            if take(ids):
                break
            logits = advance(torch.as_tensor(ids, device=device).view(batch, 1))
    return out


def _generate_static(model, history: torch.Tensor, max_new: int, settings: SampleSettings, rngs, take, *,
                     vocab_size: int, ban_id: int | None, dtype: torch.dtype | None, canonical=None) -> None:
    """generate()'s device loop: StaticDecoder steps (CUDA graphs on a GPU); `take` books the
    tokens every SYNC_EVERY steps and says when to stop."""
    device = history.device
    batch, block = history.shape[0], model.config.block_size
    draws = np.stack([g.random(max_new) for g in rngs], axis=1) if settings.temperature > 0 \
        else np.zeros((max_new, batch))
    with _autocast(device, dtype):
        cache = KVCache(model, batch, device, dtype if device.type == "cuda" and dtype else torch.float32)
        dec = StaticDecoder(model, cache, settings, torch.as_tensor(draws, device=device),
                            vocab_size=vocab_size, ban_id=ban_id, canonical=canonical)
        dec.start(history)
        if device.type == "cuda":
            dec.capture(dtype)
        t = done = 0
        pos = history.shape[1]
        while t < max_new:
            if pos == block:  # full: draw, then slide, re-encoding the last 3/4 of a block
                dec.slide()
                pos = dec.keep
            else:
                dec.step()
                pos += 1
            t += 1
            if t - done >= SYNC_EVERY or t == max_new:
                for ids in dec.made[done:t].cpu().numpy():
                    if take(ids):
                        return
                done = t
