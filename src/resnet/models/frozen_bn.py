"""Batch normalisation frozen to its running statistics (frozen fine-tuning stages, detection backbones)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FrozenBatchNorm2d(nn.BatchNorm2d):
    """A BatchNorm that always normalises with its running statistics and never updates them.

    Same parameters and buffers as ``nn.BatchNorm2d`` (state dicts unchanged), unlike torchvision's
    ``FrozenBatchNorm2d`` which drops ``num_batches_tracked``.
    """

    @classmethod
    def convert(cls, bn: nn.BatchNorm2d) -> FrozenBatchNorm2d:
        frozen = cls(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
        frozen.load_state_dict(bn.state_dict())
        frozen.to(bn.weight.device if bn.weight is not None else "cpu")
        for parameter in frozen.parameters():
            parameter.requires_grad_(False)
        return frozen

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)


def freeze_batchnorms(module: nn.Module) -> nn.Module:
    """Replace every ``BatchNorm2d`` below ``module`` by a :class:`FrozenBatchNorm2d` (in place)."""
    for name, child in list(module.named_modules()):
        if isinstance(child, nn.BatchNorm2d) and not isinstance(child, FrozenBatchNorm2d) and name:
            owner_name, _, leaf = name.rpartition(".")
            owner = module.get_submodule(owner_name) if owner_name else module
            setattr(owner, leaf, FrozenBatchNorm2d.convert(child))
    return module
