"""Training augmentations driven by an explicit generator: per-image ones for image folders, and torchvision's
policies (TrivialAugmentWide, RandAugment, AutoAugment) made reproducible for both pipelines.

torchvision's random transforms draw from the global RNG; these draw their parameters from a ``torch.Generator``
passed per sample (seeded by dataset seed, epoch, batch and position), so a resumed run sees the same images,
and apply them with ``torchvision.transforms.v2.functional``. A policy runs inside ``torch.random.fork_rng``
seeded from the same stream, so the global RNG is left untouched; policies act on uint8 images, before
normalisation, as in torchvision's reference scripts.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from resnet.data import views
from resnet.data.config import POLICY_NAMES
from resnet.errors import ConfigError

# PCA of ImageNet RGB pixels (AlexNet's "lighting" noise; the values used by fb.resnet.torch), for [0, 1] images.
EIGVAL = torch.tensor([0.2175, 0.0188, 0.0045])
EIGVEC = torch.tensor([[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]])


def _uniform(gen: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=gen))


def _randint(gen: torch.Generator, low: int, high: int) -> int:
    """An integer in ``[low, high]``."""
    return int(torch.randint(low, high + 1, (), generator=gen))


def random_crop_flip(image: Tensor, size: int, gen: torch.Generator) -> Tensor:
    """A random ``size x size`` crop and a horizontal flip with probability 1/2."""
    top = _randint(gen, 0, image.shape[-2] - size)
    left = _randint(gen, 0, image.shape[-1] - size)
    image = TF.crop(image, top, left, size, size)
    return TF.horizontal_flip(image) if float(torch.rand((), generator=gen)) < 0.5 else image


def color_jitter(image: Tensor, gen: torch.Generator, strength: float = 0.4) -> Tensor:
    """Brightness, contrast and saturation jitter in random order (float image in [0, 1])."""
    ops = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation)
    for i in torch.randperm(3, generator=gen).tolist():
        image = ops[i](image, _uniform(gen, 1 - strength, 1 + strength))
    return image


def lighting(image: Tensor, gen: torch.Generator, alphastd: float = 0.1) -> Tensor:
    """AlexNet-style PCA colour noise (float image in [0, 1])."""
    alpha = torch.randn(3, generator=gen) * alphastd
    rgb = EIGVEC @ (alpha * EIGVAL)
    return image + rgb.reshape(3, 1, 1)


class ScaleAugment:
    """The paper's ImageNet augmentation: shorter side uniform in [256, 480] (scaled to the crop size), random
    crop, flip, colour jitter and PCA lighting. Returns a float image in [0, 1]."""

    def __init__(self, crop: int = 224, jitter: float = 0.4, alphastd: float = 0.1) -> None:
        self.crop = crop
        self.sides = (round(crop * 256 / 224), round(crop * 480 / 224))
        self.jitter, self.alphastd = jitter, alphastd

    def geometric(self, image: Tensor, gen: torch.Generator) -> Tensor:
        """Resize, crop and flip (uint8 in, uint8 out)."""
        image = TF.resize(image, [_randint(gen, *self.sides)], antialias=True)
        return random_crop_flip(image, self.crop, gen)

    def __call__(self, image: Tensor, gen: torch.Generator) -> Tensor:
        return self.finish(self.geometric(image, gen), gen)

    def finish(self, image: Tensor, gen: torch.Generator) -> Tensor:
        """To float in [0, 1], then colour jitter and lighting."""
        image = TF.to_dtype(image, torch.float32, scale=True)
        if self.jitter:
            image = color_jitter(image, gen, self.jitter)
        return lighting(image, gen, self.alphastd) if self.alphastd else image


class RandomResizedCropAugment:
    """torchvision's RandomResizedCrop (scale 0.08-1, ratio 3/4-4/3) and a flip, with explicit randomness."""

    def __init__(
        self, crop: int = 224, scale: tuple[float, float] = (0.08, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3)
    ) -> None:
        self.crop, self.scale, self.log_ratio = crop, scale, (math.log(ratio[0]), math.log(ratio[1]))

    def params(self, height: int, width: int, gen: torch.Generator) -> tuple[int, int, int, int]:
        area = height * width
        for _ in range(10):
            target = area * _uniform(gen, *self.scale)
            aspect = math.exp(_uniform(gen, *self.log_ratio))
            w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
            if 0 < w <= width and 0 < h <= height:
                return _randint(gen, 0, height - h), _randint(gen, 0, width - w), h, w
        side = min(height, width)  # fallback, as torchvision: the central square
        return (height - side) // 2, (width - side) // 2, side, side

    def geometric(self, image: Tensor, gen: torch.Generator) -> Tensor:
        """The random resized crop and flip (uint8 in, uint8 out)."""
        top, left, h, w = self.params(image.shape[-2], image.shape[-1], gen)
        image = TF.resized_crop(image, top, left, h, w, [self.crop, self.crop], antialias=True)
        if float(torch.rand((), generator=gen)) < 0.5:
            image = TF.horizontal_flip(image)
        return image

    def __call__(self, image: Tensor, gen: torch.Generator) -> Tensor:
        return self.finish(self.geometric(image, gen), gen)

    def finish(self, image: Tensor, gen: torch.Generator) -> Tensor:
        return TF.to_dtype(image, torch.float32, scale=True)


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
    raise ConfigError(f"unknown augmentation policy '{name}'; choose one of {', '.join(POLICY_NAMES)}")


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


class PolicyAugment:
    """A crop augmentation with an augmentation policy between its geometric part and its float conversion, as
    torchvision's reference: crop, flip, policy (on uint8), to float. The policy's draws are seeded from ``gen``."""

    def __init__(self, base: ScaleAugment | RandomResizedCropAugment, policy: Callable[[Tensor], Tensor]) -> None:
        self.base, self.policy = base, policy

    def __call__(self, image: Tensor, gen: torch.Generator) -> Tensor:
        image = self.base.geometric(image, gen)
        image = apply_seeded(self.policy, image, int(torch.randint(0, 2**62, (), generator=gen)))
        return self.base.finish(image, gen)


class EvalTransform:
    """Deterministic evaluation view: center crop (shorter side ``resize``), 10-crop, or full image."""

    def __init__(self, view: str, crop: int = 224, resize: int | None = None) -> None:
        self.view, self.crop = view, crop
        self.resize = resize if resize is not None else round(crop * 256 / 224)

    def __call__(self, image: Tensor, gen: torch.Generator | None = None) -> Tensor:
        if self.view == "ten-crop":
            image = views.ten_crop(image, self.crop, self.resize)
        elif self.view == "full":
            image = views.full_image(image, self.resize)
        else:
            image = views.center_crop(image, self.crop, self.resize)
        return TF.to_dtype(image, torch.float32, scale=True)
