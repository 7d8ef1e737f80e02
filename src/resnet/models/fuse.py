"""Folding batch norm into the preceding convolution for inference: same outputs, one layer fewer per pair.

In eval mode a BN is a per-channel affine map, so ``bn(conv(x))`` equals a convolution with scaled weights and a
bias. Which BN follows which convolution is declared per block class below (a pre-activation block's ``bn1``
*precedes* ``conv1``, so names alone cannot say); inside an ``nn.Sequential`` (projection shortcuts, VGG) any
``Conv2d`` directly followed by a ``BatchNorm2d`` is folded. Torchvision's ResNets fold by the same rules.
"""

from __future__ import annotations

import copy
import itertools

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from resnet.models.blocks import BasicBlock, Bottleneck, PreActBasicBlock, PreActBottleneck
from resnet.models.net import ResNetTrunk

# (convolution, the BN that consumes its output and nothing else) per block class.
_FOLD_PAIRS: dict[type[nn.Module], tuple[tuple[str, str], ...]] = {
    ResNetTrunk: (("conv1", "bn1"),),
    BasicBlock: (("conv1", "bn1"), ("conv2", "bn2")),
    Bottleneck: (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")),
    PreActBasicBlock: (("conv1", "bn2"),),
    PreActBottleneck: (("conv1", "bn2"), ("conv2", "bn3")),
}


def _torchvision_pairs() -> dict[type[nn.Module], tuple[tuple[str, str], ...]]:
    from torchvision.models import resnet as tv  # imported when folding, not with resnet.models

    return {
        tv.ResNet: _FOLD_PAIRS[ResNetTrunk],
        tv.BasicBlock: _FOLD_PAIRS[BasicBlock],
        tv.Bottleneck: _FOLD_PAIRS[Bottleneck],
    }


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    return (
        isinstance(conv, nn.Conv2d)
        and isinstance(bn, nn.BatchNorm2d)
        and bn.track_running_stats
        and bn.running_mean is not None
        and conv.out_channels == bn.num_features
    )


def _fold_module(module: nn.Module, pairs: dict[type[nn.Module], tuple[tuple[str, str], ...]]) -> int:
    folded = 0
    for cls, names in pairs.items():
        if isinstance(module, cls):
            for conv_name, bn_name in names:
                conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
                if conv is not None and bn is not None and _foldable(conv, bn):
                    setattr(module, conv_name, fuse_conv_bn_eval(conv, bn))
                    setattr(module, bn_name, nn.Identity())
                    folded += 1
            break
    if isinstance(module, nn.Sequential):
        keys = list(module._modules)
        for first, second in itertools.pairwise(keys):
            conv, bn = module._modules[first], module._modules[second]
            if conv is not None and bn is not None and _foldable(conv, bn):
                module._modules[first] = fuse_conv_bn_eval(conv, bn)  # type: ignore[type-var, arg-type]  # checked by _foldable
                module._modules[second] = nn.Identity()
                folded += 1
    return folded


def fuse_conv_bn(model: nn.Module, inplace: bool = False) -> nn.Module:
    """An eval-mode copy of ``model`` (or ``model`` itself with ``inplace``) with every foldable BN folded.

    The result is for inference only: its outputs equal the eval-mode model's up to float rounding, and the folded
    BNs are gone (``nn.Identity``), so it cannot be trained or loaded with the original state dict.
    ``model.folded_batchnorms`` tells how many were folded.
    """
    fused = model if inplace else copy.deepcopy(model)
    fused.eval()
    pairs = {**_FOLD_PAIRS, **_torchvision_pairs()}
    folded = sum(_fold_module(module, pairs) for module in list(fused.modules()))
    fused.folded_batchnorms = folded  # type: ignore[assignment]  # an int attribute on the module
    return fused


def count_batchnorms(model: nn.Module) -> int:
    """Batch-norm layers left in ``model`` (those that no convolution precedes directly, after folding)."""
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
