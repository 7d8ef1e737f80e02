"""One optimizer update from ``accum_steps`` batches: batch transforms, forward, loss, backward, clip, step.

With gradient accumulation (``optim.accum_steps = k``) an update sees ``k`` batches; each loss is divided by
``k``, so that for equal batch sizes the gradient is that of one batch ``k`` times larger (exactly so for nets
without BatchNorm, whose statistics are per batch). An iteration of the trainer is one update, and an epoch has
``len(stream) // k`` of them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn


def update_batches(
    stream: Any, epoch: int, start_update: int, accum_steps: int
) -> Iterator[list[tuple[Tensor, Tensor]]]:
    """The batches of ``epoch`` grouped by update, from update ``start_update`` on (a trailing part is dropped)."""
    group: list[tuple[Tensor, Tensor]] = []
    for batch in stream.epoch(epoch, start_update * accum_steps):
        group.append(batch)
        if len(group) == accum_steps:
            yield group
            group = []


def train_step(
    forward: Callable[[Tensor], Tensor],
    criterion: Callable[[Tensor, Tensor], Tensor],
    batches: list[tuple[Tensor, Tensor]],
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    *,
    autocast: Callable[[], Any],
    transform: Callable[[Tensor, Tensor, int], tuple[Tensor, Tensor]] | None = None,
    first_index: int = 0,
    clip_norm: float | None = None,
    parameters: Any = None,
) -> tuple[Tensor, Tensor, int]:
    """Apply one update; return the mean loss (detached), the number of wrong top-1 predictions against the
    unmixed labels, and the number of images. ``first_index`` numbers the first batch for ``transform``'s seeds."""
    optimizer.zero_grad(set_to_none=True)
    steps = len(batches)
    loss_sum = torch.zeros((), dtype=torch.float64, device=batches[0][1].device)
    wrong = torch.zeros((), dtype=torch.int64, device=batches[0][1].device)
    seen = 0
    for offset, (images, labels) in enumerate(batches):
        targets = labels
        if transform is not None:
            images, targets = transform(images, labels, first_index + offset)
        with _gradient_sync(forward, last=offset == steps - 1):
            with autocast():
                logits = forward(images)
                loss = criterion(logits.float(), targets)
            scaler.scale(loss / steps if steps > 1 else loss).backward()
        loss_sum += loss.detach().double()
        wrong += (logits.detach().argmax(1) != labels).sum()
        seen += labels.numel()
    if clip_norm:
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(parameters, clip_norm)
    scaler.step(optimizer)
    scaler.update()
    return loss_sum / steps, wrong, seen


def _gradient_sync(forward: Callable[[Tensor], Tensor], *, last: bool) -> contextlib.AbstractContextManager[Any]:
    """Under DistributedDataParallel the gradients are all-reduced once per update, after its last batch:
    the other backward passes of an accumulated update run in ``no_sync`` (same result, 1/k of the traffic)."""
    no_sync = getattr(forward, "no_sync", None)
    return contextlib.nullcontext() if last or no_sync is None else no_sync()
