"""Augmentation policies (torchvision's TrivialAugmentWide, RandAugment, AutoAugment) made reproducible, and
repeated augmentation.

torchvision's policies draw their operations from the global RNG. Here every call runs inside
``torch.random.fork_rng`` seeded from the pipeline's own ``(seed, epoch, batch, position)`` stream, so the images
of a batch are the same after a resume and the global RNG is left untouched. The policies act on uint8 images,
before normalisation, as in torchvision's reference scripts.

Repeated augmentation (Hoffer et al. 2020; Berman et al. 2019, as torchvision's ``RASampler``): an epoch draws
``N / repeats`` images and shows each ``repeats`` times, with independent augmentations; under data parallelism
the copies land on different ranks.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torchvision.transforms import v2

from resnet.data.config import POLICY_NAMES
from resnet.errors import ConfigError

POLICIES = POLICY_NAMES


def build_policy(name: str, *, num_ops: int = 2, magnitude: int = 9, small_images: bool = False) -> nn.Module | None:
    """The torchvision policy ``name`` (``None`` for "none"); AutoAugment uses its CIFAR-10 policy on small images
    (the tensor pipeline) and its ImageNet policy on image folders."""
    if name == "none":
        return None
    if name == "trivialaugment":
        return v2.TrivialAugmentWide()
    if name == "randaugment":
        return v2.RandAugment(num_ops=num_ops, magnitude=magnitude)
    if name == "autoaugment":
        policy = v2.AutoAugmentPolicy.CIFAR10 if small_images else v2.AutoAugmentPolicy.IMAGENET
        return v2.AutoAugment(policy)
    raise ConfigError(f"unknown augmentation policy '{name}'; choose one of {', '.join(POLICIES)}")


def apply_seeded(policy: Callable[[Tensor], Tensor], images: Tensor, seed: int) -> Tensor:
    """``policy`` on each uint8 image of ``images`` (C, H, W) or (B, C, H, W), every draw from ``seed``.

    Each image gets its own operations and magnitudes (as a per-sample DataLoader transform would); the policies
    choose them per call, so a batch is a loop over its images, on the images' device.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if images.dim() == 3:
            return policy(images)
        return torch.stack([policy(image) for image in images])


def repeat_samples(order: Tensor, repeats: int) -> Tensor:
    """``order`` with each of its first ``len(order) / repeats`` entries ``repeats`` times in a row (same length)."""
    if repeats <= 1:
        return order
    return order.repeat_interleave(repeats)[: len(order)]
