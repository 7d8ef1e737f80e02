"""Stochastic depth (Huang et al. 2016) as timm's drop-path: a residual branch is dropped per sample in training.

A dropped sample's branch is zero, a kept one is scaled by ``1 / keep_prob`` so that the expected output equals
the eval-mode output, where the module is the identity. Rates grow linearly with depth (:func:`drop_path_rates`).
"""

from __future__ import annotations

import torch
from torch import nn


class DropPath(nn.Module):
    """Zero the whole input of a sample with probability ``rate`` in training; scale survivors by 1/(1-rate)."""

    def __init__(self, rate: float = 0.0) -> None:
        super().__init__()
        self.rate = float(rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        shape = [x.shape[0]] + [1] * (x.dim() - 1)
        mask = x.new_empty(shape).bernoulli_(keep)
        return x * mask.div_(keep)

    def extra_repr(self) -> str:
        return f"rate={self.rate:g}"


def drop_path_rates(rate: float, num_blocks: int) -> list[float]:
    """``rate * i / (num_blocks - 1)`` for block ``i`` (timm's linear rule: first block 0, last block ``rate``)."""
    if num_blocks <= 1:
        return [rate] * num_blocks
    return [rate * i / (num_blocks - 1) for i in range(num_blocks)]
