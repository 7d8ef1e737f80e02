"""Residual blocks (Fig. 2 and Fig. 5 of the paper), their pre-activation twins (He et al. 2016), and the layers
they are built with: stochastic depth (drop-path) and a batch norm frozen to its running statistics.

A block receives its shortcut as a ready-made module (see ``shortcuts.py``), or ``None`` for the plain twin, whose
forward pass is the same stack of layers without the addition. Attribute names follow torchvision so that its
state dicts load unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DropPath(nn.Module):
    """Stochastic depth (Huang et al. 2016) as timm's drop-path: zero the whole input of a sample with probability
    ``rate`` in training and scale survivors by 1/(1-rate), so that the expected output equals the eval-mode
    output, where the module is the identity. Rates grow linearly with depth (:func:`drop_path_rates`)."""

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


class FrozenBatchNorm2d(nn.BatchNorm2d):
    """A BatchNorm that always normalises with its running statistics and never updates them (frozen fine-tuning
    stages, detection backbones).

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


def branch_dropper(drop_path: float) -> nn.Module:
    """Drop-path on the residual branch, or the identity (no state-dict keys either way)."""
    return DropPath(drop_path) if drop_path > 0 else nn.Identity()


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)


PREACT_PLACES = ("branch", "both", "none")


def preactivation(channels: int, preact: str) -> tuple[nn.Module, nn.Module]:
    """A pre-activation unit's first BN and ReLU, or two identities for ``preact="none"`` (no state-dict keys)."""
    if preact not in PREACT_PLACES:
        raise ValueError(f"preact must be one of {', '.join(PREACT_PLACES)}, got {preact!r}")
    if preact == "none":
        return nn.Identity(), nn.Identity()
    return nn.BatchNorm2d(channels), nn.ReLU(inplace=True)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions; the stride sits on the first."""

    expansion = 1

    def __init__(
        self, in_channels: int, width: int, stride: int, shortcut: nn.Module | None, drop_path: float = 0.0
    ) -> None:
        super().__init__()
        self.drop_path = branch_dropper(drop_path)
        self.conv1 = conv3x3(in_channels, width, stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(width, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            out = self.drop_path(out) + self.downsample(x)
        return self.relu(out)

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.bn2.weight)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4).

    ``stride_on="1x1"`` puts a downsampling block's stride on the first 1x1 convolution as in the paper (v1);
    ``"3x3"`` puts it on the 3x3 convolution as torchvision does (v1.5: more MACs, better accuracy).
    """

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        width: int,
        stride: int,
        shortcut: nn.Module | None,
        stride_on: str = "3x3",
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.drop_path = branch_dropper(drop_path)
        out_channels = width * self.expansion
        stride_1x1, stride_3x3 = (stride, 1) if stride_on == "1x1" else (1, stride)
        self.conv1 = conv1x1(in_channels, width, stride_1x1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride_3x3)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, out_channels)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            out = self.drop_path(out) + self.downsample(x)
        return self.relu(out)

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.bn3.weight)


class PreActBasicBlock(nn.Module):
    """BN-ReLU-conv ordering; the sum is not followed by a ReLU, so the identity path stays clean.

    ``preact`` says where the unit's first BN-ReLU sits (He et al. 2016, as fb.resnet.torch's preresnet.lua):
    ``"branch"`` (most units): on the residual branch only, the shortcut adds the raw input; ``"both"`` (the first
    unit of a stage, whose shortcut changes the shape, and the first after the bare CIFAR stem): once, on the
    input of both paths; ``"none"`` (the first unit after the ImageNet stem, which ends in BN-ReLU): not at all.
    """

    expansion = 1

    def __init__(
        self,
        in_channels: int,
        width: int,
        stride: int,
        shortcut: nn.Module | None,
        drop_path: float = 0.0,
        preact: str = "branch",
    ) -> None:
        super().__init__()
        self.drop_path = branch_dropper(drop_path)
        self.bn1, self.relu1 = preactivation(in_channels, preact)
        self.conv1 = conv3x3(in_channels, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = shortcut
        self.shortcut_takes_preact = preact != "branch"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        preact = self.relu1(self.bn1(x))
        out = self.conv1(preact)
        out = self.conv2(self.relu(self.bn2(out)))
        if self.downsample is not None:
            out = self.drop_path(out) + self.downsample(preact if self.shortcut_takes_preact else x)
        return out

    def zero_init_last(self) -> None:
        # The branch ends in a convolution, not a BN: zero it so the block starts as the identity.
        nn.init.zeros_(self.conv2.weight)


class PreActBottleneck(nn.Module):
    """Pre-activation bottleneck; ``stride_on`` as in ``Bottleneck``, ``preact`` as in ``PreActBasicBlock``."""

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        width: int,
        stride: int,
        shortcut: nn.Module | None,
        stride_on: str = "3x3",
        drop_path: float = 0.0,
        preact: str = "branch",
    ) -> None:
        super().__init__()
        self.drop_path = branch_dropper(drop_path)
        out_channels = width * self.expansion
        stride_1x1, stride_3x3 = (stride, 1) if stride_on == "1x1" else (1, stride)
        self.bn1, self.relu1 = preactivation(in_channels, preact)
        self.conv1 = conv1x1(in_channels, width, stride_1x1)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride_3x3)
        self.bn3 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = shortcut
        self.shortcut_takes_preact = preact != "branch"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        preact = self.relu1(self.bn1(x))
        out = self.conv1(preact)
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        if self.downsample is not None:
            out = self.drop_path(out) + self.downsample(preact if self.shortcut_takes_preact else x)
        return out

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.conv3.weight)


def block_class(block: str, preact: bool) -> type[nn.Module]:
    """The block module for a spec's block type."""
    classes: dict[tuple[str, bool], type[nn.Module]] = {
        ("basic", False): BasicBlock,
        ("basic", True): PreActBasicBlock,
        ("bottleneck", False): Bottleneck,
        ("bottleneck", True): PreActBottleneck,
    }
    return classes[(block, preact)]
