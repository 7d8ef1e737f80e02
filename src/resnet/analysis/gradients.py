"""Gradient flow: the norm of every layer's weight gradient, plain vs residual at the same depth.

The paper argues that plain nets' optimisation difficulty is not vanishing gradients (BN keeps them healthy) yet
deep plain nets still train worse; this shows the per-layer gradient norms on one training batch, at
initialisation or for a trained checkpoint, on a log scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from resnet.files import Output, save_figure


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """Every convolution's and linear layer's weight, in forward (definition) order."""
    return [
        (name, module.weight)  # type: ignore[misc]  # torch types Linear.weight as Tensor; it is a Parameter
        for name, module in model.named_modules()
        if isinstance(module, (nn.Conv2d, nn.Linear)) and module.weight is not None
    ]


@dataclass
class GradientNorms:
    label: str
    layers: list[str]
    norms: list[float]


def gradient_norms(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, label: str = "") -> GradientNorms:
    """L2 norm of d(mean cross-entropy)/d(weight) per layer on one batch, BN in training mode as in a step."""
    layers = weight_layers(model)
    was_training = model.training
    model.train()
    try:
        model.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(images), labels)
        grads = torch.autograd.grad(loss, [weight for _, weight in layers])
    finally:
        model.train(was_training)
    return GradientNorms(label, [name for name, _ in layers], [float(g.norm()) for g in grads])


def plot_gradients(results: Sequence[GradientNorms], path: Path | Output) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 4.5), dpi=120)
    axes = figure.subplots()
    for result in results:
        axes.plot(range(1, len(result.norms) + 1), result.norms, marker=".", linewidth=1.2, label=result.label)
    from matplotlib.ticker import MaxNLocator

    axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # layers are counted: no 2.5
    axes.set_yscale("log")
    axes.set_xlabel("layer (input to output; convolutions and the classifier)")
    axes.set_ylabel("gradient norm of the weights")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    save_figure(figure, path)
