"""The criterion and what shapes its targets: random erasing, Mixup, CutMix, soft targets and their losses.

These run on whole batches after the data pipeline (tensor or DataLoader), so they cost a few tensor ops per
step. Every random draw comes from a generator seeded by ``(seed, batch index)``: a resumed run mixes the same
pairs with the same weights and boxes, and the global RNGs are never touched. (torchvision's ``v2.MixUp`` /
``v2.CutMix`` draw from the global RNG and return unsmoothed targets, so they fit neither contract; the formulas
are theirs and timm's: the batch is mixed with itself rolled by one, CutMix's weight is the pasted area.)
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from resnet.config import Config
from resnet.data.tensor_pipeline import derive_seed, generator

_MIX_TAG, _ERASE_TAG = 0x313C, 0xE5A5E


def smooth_one_hot(labels: Tensor, num_classes: int, smoothing: float = 0.0) -> Tensor:
    """``(1 - smoothing) * one_hot + smoothing / num_classes``, in float32."""
    off = smoothing / num_classes
    targets = torch.full((labels.numel(), num_classes), off, dtype=torch.float32, device=labels.device)
    return targets.scatter_(1, labels.reshape(-1, 1), 1.0 - smoothing + off)


def cutmix_box(height: int, width: int, lam: float, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """A box of area about ``(1 - lam) * H * W`` centred uniformly, clipped to the image: (top, bottom, left, right)."""
    ratio = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    cy, cx = int(rng.integers(0, height)), int(rng.integers(0, width))
    top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
    left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
    return top, bottom, left, right


def random_erasing(
    x: Tensor,
    prob: float,
    gen: torch.Generator,
    scale: tuple[float, float] = (0.02, 0.33),
    ratio: tuple[float, float] = (0.3, 3.3),
    attempts: int = 10,
) -> Tensor:
    """torchvision's ``RandomErasing`` (Zhong et al. 2017) for a whole batch at once: with probability ``prob`` an
    image gets one rectangle (area ``scale`` of the image, aspect ``ratio``) set to 0, the mean after
    normalisation. Of ``attempts`` draws per image the first that fits is used; none fitting leaves it unchanged."""
    batch, _, height, width = x.shape
    device = x.device
    area = (
        height * width * (scale[0] + (scale[1] - scale[0]) * torch.rand(batch, attempts, generator=gen, device=device))
    )
    log_r = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * torch.rand(
        batch, attempts, generator=gen, device=device
    )
    aspect = log_r.exp()
    h = (area * aspect).sqrt().round().long()
    w = (area / aspect).sqrt().round().long()
    fits = (h < height) & (w < width)
    first = fits.int().argmax(1, keepdim=True)
    h, w = h.gather(1, first).squeeze(1), w.gather(1, first).squeeze(1)
    apply = (torch.rand(batch, generator=gen, device=device) < prob) & fits.any(1)
    u = torch.rand(batch, 2, generator=gen, device=device)
    top = (u[:, 0] * (height - h + 1).clamp_min(1)).long()
    left = (u[:, 1] * (width - w + 1).clamp_min(1)).long()
    rows = torch.arange(height, device=device)
    cols = torch.arange(width, device=device)
    in_rows = (rows >= top[:, None]) & (rows < (top + h)[:, None])  # (B, H)
    in_cols = (cols >= left[:, None]) & (cols < (left + w)[:, None])  # (B, W)
    mask = in_rows[:, :, None] & in_cols[:, None, :] & apply[:, None, None]
    return x.masked_fill(mask[:, None], 0.0)


class BatchMixer:
    """Random erasing, then Mixup or CutMix, of one training batch; returns ``(images, targets)``.

    ``targets`` are the labels unchanged when nothing needs soft targets (plain cross-entropy, which applies its
    own label smoothing), else ``(B, num_classes)`` probabilities with label smoothing folded in.
    """

    def __init__(self, config: Config, num_classes: int, rank: int = 0, *, soft_targets: bool = False) -> None:
        """``config.mix``, with the run's seed, ``optim.label_smoothing`` and ``data.random_erasing``; each rank
        draws its own stream. ``soft_targets`` hands out probabilities even when nothing is mixed."""
        self.num_classes, self.seed, self.rank, self.mix = num_classes, config.seed, rank, config.mix
        self.label_smoothing, self.erasing = config.optim.label_smoothing, config.data.random_erasing
        self.mixes = self.mix.mixup_alpha > 0 or self.mix.cutmix_alpha > 0
        self.soft_targets = soft_targets or self.mixes

    @property
    def active(self) -> bool:
        return self.mixes or self.erasing > 0 or self.soft_targets

    def draw(self, index: int) -> tuple[str, float, np.random.Generator]:
        """The mode ("none", "mixup", "cutmix") and weight of batch ``index``, from its own seeded stream."""
        rng = np.random.default_rng(derive_seed(self.seed, _MIX_TAG, index, self.rank))
        mix = self.mix
        if not self.mixes or rng.random() >= mix.prob:
            return "none", 1.0, rng
        use_cutmix = mix.cutmix_alpha > 0 and (mix.mixup_alpha <= 0 or rng.random() < mix.switch_prob)
        alpha = mix.cutmix_alpha if use_cutmix else mix.mixup_alpha
        return ("cutmix" if use_cutmix else "mixup"), float(rng.beta(alpha, alpha)), rng

    def __call__(self, images: Tensor, labels: Tensor, index: int) -> tuple[Tensor, Tensor]:
        """Transform batch ``index`` (a running count of training batches, so resumed runs repeat the draws)."""
        if self.erasing > 0:
            gen = generator(self.seed, _ERASE_TAG, index, self.rank, device=images.device)
            images = random_erasing(images, self.erasing, gen)
        if not self.soft_targets:
            return images, labels
        targets = smooth_one_hot(labels, self.num_classes, self.label_smoothing)
        mode, lam, rng = self.draw(index)
        if mode == "mixup":
            images = images.mul(lam).add_(images.roll(1, 0).mul(1.0 - lam))
        elif mode == "cutmix":
            top, bottom, left, right = cutmix_box(images.shape[2], images.shape[3], lam, rng)
            images = images.clone()
            images[:, :, top:bottom, left:right] = images.roll(1, 0)[:, :, top:bottom, left:right]
            lam = 1.0 - (bottom - top) * (right - left) / (images.shape[2] * images.shape[3])
        if mode != "none":
            targets = targets.mul(lam).add_(targets.roll(1, 0).mul(1.0 - lam))
        return images, targets


class SoftTargetCrossEntropy(nn.Module):
    """Cross-entropy against probabilities; integer labels go to ``F.cross_entropy`` with label smoothing."""

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        if targets.dtype == torch.int64:
            return F.cross_entropy(logits, targets, label_smoothing=self.label_smoothing)
        return torch.sum(-targets * F.log_softmax(logits, dim=-1), dim=-1).mean()


class BinaryCrossEntropy(nn.Module):
    """Per-class sigmoid cross-entropy on soft targets ("ResNet strikes back", Wightman et al. 2021); with
    ``target_threshold`` the targets become 0/1 (timm's ``bce_target_thresh``)."""

    def __init__(self, num_classes: int, label_smoothing: float = 0.0, target_threshold: float | None = None) -> None:
        super().__init__()
        self.num_classes, self.label_smoothing, self.target_threshold = num_classes, label_smoothing, target_threshold

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        if targets.dtype == torch.int64:
            targets = smooth_one_hot(targets, self.num_classes, self.label_smoothing)
        if self.target_threshold is not None:
            targets = targets.gt(self.target_threshold).to(logits.dtype)
        return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype))


def build_criterion(config: Config, num_classes: int) -> nn.Module:
    optim = config.optim
    if optim.loss == "bce":
        return BinaryCrossEntropy(num_classes, optim.label_smoothing, optim.bce_target_threshold)
    return SoftTargetCrossEntropy(optim.label_smoothing)


def build_mixer(config: Config, num_classes: int, rank: int = 0) -> BatchMixer | None:
    """The batch transform, or ``None`` when the options leave batches as they are."""
    mixer = BatchMixer(config, num_classes, rank)
    return mixer if mixer.active else None
