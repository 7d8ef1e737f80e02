"""The data section of a run's configuration, and the choices its options allow (declared once, here).

``build_data`` takes a :class:`DataConfig` whole, so adding a data option touches this class, the pipeline that
uses it, its test and its doc, and nothing else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from resnet.errors import ConfigError

AUGMENTS = ("default", "rrc", "none")
NORMALIZES = ("channel", "pixel")
EVAL_VIEWS = ("center", "ten-crop", "full")
# `resnet eval --views` spells the paper's 10-crop "10crop"; both spellings name the one view
VIEW_ALIASES = {"10crop": "ten-crop"}


def canonical_view(name: str) -> str:
    return VIEW_ALIASES.get(name, name)


PIPELINES = ("auto", "tensor", "loader")
ON_BAD_IMAGE = ("error", "skip")
POLICY_NAMES = ("none", "trivialaugment", "randaugment", "autoaugment")

DATA_CHOICES: dict[str, tuple[str, ...]] = {
    "data.augment": AUGMENTS,
    "data.normalize": NORMALIZES,
    "data.eval_view": EVAL_VIEWS,
    "data.pipeline": PIPELINES,
    "data.on_bad_image": ON_BAD_IMAGE,
    "data.policy": POLICY_NAMES,
}


def check_choice(key: str, value: str) -> str:
    """``value`` when the data option ``key`` (``on_bad_image``, ...) allows it, else a one-line error."""
    allowed = DATA_CHOICES[f"data.{key}"]
    if value not in allowed:
        raise ConfigError(f"{key} must be one of {', '.join(allowed)}, got {value!r}")
    return value


@dataclass
class DataConfig:
    dataset: str = ""
    data_dir: str | None = None
    batch_size: int = 128  # per process; the global batch is batch_size * world_size
    eval_batch_size: int | None = None
    val_size: int | None = None  # None: the dataset's default split; 0: no validation set
    subset: int | None = None  # train on a seeded subset of this many images
    augment: str = "default"  # default | rrc | none
    normalize: str = "channel"  # channel | pixel
    eval_view: str = "center"  # center | ten-crop | full
    num_workers: int | None = None
    download: bool = True
    # training crop of the ImageNet pipeline (None: 224); setting it asks for that pipeline (data/choice.py)
    crop_size: int | None = None
    # auto (folders of small same-size images: tensor, others: loader; see data/choice.py) | tensor (decode a
    # same-size folder once into memory) | loader (DataLoader workers, the ImageNet pipeline)
    pipeline: str = "auto"
    on_bad_image: str = "error"  # error | skip (counted and reported)
    # FixRes (Touvron et al. 2019): evaluate larger than the training crop; None: crop_size, resize crop*256/224
    eval_crop_size: int | None = None
    eval_resize: int | None = None
    policy: str = "none"  # none | trivialaugment | randaugment | autoaugment (torchvision's, per image)
    randaugment_ops: int = 2
    randaugment_magnitude: int = 9
    random_erasing: float = 0.0  # probability per image (batched on the device, after normalisation)
    repeats: int = 1  # repeated augmentation (Hoffer et al. 2020): each image appears this many times an epoch

    def workers(self) -> int:
        """DataLoader workers: ``num_workers``, else :func:`default_workers`."""
        return default_workers() if self.num_workers is None else self.num_workers

    def evaluation_batch(self) -> int:
        """Images per evaluation batch: ``eval_batch_size``, else the training batch and at least 256 (no
        gradients are kept, so evaluation affords more)."""
        return self.eval_batch_size if self.eval_batch_size is not None else max(self.batch_size, 256)


def cpu_cores() -> int:
    """Cores this process may use (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_workers() -> int:
    """DataLoader workers when none are asked for: one per core this process may use, at most 8."""
    return max(1, min(8, cpu_cores()))
