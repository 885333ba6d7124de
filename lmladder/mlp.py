"""The MLP rung: Bengio, Ducharme, Vincent and Jauvin, "A Neural Probabilistic Language Model",
JMLR 3 (2003) 1137-1155.

Each of the last n = block_size units is looked up in one shared embedding matrix C (V x m,
m ~ 30); the n vectors are concatenated into x (n m), and

    y = b + W x + U tanh(d + H x)        P(next | context) = softmax(y)

with W the optional direct connections from the embeddings to the output (the paper's
eq. 1). A context shorter than n (at the start of a document) is padded on the left with the
end-of-text id, which is also the id put before every document, so padding reads as "before
the document".

Same contract as the GPT: forward(idx (B, T)) -> logits (B, T, V) for every position, so the
trainer, the evaluator and the sampler serve both.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn import functional as F

from lmladder.config import MLPConfig  # with the run's other settings; here too, beside its model


class MLP(nn.Module):
    def __init__(self, config: MLPConfig):
        super().__init__()
        self.config = config
        n, m = config.block_size, config.n_embd
        self.C = nn.Embedding(config.vocab_size, m)  # (V, m)
        self.H = nn.Linear(n * m, config.n_hidden)  # hidden layer, bias d
        self.U = nn.Linear(config.n_hidden, config.vocab_size)  # output, bias b
        self.W = nn.Linear(n * m, config.vocab_size, bias=False) if config.direct else None
        self.drop = nn.Dropout(config.dropout)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, V) of the next unit after each position of `idx` (B, T)."""
        B, T = idx.shape
        n = self.config.block_size
        padded = F.pad(idx, (n - 1, 0), value=self.config.pad_id)  # (B, T + n - 1)
        windows = padded.unfold(1, n, 1)  # (B, T, n): the n units ending at each position
        x = self.C(windows).view(B, T, -1)  # (B, T, n m)
        x = self.drop(x)
        y = self.U(self.drop(torch.tanh(self.H(x))))  # (B, T, V)
        if self.W is not None:
            y = y + self.W(x)
        return y

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self) -> float:
        return 6 * (self.num_params() - self.C.weight.numel())
