"""Layer responses (Fig. 7): the std of every 3x3 convolution's output after its BN, before ReLU or addition.

The paper's observation: residual branches respond more weakly than the layers of a plain net, and deeper ResNets
respond more weakly still — the residual functions are close to zero. Forward hooks on the BN that follows each 3x3
convolution read the output before the in-place ReLU or the shortcut addition touches it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from resnet.errors import ConfigError
from resnet.files import Output, save_figure
from resnet.models.blocks import BasicBlock, Bottleneck, PreActBasicBlock, PreActBottleneck


def response_layers(model: nn.Module) -> list[tuple[str, nn.BatchNorm2d]]:
    """The BN after every 3x3 convolution, in forward order: the 3x3 stem (CIFAR nets), 2 per basic block,
    1 per bottleneck (its middle 3x3)."""
    layers: list[tuple[str, nn.BatchNorm2d]] = []
    stem, stem_norm = getattr(model, "conv1", None), getattr(model, "bn1", None)
    if isinstance(stem, nn.Conv2d) and stem.kernel_size == (3, 3) and isinstance(stem_norm, nn.BatchNorm2d):
        layers.append(("bn1", stem_norm))
    for name, module in model.named_modules():
        if isinstance(module, (PreActBasicBlock, PreActBottleneck)):
            raise ConfigError(
                "layer responses are defined for the paper's post-activation blocks (BN right after each 3x3 "
                "convolution); this model has pre-activation blocks"
            )
        if isinstance(module, BasicBlock):
            layers += [(f"{name}.bn1", module.bn1), (f"{name}.bn2", module.bn2)]
        elif isinstance(module, Bottleneck):
            layers.append((f"{name}.bn2", module.bn2))
    if not layers:
        raise ConfigError(f"{type(model).__name__} has no residual or plain blocks to measure (use a ResNet/plain net)")
    return layers


class _Moments:
    """Running sum and sum of squares of one layer's outputs, in float64."""

    def __init__(self) -> None:
        self.total, self.squares, self.count = 0.0, 0.0, 0

    def __call__(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        values = output.detach().double()
        self.total += float(values.sum())
        self.squares += float((values * values).sum())
        self.count += values.numel()

    def std(self) -> float:
        if not self.count:
            return math.nan
        mean = self.total / self.count
        return math.sqrt(max(self.squares / self.count - mean * mean, 0.0))


@dataclass
class Responses:
    label: str
    layers: list[str]
    std: list[float]
    images: int


def measure_responses(
    model: nn.Module, batches: Iterable[tuple[torch.Tensor, Any]], label: str = "", max_images: int | None = None
) -> Responses:
    """Std of each response layer's output over ``batches`` (images first), the model in eval mode."""
    layers = response_layers(model)
    moments = [_Moments() for _ in layers]
    handles = [module.register_forward_hook(hook) for (_, module), hook in zip(layers, moments, strict=True)]
    was_training, seen = model.training, 0
    model.eval()
    try:
        with torch.inference_mode():
            for images, _ in batches:
                if max_images is not None and seen >= max_images:
                    break
                if max_images is not None:
                    images = images[: max_images - seen]
                model(images)
                seen += len(images)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return Responses(label, [name for name, _ in layers], [m.std() for m in moments], seen)


def plot_responses(results: Sequence[Responses], path: Path | Output) -> None:
    """Fig. 7's layout: std in layer order (top) and sorted in descending order (bottom), one line per net."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 6.5), dpi=120)
    top, bottom = figure.subplots(2, 1)
    for result in results:
        indices = range(1, len(result.std) + 1)
        top.plot(indices, result.std, marker=".", linewidth=1.2, label=result.label)
        bottom.plot(indices, sorted(result.std, reverse=True), marker=".", linewidth=1.2, label=result.label)
    top.set_xlabel("layer index (original)")
    bottom.set_xlabel("layer index (sorted by magnitude)")
    from matplotlib.ticker import MaxNLocator

    for axes in (top, bottom):
        axes.set_ylabel("std")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # layers are counted: no 2.5
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=8)
    figure.suptitle("Std of the layer responses (after BN, before the nonlinearity or addition), as the paper's Fig. 7")
    save_figure(figure, path)
