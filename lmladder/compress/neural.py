"""The neural rungs (GPT, MLP) as coders.

The decoder must compute each position's distribution exactly as the encoder did, so both run
the same sequence of batched steps with the same shapes: the text's tokens are cut into blocks
(each coded as a document, after end-of-text), and step s feeds token s-1 of every block at
once. A GPT steps its key-value cache one position at a time with fixed shapes (the query
attends to the whole cache through a mask of the filled positions, as lmladder.decode's
StaticDecoder does); when the cache is full it keeps the last half block, re-encoded from
position 0, which is exactly the context the scoring windows give (lmladder.neural: each unit
past the first window sees at least half a block). The MLP reads its last block_size tokens.
Logits become float32 probabilities (end-of-text removed) on the device, and the range coder
quantises them (lmladder.compress.streams).

What holds: on a CPU, with the same torch build, CPU kind (its vector instruction set) and
thread count (recorded, and set again when decoding), the steps are bit-identical; on a GPU,
with the same GPU model and torch/CUDA versions (float32 throughout, TF32 off, the step and
the slide replayed as CUDA graphs). A file made on a GPU decodes only on a GPU, one made on a
CPU only on a CPU; any other mismatch is caught by the checksum of the text.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import asdict

import numpy as np

from lmladder.compress import streams
from lmladder.errors import LadderError

BLOCK_UNITS = 8192  # tokens: a block start costs tens of bits, ~0.2% of a block this long


def _probs(logits, canonical, last):
    """Float32 probabilities from (B, V) logits, renormalised after the `last` tokens (B,) where
    the run is canonical (lmladder.canonical)."""
    import torch

    if canonical is None:
        return torch.softmax(logits, dim=-1)
    return torch.exp(canonical(torch.log_softmax(logits, dim=-1), last))


class _GPTSteps:
    """A GPT's key-value cache fed one token per block per step, with fixed shapes."""

    def __init__(self, model, batch: int, vocab: int, eot: int, device, canonical=None):
        import torch

        from lmladder.decode import KVCache
        from lmladder.neural import context_overlap

        self.model = model
        block = model.config.block_size
        self.block = block
        self.keep = context_overlap("gpt", block) + 1  # a slide keeps half a block and the new token
        self.cache = KVCache(model, batch, device, torch.float32)
        self.hist = torch.full((batch, block), eot, dtype=torch.long, device=device)  # the token at each position
        self.tok = torch.full((batch, 1), eot, dtype=torch.long, device=device)
        self.pos = torch.zeros((), dtype=torch.long, device=device)
        self.slots = torch.arange(block, device=device)
        self.mask = torch.zeros(vocab, device=device)
        self.mask[eot] = -float("inf")  # end-of-text is not a unit of the text
        self.vocab, self.canonical = vocab, canonical
        self.probs = torch.zeros(batch, vocab, device=device)
        self.graphs: dict[str, object] = {}
        self.at = 1  # the host's copy of pos
        self._start()

    def _set(self, logits) -> None:
        self.probs.copy_(_probs(logits[:, : self.vocab].float() + self.mask, self.canonical, self.tok.view(-1)))

    def _start(self) -> None:
        from lmladder.decode import forward_cached

        self._set(forward_cached(self.model, self.tok, self.cache, 0))
        self.pos.fill_(1)

    def _step(self) -> None:
        """Feed `tok` at position `pos` (as StaticDecoder._feed does)."""
        from torch.nn import functional as F

        model, cache = self.model, self.cache
        tr = model.transformer
        B, C = self.tok.shape[0], model.config.n_embd
        pos = self.pos.view(1)
        self.hist.index_copy_(1, pos, self.tok)
        visible = (self.slots <= self.pos).view(1, 1, 1, -1)  # the filled positions
        x = model.embed(self.tok, pos)  # (B, 1, C)
        for i, block in enumerate(model.blocks()):
            attn = block.attn
            q, k, v = attn.heads(block.ln_1(x), pos)  # each (B, nh, 1, hs)
            cache.k[i].index_copy_(2, pos, k)
            cache.v[i].index_copy_(2, pos, v)
            y = F.scaled_dot_product_attention(q, cache.k[i], cache.v[i], attn_mask=visible)
            x = x + attn.c_proj(y.transpose(1, 2).reshape(B, 1, C))
            x = x + block.mlp(block.ln_2(x))
        self._set(model.lm_head(tr.ln_f(x[:, -1])))
        self.pos.add_(1)

    def _slide(self) -> None:
        """The cache is full: keep the last half block and `tok`, re-encoded from position 0."""
        import torch

        from lmladder.decode import forward_cached

        recent = torch.cat([self.hist[:, self.block - self.keep + 1:], self.tok], dim=1)  # (B, keep)
        self.hist[:, : self.keep] = recent
        self._set(forward_cached(self.model, recent, self.cache, 0))
        self.pos.fill_(self.keep)

    def capture(self) -> None:
        """Record the step and the slide as CUDA graphs (after a warm-up on a side stream whose
        writes are undone), so each costs one launch."""
        import torch

        state = (self.cache.k, self.cache.v, self.hist, self.tok, self.pos, self.probs)
        saved = [x.clone() for x in state]
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for body in (self._step, self._slide):
                body()
                for x, old in zip(state, saved):
                    x.copy_(old)
        torch.cuda.current_stream().wait_stream(stream)
        pool = None
        for name, body in (("step", self._step), ("slide", self._slide)):
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                body()
            pool = graph.pool()
            self.graphs[name] = graph
        for x, old in zip(state, saved):
            x.copy_(old)

    def feed(self, tokens) -> None:
        self.tok.copy_(tokens.view(-1, 1))
        name, body = ("slide", self._slide) if self.at == self.block else ("step", self._step)
        self.at = self.keep if name == "slide" else self.at + 1
        graph = self.graphs.get(name)
        graph.replay() if graph is not None else body()


class _MLPSteps:
    """The MLP reads the last block_size tokens of every block (end-of-text padding before)."""

    def __init__(self, model, batch: int, vocab: int, eot: int, device, canonical=None):
        import torch

        self.model, self.vocab, self.canonical = model, vocab, canonical
        n = model.config.block_size
        self.ctx = torch.full((batch, n), model.config.pad_id, dtype=torch.long, device=device)
        self.ctx[:, -1] = eot
        self.mask = torch.zeros(vocab, device=device)
        self.mask[eot] = -float("inf")
        self._set()

    def _set(self) -> None:
        logits = self.model(self.ctx)[:, -1, : self.vocab].float()
        self.probs = _probs(logits + self.mask, self.canonical, self.ctx[:, -1])

    def feed(self, tokens) -> None:
        import torch

        self.ctx = torch.cat([self.ctx[:, 1:], tokens.view(-1, 1)], dim=1)
        self._set()

    def capture(self) -> None:
        pass


# model fields newer than format 1, hashed only where they differ from their value before them, so
# files made before keep their digest (a GPT's n_loop: 1, one pass through the blocks)
LATER_MODEL_FIELDS = {"n_loop": 1}


class NeuralCoder:
    def __init__(self, rung, device: str | None = None, threads: int | None = None):
        self.rung = rung
        self.tok = rung.tokenizer
        self.unit = "token" if self.tok.kind == "bpe" else "char"
        self.symbols = self.tok.vocab_size  # the width of the tokens' rows (end-of-text's included)
        self.device = device or str(next(rung.model.parameters()).device)
        # one thread unless asked: a step's work is small, and threads that wait on each other
        # (or on a busy machine) cost more than they share
        self.threads = threads or 1
        if self.unit == "char":
            self.vocab = self.tok.vocab
            self.unseen = streams.Unseen(self.vocab)

    def digest(self) -> str:
        import torch

        h = hashlib.sha256()
        model = {k: v for k, v in asdict(self.rung.config.model).items()
                 if k not in LATER_MODEL_FIELDS or v != LATER_MODEL_FIELDS[k]}
        made = {"kind": self.rung.kind, "model": model, "tokenizer": self.tok.hash}
        if self.rung.canonical is not None:  # another distribution; files of other runs keep their digest
            made["canonical"] = self.rung.canonical.digest
        h.update(json.dumps(made, sort_keys=True).encode())
        for name, value in sorted(self.rung.model.state_dict().items()):
            t = value.detach().to("cpu").contiguous()
            h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\0".encode())
            h.update(t.view(-1).view(torch.uint8).numpy().tobytes())
        return h.hexdigest()

    def made_on(self) -> dict:
        import torch

        if self.device.startswith("cuda"):
            return {"device": "cuda", "gpu": torch.cuda.get_device_name(torch.device(self.device)),
                    "cuda": torch.version.cuda, "torch": torch.__version__}
        return {"device": "cpu", "cpu": _cpu_name(), "isa": torch.backends.cpu.get_cpu_capability(),
                "threads": self.threads, "torch": torch.__version__}

    @contextlib.contextmanager
    def _session(self, batch: int):
        """The model on the coding device in float32, threads fixed and TF32 off while coding."""
        import copy

        import torch

        old = (torch.get_num_threads(), torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        model = self.rung.model
        first = next(model.parameters())
        moved = first.device != torch.device(self.device) or first.dtype != torch.float32
        if moved:
            model = copy.deepcopy(model).to(device=self.device, dtype=torch.float32)
        torch.set_num_threads(self.threads)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        try:
            with torch.no_grad():
                kind = _GPTSteps if self.rung.kind == "gpt" else _MLPSteps
                canonical = self.rung.canonical.to(self.device) if self.rung.canonical is not None else None
                steps = kind(model.eval(), batch, self.tok.vocab_size, self.tok.eot_id, self.device, canonical)
                if self.device.startswith("cuda"):
                    steps.capture()
                yield steps
        finally:
            torch.set_num_threads(old[0])
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old[1], old[2]

    def _run(self, plan: streams.Blocks, code) -> None:
        """Step through the blocks: `code(step, probs)` codes (or decodes) step `step` from the
        (active, V) probabilities and returns the tokens fed next for every block."""
        import torch

        if plan.units == 0:
            return
        with self._session(plan.count) as steps:
            for s in range(plan.length):
                n = plan.active(s)
                tokens = code(s, steps.probs[:n].cpu().numpy())
                if s + 1 < plan.length:
                    steps.feed(torch.as_tensor(tokens, device=self.device))

    def encode(self, text: str, enc, block: int | None = None) -> dict:
        ids = np.asarray(self.tok.encode(text), dtype=np.int64)
        if self.unit == "token" and self.tok.decode(ids) != text:
            raise LadderError("this BPE tokenizer does not give this text back exactly, so the run cannot compress it")
        plan = streams.plan(len(ids), block, BLOCK_UNITS)
        grid = np.full(plan.count * plan.length, self.tok.eot_id, dtype=np.int64)
        grid[: plan.units] = ids
        grid = grid.reshape(plan.count, plan.length)

        def code(s: int, probs: np.ndarray) -> np.ndarray:
            streams.encode_rows(enc, grid[: len(probs), s], probs)
            return grid[:, s]

        self._run(plan, code)
        if self.unit == "char":
            from lmladder.vocab import codepoints

            self.unseen.encode(enc, codepoints(text)[ids == self.vocab.escape_id])
        return {"units": plan.units, "block": plan.length}

    def decode(self, params: dict, dec) -> str:
        plan = streams.Blocks(int(params["units"]), int(params["block"]))
        grid = np.full((plan.count, plan.length), self.tok.eot_id, dtype=np.int64)

        def code(s: int, probs: np.ndarray) -> np.ndarray:
            grid[: len(probs), s] = streams.decode_rows(dec, probs)
            return grid[:, s]

        self._run(plan, code)
        ids = grid.reshape(-1)[: plan.units]
        if np.any(ids == self.tok.eot_id):
            raise LadderError("an end-of-text token decoded inside the text; the file is corrupt")
        if self.unit == "token":
            return self.tok.decode(ids)
        escaped = self.unseen.decode(dec, int((ids == self.vocab.escape_id).sum()))
        return streams.text_of(ids, self.vocab, escaped)


def _cpu_name() -> str:
    import platform

    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
