"""Dataset statistics: channel / pixel means and standard deviations, per-class counts."""

from __future__ import annotations

import torch
from torch import Tensor


def _chunks(x: Tensor, size: int = 4096):
    for start in range(0, len(x), size):
        yield x[start : start + size].to(torch.float64)


def channel_mean_std(x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and std (in [0, 255] units) of uint8 images ``(N, C, H, W)``, computed in chunks."""
    channels = x.shape[1]
    total = torch.zeros(channels, dtype=torch.float64)
    total_sq = torch.zeros(channels, dtype=torch.float64)
    for chunk in _chunks(x):
        total += chunk.sum(dim=(0, 2, 3)).cpu()
        total_sq += chunk.square().sum(dim=(0, 2, 3)).cpu()
    count = x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    std = (total_sq / count - mean.square()).clamp_min(1e-12).sqrt()
    return mean.float(), std.float()


def pixel_mean(x: Tensor) -> Tensor:
    """The per-pixel mean image ``(C, H, W)`` (the paper's CIFAR normalisation subtracts it)."""
    total = torch.zeros(x.shape[1:], dtype=torch.float64)
    for chunk in _chunks(x):
        total += chunk.sum(dim=0).cpu()
    return (total / len(x)).float()


def class_counts(labels: Tensor, num_classes: int) -> list[int]:
    """Images per class."""
    return torch.bincount(labels.cpu(), minlength=num_classes).tolist()
