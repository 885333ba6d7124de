"""Which dtype a tensor's matrix products run in: what the model (lmladder.gpt) and the GPU kernels
(lmladder.kernels) both need to know, kept here so that neither imports the other."""

from __future__ import annotations

import torch


def compute_dtype(t: torch.Tensor) -> torch.dtype:
    """The dtype a matrix product of t runs in here: autocast's when it is on for t's device, else t's."""
    kind = t.device.type
    return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else t.dtype
