"""Classification error of a model over an evaluation stream, single- or multi-view (10-crop): the paper reports
top-1 and top-5; and the fully-convolutional form of a network for multi-scale testing."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from resnet.errors import ConfigError


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


class EvaluationStopped(Exception):
    """An evaluation abandoned because its ``stop`` said so (a Ctrl-C in training): its partial sums are no result."""


@dataclass
class Metrics:
    """Errors in percent, mean cross-entropy per image, and the number of images."""

    top1_error: float
    top5_error: float
    loss: float
    images: int


def batch_scores(model: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """``(scores, are_probabilities)`` of a batch: logits for (B, C, H, W); for (B, V, C, H, W) — 10-crop or other
    multi-view testing — the softmax probabilities averaged over the V views."""
    if images.dim() == 5:
        batch, views = images.shape[:2]
        logits = model(images.flatten(0, 1)).float().view(batch, views, -1)
        return logits.softmax(-1).mean(1), True
    return model(images).float(), False


def nll_sum(scores: torch.Tensor, labels: torch.Tensor, probabilities: bool) -> torch.Tensor:
    """Summed cross-entropy from logits, or from (averaged) probabilities."""
    if probabilities:
        picked = scores.gather(1, labels[:, None]).squeeze(1)
        return -picked.clamp_min(1e-12).log().double().sum()
    return nn.functional.cross_entropy(scores, labels, reduction="sum").double()


def evaluate_metrics(
    model: nn.Module,
    stream: Iterable[Any],
    autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    stop: Callable[[], bool] | None = None,
) -> Metrics:
    """Top-1 / top-5 error and loss over ``stream``. Sums stay on the device: one host sync at the end.

    ``reduce`` sums ``(top-1 wrong, top-5 wrong, loss sum, images)`` over processes when each scores a disjoint
    shard of the set (distributed evaluation); the result is then the whole set's. ``stop`` is asked before each
    batch; True raises :class:`EvaluationStopped` (a stop request waits one batch, not the whole pass).
    """
    wrong: torch.Tensor | int = 0
    loss_sum: torch.Tensor | float = 0.0
    seen = 0
    device = next((p.device for p in model.parameters()), torch.device("cpu")) if isinstance(model, nn.Module) else None
    with evaluation_mode(model), autocast():
        for images, labels in stream:
            if stop is not None and stop():
                raise EvaluationStopped
            scores, probabilities = batch_scores(model, images)
            loss_sum = loss_sum + nll_sum(scores, labels, probabilities)
            wrong = wrong + topk_wrong(scores, labels, (1, 5))
            seen += labels.numel()
    wrong1, wrong5 = torch.as_tensor(wrong, dtype=torch.float64).reshape(-1).tolist() if seen else (0.0, 0.0)
    if reduce is not None:
        parts = (wrong1, wrong5, loss_sum, seen)
        totals = torch.stack([torch.as_tensor(x, dtype=torch.float64, device=device) for x in parts])
        wrong1, wrong5, loss_sum, seen = reduce(totals).tolist()
        seen = int(seen)
    if seen == 0:
        return Metrics(math.nan, math.nan, math.nan, 0)
    return Metrics(100.0 * wrong1 / seen, 100.0 * wrong5 / seen, float(loss_sum) / seen, seen)


# Fully-convolutional testing (Section 3.4 of the paper, after Simonyan & Zisserman).
#
# The classifier becomes a 1x1 convolution over the last feature map, so a network trained on fixed crops scores
# whole images of any size: one score per position of the map. ``fully_convolutional(model)`` shares the weights
# with ``model`` (no copy); at the training resolution the mean of its score map equals ``model``'s logits, since
# the global average pooling and the linear classifier commute.


class FullyConvolutional(nn.Module):
    """A classifier network whose head is applied at every position: ``forward`` gives (N, classes, h, w)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        fc = getattr(model, "fc", None)
        if not isinstance(fc, nn.Linear) or not hasattr(model, "forward_features"):
            raise ConfigError(
                f"fully-convolutional testing needs a ResNet or plain network with a linear classifier 'fc', "
                f"got {type(model).__name__}"
            )
        self.model: Any = model  # a ResNet: forward_features and fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.model.forward_features(x)
        fc = self.model.fc
        assert isinstance(fc, nn.Linear)
        return nn.functional.conv2d(features, fc.weight[:, :, None, None], fc.bias)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """Scores averaged over positions: (N, classes)."""
        return self.forward(x).mean(dim=(2, 3))


def fully_convolutional(model: nn.Module) -> FullyConvolutional:
    """The fully-convolutional form of ``model`` (weights shared with it)."""
    return FullyConvolutional(model)
