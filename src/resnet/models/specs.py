"""The paper's networks as data: one table maps a name to its architecture.

Like fb.resnet.torch's depth table: a network is (block type, blocks per stage, stage widths, stem), nothing more.
Everything else (shortcut option, pre-activation, stride placement) is an option of the builder, whose defaults
per (family, block) are the authors' (``DEFAULTS``), and whose stems are described in ``STEMS``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, cast

BlockType = Literal["basic", "bottleneck"]
Family = Literal["cifar", "imagenet", "vgg"]

BOTTLENECK_EXPANSION = 4


@dataclass(frozen=True)
class StemSpec:
    """The layers before the first stage. ``preact_norm``: whether a pre-activation net still normalises the stem
    (conv-BN-ReLU), so that the first unit after it must not pre-activate again (fb.resnet.torch 'no_preact')."""

    kernel: int
    stride: int
    maxpool: bool
    preact_norm: bool


STEMS: dict[str, StemSpec] = {
    # 3x3 conv (Sec. 4.2); pre-activation nets feed it bare into the first unit's BN-ReLU (preresnet.lua, CIFAR)
    "cifar": StemSpec(kernel=3, stride=1, maxpool=False, preact_norm=False),
    # 7x7/2 conv, BN, ReLU, 3x3/2 max-pool (Table 1), the same in pre-activation nets (preresnet.lua, ImageNet)
    "imagenet": StemSpec(kernel=7, stride=2, maxpool=True, preact_norm=True),
}


@dataclass(frozen=True)
class OptionDefaults:
    """The options the authors used for a (family, block): shortcut option and bottleneck stride placement."""

    shortcut: str
    stride_on: str


DEFAULTS: dict[tuple[str, str], OptionDefaults] = {
    ("cifar", "basic"): OptionDefaults(shortcut="A", stride_on="3x3"),  # Sec. 4.2: option A on CIFAR
    # He et al. 2016 (resnet-1k-layers): projections where the shape changes, stride on the first 1x1 convolution
    ("cifar", "bottleneck"): OptionDefaults(shortcut="B", stride_on="1x1"),
    ("imagenet", "basic"): OptionDefaults(shortcut="B", stride_on="3x3"),
    # torchvision's v1.5 placement by default, so that its weights mean the same thing
    ("imagenet", "bottleneck"): OptionDefaults(shortcut="B", stride_on="3x3"),
}


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
        """The authors' option for this family and block (``DEFAULTS``); plain nets have none."""
        if not self.residual:
            return None
        return DEFAULTS[(self.family, self.block)].shortcut

    @property
    def default_stride_on(self) -> str:
        """Where the authors put a downsampling bottleneck's stride (``DEFAULTS``); "3x3" for other blocks."""
        defaults = DEFAULTS.get((self.family, self.block))
        return defaults.stride_on if defaults is not None else "3x3"

    @property
    def stem(self) -> StemSpec:
        return STEMS[self.family]


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
# He et al. 2016 (Identity Mappings), Table 2/3: depth 9n+2, three stages of n bottlenecks on 16/32/64 filters
# (outputs 64/128/256): ResNet-164 (n=18, 1.7M parameters) and ResNet-1001 (n=111, 10.2M).
CIFAR_BOTTLENECK_PAPER_DEPTHS = (164, 1001)
# How many layers one block adds per stage (the depth is 3 stages x blocks x this + stem + classifier).
CIFAR_LAYERS_PER_BLOCK: dict[str, int] = {"basic": 6, "bottleneck": 9}

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


def cifar_depth_fits(depth: int, block: str) -> bool:
    """Whether ``depth`` is 6n+2 (basic blocks) or 9n+2 (bottlenecks) with n >= 1."""
    step = CIFAR_LAYERS_PER_BLOCK[block]
    return depth >= step + 2 and (depth - 2) % step == 0


def default_cifar_block(depth: int) -> BlockType | None:
    """The block a bare CIFAR name uses: the He et al. 2016 bottleneck nets (164, 1001) and every other depth
    that is 9n+2 but not 6n+2; basic blocks (the 2015 paper) for 6n+2; None for any other depth."""
    if depth in CIFAR_BOTTLENECK_PAPER_DEPTHS:
        return "bottleneck"
    if cifar_depth_fits(depth, "basic"):
        return "basic"
    return "bottleneck" if cifar_depth_fits(depth, "bottleneck") else None


def cifar_spec(depth: int, residual: bool, block: BlockType | None = None) -> ArchSpec:
    """A CIFAR net; ``block`` defaults to :func:`default_cifar_block`, and a name says it when it differs
    (``resnet56-bottleneck``, ``resnet164-basic``)."""
    default = default_cifar_block(depth)
    block = block or default
    if block is None or not cifar_depth_fits(depth, block):
        raise ValueError(
            f"CIFAR networks have depth 6n+2 (basic blocks: 8, 14, 20, ...) or 9n+2 (bottlenecks: 11, 20, 29, ..., "
            f"164, 1001) with n >= 1, got {depth}" + (f" for {block} blocks" if block else "")
        )
    n = (depth - 2) // CIFAR_LAYERS_PER_BLOCK[block]
    # The name says the block when a bare name would mean another net (another block, or an ImageNet net).
    suffix = "" if block == default and depth not in IMAGENET_DEPTHS else f"-{block}"
    return ArchSpec(
        name=f"{'resnet' if residual else 'plain'}{depth}{suffix}",
        family="cifar",
        depth=depth,
        block=block,
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
        for depth in (*CIFAR_PAPER_DEPTHS, *CIFAR_BOTTLENECK_PAPER_DEPTHS):
            spec = cifar_spec(depth, residual)
            table[spec.name] = spec
        for depth in IMAGENET_DEPTHS:
            spec = imagenet_spec(depth, residual)
            table[spec.name] = spec
    table[VGG19_SPEC.name] = VGG19_SPEC
    return table


ARCHITECTURES: dict[str, ArchSpec] = _build_table()

_DEPTH_NAME = re.compile(r"^(resnet|plain)(\d+)(?:-(basic|bottleneck))?$")


def lookup_spec(name: str) -> ArchSpec | None:
    """The spec for a registered name, or for any other CIFAR depth: 6n+2 basic (``resnet8``), 9n+2 bottleneck
    (``resnet29``), or either block named explicitly (``resnet56-bottleneck``, ``resnet164-basic``)."""
    spec = ARCHITECTURES.get(name)
    if spec is not None:
        return spec
    match = _DEPTH_NAME.match(name)
    if match is None:
        return None
    depth, block = int(match.group(2)), match.group(3)
    if block is None and depth in IMAGENET_DEPTHS:
        return None
    try:
        spec = cifar_spec(depth, residual=match.group(1) == "resnet", block=cast("BlockType | None", block))
    except ValueError:
        return None
    return ARCHITECTURES.get(spec.name, spec)  # ``resnet20-basic`` is ``resnet20``


def model_depth(name: str) -> int:
    """Depth from a model name (resnet110 -> 110, plain20 -> 20), for reports and recipes that treat nets by
    depth; 0 when the name carries none."""
    match = re.search(r"(\d+)$", name) or re.search(r"(\d+)", name)
    return int(match.group(1)) if match else 0
