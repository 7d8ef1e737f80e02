"""Classification error of a model over an evaluation stream, single- or multi-view (10-crop)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import nn


@contextlib.contextmanager
def evaluation_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode and no autograd for the duration, restoring the previous mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


def evaluate(
    model: nn.Module,
    stream: Iterable[Any],
    autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[float, float]:
    """(top-1 error in percent, mean cross-entropy) over ``stream``.

    Multi-view batches shaped (B, V, C, H, W) — 10-crop or multi-scale testing — are scored by averaging the
    logits over the V views. Sums stay on the device, so there is one host sync at the end, not one per batch.
    ``reduce`` sums ``(wrong, loss sum, images)`` over processes when each scores a disjoint shard of the set
    (distributed evaluation); the result is then the whole set's.
    """
    wrong: torch.Tensor | int = 0
    loss_sum: torch.Tensor | float = 0.0
    seen = 0
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    with evaluation_mode(model), autocast():
        for images, labels in stream:
            if images.dim() == 5:
                batch, views = images.shape[:2]
                logits = model(images.flatten(0, 1)).float().view(batch, views, -1).mean(1)
            else:
                logits = model(images).float()
            loss_sum = loss_sum + nn.functional.cross_entropy(logits, labels, reduction="sum").double()
            wrong = wrong + (logits.argmax(1) != labels).sum()
            seen += labels.numel()
    if reduce is not None:
        totals = torch.stack([torch.as_tensor(x, dtype=torch.float64, device=device) for x in (wrong, loss_sum, seen)])
        wrong, loss_sum, seen = reduce(totals).tolist()
    if seen == 0:
        return math.nan, math.nan
    return 100.0 * float(wrong) / seen, float(loss_sum) / seen
