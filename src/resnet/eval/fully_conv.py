"""Fully-convolutional testing (Section 3.4 of the paper, after Simonyan & Zisserman).

The classifier becomes a 1x1 convolution over the last feature map, so a network trained on fixed crops scores
whole images of any size: one score per position of the map. ``fully_convolutional(model)`` shares the weights
with ``model`` (no copy); at the training resolution the mean of its score map equals ``model``'s logits, since
the global average pooling and the linear classifier commute.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from resnet.errors import ConfigError


class FullyConvolutional(nn.Module):
    """A classifier network whose head is applied at every position: ``forward`` gives (N, classes, h, w)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        fc = getattr(model, "fc", None)
        if not isinstance(fc, nn.Linear) or not hasattr(model, "forward_features"):
            raise ConfigError(
                f"fully-convolutional testing needs a ResNet or plain network with a linear classifier 'fc', "
                f"got {type(model).__name__}"
            )
        self.model: Any = model  # a ResNet: forward_features and fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.model.forward_features(x)
        fc = self.model.fc
        assert isinstance(fc, nn.Linear)
        return F.conv2d(features, fc.weight[:, :, None, None], fc.bias)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """Scores averaged over positions: (N, classes)."""
        return self.forward(x).mean(dim=(2, 3))


def fully_convolutional(model: nn.Module) -> FullyConvolutional:
    """The fully-convolutional form of ``model`` (weights shared with it)."""
    return FullyConvolutional(model)
