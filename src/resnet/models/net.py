"""One network module assembled from an ``ArchSpec``: stem, stages of blocks, global average pooling, classifier.

Construction is a pure function of the spec and the options: ``stage_plan`` computes every block's channels and
stride up front, so no builder state is threaded through (cf. torchvision's ``self.inplanes``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from resnet.errors import InputError
from resnet.models.blocks import block_class, drop_path_rates
from resnet.models.shortcuts import make_shortcut
from resnet.models.specs import ArchSpec

MAX_STAGES = 4


@dataclass(frozen=True)
class BlockPlan:
    """One block: its channels, stride, and where a pre-activation unit puts its first BN-ReLU (``preact``)."""

    in_channels: int
    width: int
    out_channels: int
    stride: int
    preact: str = "branch"


@dataclass(frozen=True)
class FeatureInfo:
    """One stage output usable as a backbone feature: its module name, channels and stride w.r.t. the input."""

    module: str
    channels: int
    reduction: int


def first_unit_preact(spec: ArchSpec, stage_index: int) -> str:
    """He et al. 2016: a stage's first unit pre-activates once for both paths, except right after a stem that
    already ends in BN-ReLU (ImageNet), where it does not pre-activate again."""
    return "none" if stage_index == 0 and spec.stem.preact_norm else "both"


def stage_plan(spec: ArchSpec) -> list[list[BlockPlan]]:
    """Channels and stride of every block; the first block of every stage but the first halves the resolution."""
    plan: list[list[BlockPlan]] = []
    in_channels = spec.stem_width
    for stage_index, (num_blocks, width) in enumerate(zip(spec.depths, spec.widths, strict=True)):
        out_channels = width * spec.expansion
        stage = [
            BlockPlan(
                in_channels=in_channels if block_index == 0 else out_channels,
                width=width,
                out_channels=out_channels,
                stride=2 if stage_index > 0 and block_index == 0 else 1,
                preact=first_unit_preact(spec, stage_index) if block_index == 0 else "branch",
            )
            for block_index in range(num_blocks)
        ]
        plan.append(stage)
        in_channels = out_channels
    return plan


def init_weights(model: nn.Module, zero_init_residual: bool) -> None:
    """He (Kaiming) normal for convolutions as in the paper, BN weight 1 / bias 0."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d | nn.GroupNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    if zero_init_residual:
        for module in model.modules():
            zero_init_last = getattr(module, "zero_init_last", None)
            if callable(zero_init_last):
                zero_init_last()


def check_images(x: torch.Tensor, arch: str, in_chans: int) -> None:
    """A network's input must be a float batch ``(N, in_chans, H, W)``: anything else is one :class:`InputError`."""
    if x.dim() != 4 or x.shape[1] != in_chans:
        raise InputError(
            f"{arch} expects a batch of images shaped (N, {in_chans}, H, W), got a tensor of shape {list(x.shape)}"
        )
    if not x.is_floating_point():
        raise InputError(
            f"{arch} expects floating-point images, got {x.dtype}; convert uint8 images with x.float() / 255 and "
            "normalise them as in training"
        )


class ResNetTrunk(nn.Module):
    """Stem and stages, shared by the classifier and the feature extractor."""

    def __init__(
        self,
        spec: ArchSpec,
        *,
        in_chans: int = 3,
        shortcut: str | None = None,
        stride_on: str = "3x3",
        preact: bool = False,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.arch = spec.name
        self.in_chans = in_chans
        self.num_stages = len(spec.depths)
        stem = spec.stem
        self.conv1 = nn.Conv2d(
            in_chans, spec.stem_width, stem.kernel, stride=stem.stride, padding=stem.kernel // 2, bias=False
        )
        # A pre-activation CIFAR net feeds the stem convolution straight into the first block's own BN-ReLU.
        stem_norm = stem.preact_norm or not preact
        self.bn1 = nn.BatchNorm2d(spec.stem_width) if stem_norm else nn.Identity()
        self.relu = nn.ReLU(inplace=True) if stem_norm else nn.Identity()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1) if stem.maxpool else nn.Identity()

        block = block_class(spec.block, preact)
        block_kwargs: dict[str, str] = {"stride_on": stride_on} if spec.block == "bottleneck" else {}
        reduction = stem.stride * (2 if stem.maxpool else 1)
        feature_info: list[FeatureInfo] = []
        plan = stage_plan(spec)
        rates = iter(drop_path_rates(drop_path_rate, sum(len(stage) for stage in plan)))
        for stage_index in range(MAX_STAGES):
            name = f"layer{stage_index + 1}"
            if stage_index >= len(plan):
                # Unused stage slot: keeps the forward pass fixed (scriptable) and the state-dict keys torchvision's.
                self.add_module(name, nn.Identity())
                continue
            # Pre-activation units project an already normalised input: no BN on the projection (preresnet.lua).
            blocks = [
                block(
                    p.in_channels,
                    p.width,
                    p.stride,
                    make_shortcut(shortcut, p.in_channels, p.out_channels, p.stride, norm=not preact),
                    drop_path=next(rates),
                    **block_kwargs,
                    **({"preact": p.preact} if preact else {}),
                )
                for p in plan[stage_index]
            ]
            self.add_module(name, nn.Sequential(*blocks))
            reduction *= plan[stage_index][0].stride
            feature_info.append(FeatureInfo(name, plan[stage_index][-1].out_channels, reduction))

        self.num_features = feature_info[-1].channels
        # Pre-activation nets end with BN-ReLU, since their blocks end with a bare sum.
        self.post_norm = (
            nn.Sequential(nn.BatchNorm2d(self.num_features), nn.ReLU(inplace=True)) if preact else nn.Identity()
        )
        self.feature_info: list[FeatureInfo] = feature_info

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The output of every stage (C2..C5 for ImageNet nets, the three stages for CIFAR nets)."""
        check_images(x, self.arch, self.in_chans)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outputs: list[torch.Tensor] = []
        x = self.layer1(x)
        outputs.append(x)
        x = self.layer2(x)
        outputs.append(x)
        x = self.layer3(x)
        outputs.append(x)
        if self.num_stages == 4:  # a literal: TorchScript cannot read module globals
            x = self.layer4(x)
            outputs.append(x)
        outputs[-1] = self.post_norm(outputs[-1])
        return outputs

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The trunk's output before pooling, shaped (N, num_features, H/stride, W/stride)."""
        return self.forward_stages(x)[-1]


class ResNet(ResNetTrunk):
    """A residual network of the paper, or its plain twin (``shortcut=None``), with a linear classifier."""

    def __init__(
        self,
        spec: ArchSpec,
        *,
        num_classes: int,
        zero_init_residual: bool = False,
        drop_rate: float = 0.0,
        **trunk_options,
    ):
        super().__init__(spec, **trunk_options)
        self.num_classes = num_classes
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        # Dropout before the classifier (timm's drop_rate); no parameters, so state dicts are unchanged.
        self.dropout = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.fc = nn.Linear(self.num_features, num_classes)
        init_weights(self, zero_init_residual)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(torch.flatten(self.avgpool(features), 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh classifier for fine-tuning on another label set."""
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes)


class ResNetFeatures(ResNetTrunk):
    """Backbone: returns the list of stage outputs; ``feature_info`` gives their channels and strides.

    Its state-dict keys are the classifier's minus ``fc``, so a trained classifier's trunk loads into it.
    """

    def __init__(self, spec: ArchSpec, *, zero_init_residual: bool = False, **trunk_options) -> None:
        super().__init__(spec, **trunk_options)
        init_weights(self, zero_init_residual)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.forward_stages(x)
