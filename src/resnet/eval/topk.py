"""Top-k errors from scores (logits or probabilities): the paper reports top-1 and top-5."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def topk_wrong(scores: Tensor, labels: Tensor, ks: Sequence[int] = (1, 5)) -> Tensor:
    """For each k, how many rows of ``scores`` (N, K) do not have their label among their k highest scores.

    ``k`` larger than the number of classes counts every row as right (as torchvision's reference scripts do
    not allow, but a 4-class toy problem has no top-5 error). Returned on the scores' device: no host sync.
    """
    num_classes = scores.shape[1]
    largest = min(max(ks), num_classes)
    top = scores.topk(largest, dim=1).indices  # (N, largest), best first
    hits = top == labels[:, None]
    return torch.stack([(~hits[:, : min(k, num_classes)].any(1)).sum() for k in ks])


def topk_errors(scores: Tensor, labels: Tensor, ks: Sequence[int] = (1, 5)) -> list[float]:
    """Top-k errors in percent, one per k."""
    if labels.numel() == 0:
        return [float("nan")] * len(ks)
    return [100.0 * float(v) / labels.numel() for v in topk_wrong(scores, labels, ks).tolist()]
