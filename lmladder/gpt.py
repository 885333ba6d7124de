"""The GPT rung's model: a pre-norm GPT-2 ("Language Models are Unsupervised Multitask
Learners", Radford et al. 2019), the model only.

Token + position embeddings (or, with position="rotary", rotary position embeddings: Su et al. 2021,
"RoFormer", which turn each head's queries and keys by angles proportional to their position, so
attention sees only relative positions), `n_layer` blocks of (LayerNorm -> causal self-attention ->
residual, LayerNorm -> MLP -> residual), gone through n_loop times (1: GPT-2; more: depth with
shared weights, as Dehghani et al. 2019's universal transformer), a final LayerNorm and a
language-model head that shares its weight with the token embedding. Attention is
`F.scaled_dot_product_attention` with a causal mask (flash attention on a GPU). Under autocast the
stream between blocks stays float32 unless residual_dtype is "autocast" (then it is bf16 on a GPU,
as in the gpt2-124m preset: the same weights, half the memory traffic of the adds and layer norms).
Parameter names follow GPT-2's checkpoint layout (transformer.wte, transformer.h.0.attn.c_attn,
...), so loading GPT-2 weights is a loop over names (GPT-2's Conv1D weights are the transposes of
these Linear ones).

Shapes: B batch, T time (<= block_size), C = n_embd, nh = n_head, hs = C // nh, V vocab.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn as nn
from torch.nn import functional as F

from lmladder.config import GPTConfig  # with the run's other settings; here too, beside its model
from lmladder.precision import compute_dtype


class Rotary(nn.Module):
    """Rotary position embeddings: the two halves of each head's query and key, read as the real
    and imaginary parts of hs/2 complex numbers, are turned by angle pos * base^(-2i/hs) (the
    GPT-NeoX layout). The angles' cosines and sines are kept for every position of the block,
    in float32, outside the state dict. They are computed on the CPU, whatever device the model
    is built on: the same tables everywhere, and none of torch's reference ops, which a build on
    the meta device (lmladder.neural.refuse_misfit) would run and which import torch._dynamo."""

    def __init__(self, head_size: int, block_size: int, base: float = 10000.0):
        super().__init__()
        cpu, device = torch.device("cpu"), torch.get_default_device()
        inv_freq = base ** (-torch.arange(0, head_size, 2, dtype=torch.float32, device=cpu) / head_size)  # (hs/2,)
        angles = torch.outer(torch.arange(block_size, dtype=torch.float32, device=cpu), inv_freq)  # (block, hs/2)
        self.register_buffer("cos", angles.cos().to(device), persistent=False)
        self.register_buffer("sin", angles.sin().to(device), persistent=False)

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """x (B, nh, T, hs) at positions pos (T,), turned."""
        cos, sin = self.cos[pos].to(x.dtype), self.sin[pos].to(x.dtype)  # (T, hs/2)
        a, b = x.chunk(2, dim=-1)
        return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)


class Linear(nn.Linear):
    """nn.Linear (the same parameters and state dict) whose product, while the model trains, may
    be another function of (x, weight, bias) with the same value: GPT.use_fp8's."""

    product: Callable | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.product is not None and self.training:
            return self.product(x, self.weight, self.bias)
        return super().forward(x)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head = config.n_head
        self.dropout = config.dropout
        self.c_attn = Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v at once
        self.c_proj = Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        hs = config.n_embd // config.n_head
        self.rotary = Rotary(hs, config.block_size) if config.position == "rotary" else None

    def heads(self, x: torch.Tensor, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries, keys and values (each (B, nh, T, hs)) of x (B, T, C) at positions pos (T,)."""
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)  # each (B, T, C)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if self.rotary is not None:
            q, k = self.rotary(q, pos), self.rotary(k, pos)
        return q, k, v

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.heads(x, pos)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0,
                                           is_causal=True)  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU(approximate="tanh")  # GPT-2's gelu
        self.c_proj = Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)
        # fused_forward(x, c_fc, c_proj): the same function in one go (GPT.use_fused_mlp), or None
        self.fused_forward: Callable | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused_forward is not None:
            return self.dropout(self.fused_forward(x, self.c_fc, self.c_proj))
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))  # (B, T, 4C) inside, (B, T, C) out


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), pos)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),  # (V, C)
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
        ))
        if config.position == "learned":
            self.transformer.wpe = nn.Embedding(config.block_size, config.n_embd)  # (block_size, C)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # weight tying, as GPT-2
        self.apply(self._init_weights)
        # GPT-2's scaled init of the projections into the residual stream: std 0.02 / sqrt(2 L), L the
        # blocks of their own (n_loop > 1 adds each twice as often; measured so: loops-h200-2026-12-02)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx: torch.Tensor, head: bool = True) -> torch.Tensor:
        """Logits (B, T, V) of the next unit after each position of `idx` (B, T); with head=False
        what the head reads instead: the final layer norm's output (B, T, C)."""
        h = self.hidden(idx)
        return self.lm_head(h) if head else h

    def hidden(self, idx: torch.Tensor) -> torch.Tensor:
        T = idx.shape[1]
        if T > self.config.block_size:
            raise ValueError(f"a context of {T} is longer than block_size {self.config.block_size}")
        pos = torch.arange(T, device=idx.device)  # (T,)
        x = self.transformer.drop(self.embed(idx, pos))  # (B, T, C)
        for block in self.blocks():
            x = block(x, pos)
        return self.transformer.ln_f(x)

    def blocks(self) -> list[Block]:
        """The blocks in the order a position goes through them: transformer.h, n_loop times over
        (config.depth of them; the same weights each pass)."""
        return list(self.transformer.h) * self.config.n_loop

    def embed(self, idx: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """The input of the first block: token embeddings (B, T, C), plus the position table's
        rows `pos` (T,) with learned positions; in the autocast dtype under autocast with
        residual_dtype "autocast" (the blocks' adds then keep it so)."""
        x = self.transformer.wte(idx)
        if "wpe" in self.transformer:
            x = x + self.transformer.wpe(pos)
        return x.to(compute_dtype(x)) if self.config.residual_dtype == "autocast" else x

    def use_fused_mlp(self, fused_forward: Callable | None) -> None:
        """Run every block's MLP as fused_forward(x, c_fc, c_proj), a kernel that computes
        c_proj(gelu(c_fc(x))) in one go (the trainer passes lmladder.kernels.fusedmlp.fused_mlp:
        GELU in the matrix products' epilogues), or with None as three modules again. The
        parameters and the function are the same; the model only holds what it is given."""
        for block in self.transformer.h:
            block.mlp.fused_forward = fused_forward

    def use_fp8(self, product: Callable | None) -> None:
        """While training, run the blocks' four products (c_attn, attn.c_proj, c_fc, mlp.c_proj) as
        product(x, weight, bias) (the trainer passes lmladder.kernels.fp8.fp8_linear), or with None
        as plain products again. Evaluation always uses the plain ones."""
        for block in self.transformer.h:
            for linear in (block.attn.c_attn, block.attn.c_proj, block.mlp.c_fc, block.mlp.c_proj):
                linear.product = product

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameters, counting the tied wte/lm_head once; without the position table by default
        (it does no multiplications)."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.transformer.wpe.weight.numel() if non_embedding and "wpe" in self.transformer else n

    def flops_per_token(self) -> float:
        """Training FLOPs per token: 6N for the weights (forward + backward) plus the attention
        scores and weighted sums, 12 L C T (PaLM's appendix B; nanoGPT counts the same way); with
        n_loop > 1 the blocks' weights and L count once a pass."""
        c = self.config
        shared = sum(p.numel() for p in self.transformer.h.parameters()) * (c.n_loop - 1)
        return 6 * (self.num_params() + shared) + 12 * c.depth * c.n_embd * c.block_size
