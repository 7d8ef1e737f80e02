"""An exponential moving average (EMA) of a model's weights, built on ``torch.optim.swa_utils.AveragedModel``.

As in torchvision's reference scripts the buffers (BatchNorm statistics) are averaged too (``use_buffers=True``),
so the average is evaluated as it is, without re-estimating statistics. The decay warms up as in timm
(``min(decay, (1 + n) / (10 + n))`` after ``n`` updates), so that an average of a fresh model does not stay
anchored to its random initialisation. The count is the ``AveragedModel``'s own ``n_averaged`` buffer, so the
state dict alone resumes the average exactly; a host-side copy of it keeps the update free of device syncs.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel


def ema_decay(decay: float, updates: int, warmup: bool) -> float:
    """The decay applied at an update that follows ``updates`` decayed updates."""
    return min(decay, (1.0 + updates) / (10.0 + updates)) if warmup else decay


class ModelEma(AveragedModel):
    """The EMA of ``model``: ``ema = d * ema + (1 - d) * model`` on floating tensors, integers (BatchNorm's
    ``num_batches_tracked``) copied; the first update copies everything. ``module`` is the averaged network."""

    def __init__(self, model: nn.Module, decay: float, warmup: bool, every: int = 1) -> None:
        super().__init__(model, use_buffers=True)
        self.decay, self.warmup, self.every = decay, warmup, max(1, int(every))
        self.updates = 0  # == n_averaged, kept on the host

    def maybe_update(self, model: nn.Module, iteration: int) -> None:
        """Update after ``iteration`` optimizer steps when the period says so."""
        if iteration % self.every == 0:
            self.update_parameters(model)

    @torch.no_grad()
    def update_parameters(self, model: nn.Module) -> None:
        pairs = zip(
            itertools.chain(self.module.parameters(), self.module.buffers()),
            itertools.chain(model.parameters(), model.buffers()),
            strict=True,
        )
        floats: tuple[list[Tensor], list[Tensor]] = ([], [])
        others: tuple[list[Tensor], list[Tensor]] = ([], [])
        for averaged, current in pairs:
            group = floats if averaged.is_floating_point() and self.updates else others
            group[0].append(averaged.detach())
            group[1].append(current.detach().to(averaged.device))
        if others[0]:
            torch._foreach_copy_(others[0], others[1])
        if floats[0]:
            weight = 1.0 - ema_decay(self.decay, self.updates - 1, self.warmup)
            torch._foreach_lerp_(floats[0], floats[1], weight)
        self.n_averaged += 1
        self.updates += 1

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self.updates = int(self.n_averaged)
        return result
