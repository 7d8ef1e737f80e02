"""Augmentation policies, repeated augmentation and FixRes on both pipelines: shapes, dtypes, seeds, resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from resnet.data import load_data
from resnet.data.augment import apply_seeded, build_policy
from resnet.data.tensor_pipeline import Normalizer, TensorTrainStream, repeat_samples
from resnet.errors import ConfigError
from synthetic import write_image_folder

POLICIES = ["trivialaugment", "randaugment", "autoaugment"]


def stream(policy: str, channels: int = 3, repeats: int = 1) -> TensorTrainStream:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (48, channels, 16, 16), dtype=torch.uint8, generator=g)
    labels = torch.arange(48) % 4
    norm = Normalizer(torch.full((channels, 1, 1), 127.0), torch.full((channels,), 60.0), channels, False)
    chosen = build_policy(policy, num_ops=2, magnitude=9, small_images=True)
    return TensorTrainStream(images, labels, norm, batch_size=8, seed=5, augment=True, policy=chosen, repeats=repeats)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("channels", [1, 3])
def test_tensor_pipeline_policies_keep_shapes_and_replay_from_the_seed(policy: str, channels: int) -> None:
    rng_before = torch.get_rng_state()
    data = stream(policy, channels)
    full = list(data.epoch(1))
    resumed = list(data.epoch(1, start_batch=3))
    assert torch.equal(torch.get_rng_state(), rng_before)  # the global RNG is not used
    assert len(full) == 6 and len(resumed) == 3
    for (x1, y1), (x2, y2) in zip(full[3:], resumed, strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    plain = list(stream("none", channels).epoch(1))
    for (x, y), (x0, y0) in zip(full, plain, strict=True):
        assert x.shape == x0.shape == (8, channels, 16, 16) and x.dtype == x0.dtype == torch.float32
        assert torch.equal(y, y0)
    assert any(not torch.equal(x, x0) for (x, _), (x0, _) in zip(full, plain, strict=True))


def test_policy_draws_differ_per_image_and_seed() -> None:
    policy = build_policy("trivialaugment")
    image = torch.randint(0, 256, (3, 20, 20), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    batch = image.expand(16, -1, -1, -1)
    out = apply_seeded(policy, batch, 7)
    assert out.dtype == torch.uint8 and out.shape == batch.shape
    assert len({tuple(o.flatten()[:50].tolist()) for o in out}) > 4  # each image its own operation
    assert torch.equal(out, apply_seeded(policy, batch, 7))
    assert not torch.equal(out, apply_seeded(policy, batch, 8))


def test_repeated_augmentation_order() -> None:
    order = torch.tensor([5, 2, 7, 1, 0, 3])
    assert repeat_samples(order, 3).tolist() == [5, 5, 5, 2, 2, 2]
    data = stream("none", repeats=4)
    batch, labels = next(iter(data.epoch(0)))
    assert len(data.order(0)) == 48 and len(set(data.order(0).tolist())) == 12
    assert labels.view(2, 4).eq(labels.view(2, 4)[:, :1]).all()  # copies of one image share the label
    assert not torch.equal(batch[0], batch[1])  # but not the augmentation


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "tiny", per_class=4, splits={"train": 4, "val": 2})


@pytest.mark.parametrize("policy", POLICIES)
def test_folder_policies_fixres_and_repeats(folder: Path, policy: str) -> None:
    options = dict(batch_size=4, crop_size=16, num_workers=0, val_size=0, augment="rrc")
    data = load_data(folder, policy=policy, repeats=2, eval_crop_size=24, eval_resize=28, **options)
    full = list(data.train.epoch(1))
    resumed = list(data.train.epoch(1, start_batch=2))
    for (x1, y1), (x2, y2) in zip(full[2:], resumed, strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    x, y = full[0]
    assert x.shape == (4, 3, 16, 16) and x.dtype == torch.float32
    assert torch.equal(y[0::2], y[1::2])  # repeated pairs
    plain = load_data(folder, **options)
    assert not all(torch.equal(a, b) for (a, _), (b, _) in zip(full, plain.train.epoch(1), strict=False))
    test_x, _ = next(iter(data.test))
    assert test_x.shape[-2:] == (24, 24)  # FixRes: evaluated larger than trained
    with pytest.raises(ConfigError, match="augment 'rrc' or 'default'"):
        load_data(folder, policy=policy, **{**options, "augment": "none"})
