"""Shortcut connections, options A/B/C of the paper (Section 3.3 and Table 3), as small explicit modules.

A block holds exactly one of these under the attribute ``downsample`` (torchvision's name, so that weights load),
or ``None`` for a plain network, which has no shortcut and no addition at all.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SHORTCUT_OPTIONS = ("A", "B", "C")


class IdentityShortcut(nn.Module):
    """Parameter-free identity: the block's input is added unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class ZeroPadShortcut(nn.Module):
    """Option A: subsample by the stride, append zero channels. Adds no parameters.

    The zeros go after the input channels (as fb.resnet.torch's concatenation with a zeroed copy does).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(
                f"option A shortcuts can only add channels, not remove them ({in_channels} -> {out_channels}); "
                "use shortcut='B' or 'C'"
            )
        self.stride = stride
        self.extra_channels = out_channels - in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.extra_channels > 0:
            x = F.pad(x, [0, 0, 0, 0, 0, self.extra_channels])
        return x

    def extra_repr(self) -> str:
        return f"stride={self.stride}, extra_channels={self.extra_channels}"


class ProjectionShortcut(nn.Sequential):
    """Options B and C: a strided 1x1 convolution and batch norm (keys ``0.*`` and ``1.*`` as in torchvision).

    ``norm=False`` leaves the bare convolution (key ``0.*``): pre-activation nets project an input that is already
    normalised, and the authors' code (preresnet.lua, resnet-1k-layers) adds no BN there.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, norm: bool = True) -> None:
        conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)
        super().__init__(conv, nn.BatchNorm2d(out_channels)) if norm else super().__init__(conv)


def make_shortcut(
    option: str | None, in_channels: int, out_channels: int, stride: int, norm: bool = True
) -> nn.Module | None:
    """The shortcut a block needs under ``option`` (None: plain network, no shortcut); ``norm`` as in
    :class:`ProjectionShortcut`."""
    if option is None:
        return None
    changes_shape = stride != 1 or in_channels != out_channels
    if option == "C" or (option == "B" and changes_shape):
        return ProjectionShortcut(in_channels, out_channels, stride, norm=norm)
    if option == "A" and changes_shape:
        return ZeroPadShortcut(in_channels, out_channels, stride)
    if option in SHORTCUT_OPTIONS:
        return IdentityShortcut()
    raise ValueError(f"unknown shortcut option {option!r}; expected one of {SHORTCUT_OPTIONS}")
