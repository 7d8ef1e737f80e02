"""An exponential moving average (EMA) of a model's weights, built on ``torch.optim.swa_utils.AveragedModel``.

As in torchvision's reference scripts the buffers (BatchNorm statistics) are averaged too (``use_buffers=True``),
so the average is evaluated as it is, without re-estimating statistics. The decay warms up as in timm
(``min(decay, (1 + n) / (10 + n))`` after ``n`` updates), so that an average of a fresh model does not stay
anchored to its random initialisation. The count ``n`` is the ``AveragedModel``'s own ``n_averaged`` buffer: the
state dict alone resumes the average exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel


def ema_decay(decay: float, updates: Tensor | int, warmup: bool) -> Tensor | float:
    """The decay applied at the update after ``updates`` earlier ones (a tensor when ``updates`` is one)."""
    if not warmup:
        return decay
    if isinstance(updates, Tensor):
        return ((1.0 + updates.double()) / (10.0 + updates.double())).clamp(max=decay)
    return min(decay, (1.0 + updates) / (10.0 + updates))


class EmaAverager:
    """``multi_avg_fn`` for ``AveragedModel``: ``ema = d * ema + (1 - d) * model`` on floating tensors, copied
    integers (BatchNorm's ``num_batches_tracked``). A class, not a closure, so that it pickles."""

    def __init__(self, decay: float, warmup: bool) -> None:
        self.decay, self.warmup = decay, warmup

    @torch.no_grad()
    def __call__(self, averaged: list[Tensor], current: list[Tensor], num_averaged: Tensor) -> None:
        if not averaged[0].is_floating_point():
            for a, c in zip(averaged, current, strict=True):
                a.copy_(c)
            return
        # n_averaged counts the first update, which only copied: n - 1 decayed updates came before this one.
        decay = ema_decay(self.decay, num_averaged - 1, self.warmup)
        weight = 1.0 - decay
        if isinstance(weight, Tensor):
            weight = weight.to(averaged[0].dtype)
        torch._foreach_lerp_(averaged, current, weight)


class ModelEma(AveragedModel):
    """The EMA of ``model``; ``update(model)`` after an optimizer step, ``module`` is the averaged network."""

    def __init__(self, model: nn.Module, decay: float = 0.9998, warmup: bool = True, every: int = 1) -> None:
        super().__init__(model, multi_avg_fn=EmaAverager(decay, warmup), use_buffers=True)
        self.every = max(1, int(every))

    def maybe_update(self, model: nn.Module, iteration: int) -> None:
        """Update after ``iteration`` optimizer steps when the period says so."""
        if iteration % self.every == 0:
            self.update_parameters(model)
