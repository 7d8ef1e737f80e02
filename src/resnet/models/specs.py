"""The paper's networks as data: one table maps a name to its architecture.

Like fb.resnet.torch's depth table: a network is (block type, blocks per stage, stage widths, stem), nothing more.
Everything else (shortcut option, pre-activation, stride placement) is an option of the builder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

BlockType = Literal["basic", "bottleneck"]
Family = Literal["cifar", "imagenet", "vgg"]

BOTTLENECK_EXPANSION = 4


@dataclass(frozen=True)
class ArchSpec:
    """One architecture of the paper (or of its family), independent of options."""

    name: str
    family: Family
    depth: int
    block: BlockType
    depths: tuple[int, ...]  # blocks per stage
    widths: tuple[int, ...]  # bottleneck (inner) width of each stage; output is widths * expansion
    stem_width: int
    residual: bool
    num_classes: int
    input_size: tuple[int, int, int]

    @property
    def expansion(self) -> int:
        return BOTTLENECK_EXPANSION if self.block == "bottleneck" else 1

    @property
    def default_shortcut(self) -> str | None:
        """Option A for CIFAR (as the paper's CIFAR nets), B for ImageNet; plain nets have none."""
        if not self.residual:
            return None
        return "A" if self.family == "cifar" else "B"


# ImageNet family (Table 1): depth -> (block, blocks per stage).
IMAGENET_DEPTHS: dict[int, tuple[BlockType, tuple[int, ...]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
IMAGENET_WIDTHS = (64, 128, 256, 512)

# CIFAR family (Section 4.2): depth 6n+2, three stages of n basic blocks on 16/32/64 filters.
CIFAR_PAPER_DEPTHS = (20, 32, 44, 56, 110, 1202)
CIFAR_WIDTHS = (16, 32, 64)

VGG19_CONFIG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
)  # fmt: skip


def imagenet_spec(depth: int, residual: bool) -> ArchSpec:
    block, depths = IMAGENET_DEPTHS[depth]
    return ArchSpec(
        name=f"{'resnet' if residual else 'plain'}{depth}",
        family="imagenet",
        depth=depth,
        block=block,
        depths=depths,
        widths=IMAGENET_WIDTHS,
        stem_width=64,
        residual=residual,
        num_classes=1000,
        input_size=(3, 224, 224),
    )


def cifar_spec(depth: int, residual: bool) -> ArchSpec:
    if depth < 8 or (depth - 2) % 6 != 0:
        raise ValueError(f"CIFAR networks have depth 6n+2 with n >= 1 (8, 14, 20, ...), got {depth}")
    n = (depth - 2) // 6
    return ArchSpec(
        name=f"{'resnet' if residual else 'plain'}{depth}",
        family="cifar",
        depth=depth,
        block="basic",
        depths=(n, n, n),
        widths=CIFAR_WIDTHS,
        stem_width=16,
        residual=residual,
        num_classes=10,
        input_size=(3, 32, 32),
    )


VGG19_SPEC = ArchSpec(
    name="vgg19",
    family="vgg",
    depth=19,
    block="basic",
    depths=(),
    widths=(),
    stem_width=64,
    residual=False,
    num_classes=1000,
    input_size=(3, 224, 224),
)


def _build_table() -> dict[str, ArchSpec]:
    table: dict[str, ArchSpec] = {}
    for residual in (True, False):
        for depth in CIFAR_PAPER_DEPTHS:
            spec = cifar_spec(depth, residual)
            table[spec.name] = spec
        for depth in IMAGENET_DEPTHS:
            spec = imagenet_spec(depth, residual)
            table[spec.name] = spec
    table[VGG19_SPEC.name] = VGG19_SPEC
    return table


ARCHITECTURES: dict[str, ArchSpec] = _build_table()

_DEPTH_NAME = re.compile(r"^(resnet|plain)(\d+)$")


def lookup_spec(name: str) -> ArchSpec | None:
    """The spec for a registered name, or for any other CIFAR depth 6n+2 (``resnet8``, ``plain14``...)."""
    spec = ARCHITECTURES.get(name)
    if spec is not None:
        return spec
    match = _DEPTH_NAME.match(name)
    if match is None:
        return None
    depth = int(match.group(2))
    if depth in IMAGENET_DEPTHS or depth < 8 or (depth - 2) % 6 != 0:
        return None
    return cifar_spec(depth, residual=match.group(1) == "resnet")
