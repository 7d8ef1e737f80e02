"""The paper's detection result in its modern form: our ResNet stages under torchvision's FPN and Faster R-CNN.

>>> from resnet.detection import fasterrcnn
>>> model = fasterrcnn("resnet50", num_classes=91, weights="resnet50-imagenet.pth")   # doctest: +SKIP

As torchvision does for detection, every BN of the backbone is frozen (batches of a few large images give poor
batch statistics) and only the last ``trainable_layers`` stages are trained.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any

import torch
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from resnet.errors import ConfigError
from resnet.models import create_model, get_spec
from resnet.models.blocks import freeze_batchnorms

TRAINABLE_ORDER = ("layer4", "layer3", "layer2", "layer1", "stem")


class ResNetFPN(nn.Module):
    """Stage outputs C2..C5 of a ResNet through a feature pyramid: ``{"0": P2, ..., "3": P5, "pool": P6}``."""

    def __init__(self, body: nn.Module, out_channels: int = 256) -> None:
        super().__init__()
        self.body = body
        channels = [info.channels for info in body.feature_info]  # type: ignore[union-attr]
        self.fpn = FeaturePyramidNetwork(channels, out_channels, extra_blocks=LastLevelMaxPool())
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        stages = self.body(x)
        return self.fpn(OrderedDict((str(i), feature) for i, feature in enumerate(stages)))


def resnet_fpn_backbone(
    name: str = "resnet50",
    *,
    trainable_layers: int = 3,
    weights: str | os.PathLike[str] | None = None,
    out_channels: int = 256,
    **options: Any,
) -> ResNetFPN:
    """An ImageNet-family ResNet (or plain net) as an FPN backbone with frozen BN and frozen early stages."""
    spec = get_spec(name)
    if spec.family != "imagenet":
        raise ConfigError(f"detection backbones are the ImageNet networks (resnet18 ... resnet152), not {spec.name}")
    if not 0 <= trainable_layers <= 5:
        raise ConfigError(f"trainable_layers must be in [0, 5], got {trainable_layers}")
    body = create_model(name, features_only=True, weights=weights, **options)
    freeze_batchnorms(body)
    trainable = set(TRAINABLE_ORDER[:trainable_layers])
    for module_name, parameter in body.named_parameters():
        stage = module_name.split(".", 1)[0]
        stage = stage if stage.startswith("layer") else "stem"
        parameter.requires_grad_(stage in trainable)
    return ResNetFPN(body, out_channels)


def fasterrcnn(
    name: str = "resnet50",
    num_classes: int = 91,
    *,
    trainable_layers: int = 3,
    weights: str | os.PathLike[str] | None = None,
    **kwargs: Any,
) -> FasterRCNN:
    """torchvision's ``FasterRCNN`` on our ResNet + FPN. ``weights`` initialises the backbone (a torchvision
    ``.pth``, our checkpoint or safetensors; the classifier is dropped); ``kwargs`` go to ``FasterRCNN``
    (``min_size``, ``max_size``, ...). ``num_classes`` counts the background."""
    backbone = resnet_fpn_backbone(name, trainable_layers=trainable_layers, weights=weights)
    return FasterRCNN(backbone, num_classes=num_classes, **kwargs)
