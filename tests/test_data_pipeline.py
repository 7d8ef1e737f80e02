"""The small-dataset tensor pipeline: determinism, augmentation correctness, splits, formats, views."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from resnet.data import center_crop, full_image, load_data, pad_crop_flip, split_indices, ten_crop
from resnet.data.tensor_pipeline import generator
from resnet.errors import ConfigError
from synthetic import write_idx_files


@pytest.fixture
def mnist_dir(tmp_path: Path) -> Path:
    write_idx_files(tmp_path / "mnist", train=200, test=50)
    return tmp_path


def mnist(root: Path, **kw):
    options = dict(data_dir=root, download=False, batch_size=32, val_size=40)
    options.update(kw)
    return load_data("mnist", **options)


def test_resume_mid_epoch_matches_uninterrupted_run(mnist_dir):
    data = mnist(mnist_dir)
    full = list(data.train.epoch(3))
    resumed = list(mnist(mnist_dir).train.epoch(3, start_batch=2))
    assert len(full) == len(data.train) == 160 // 32
    for (x1, y1), (x2, y2) in zip(full[2:], resumed, strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(full[0][1], next(data.train.epoch(4))[1])  # reshuffled per epoch


def test_no_global_rng_use(mnist_dir):
    data = mnist(mnist_dir)
    state = torch.get_rng_state()
    list(data.train.epoch(0))
    list(data.val)
    assert torch.equal(state, torch.get_rng_state())


def reference_crop(x: torch.Tensor, dy: int, dx: int, flip: bool, pad: int, h: int, w: int) -> torch.Tensor:
    out = F.pad(x, (pad,) * 4)[:, dy : dy + h, dx : dx + w]
    return out.flip(-1) if flip else out


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 6), st.integers(1, 3), st.integers(4, 12), st.integers(0, 4), st.integers(0, 10**6))
def test_pad_crop_flip_matches_per_image_reference(batch, channels, size, pad, seed):
    x = torch.randn(batch, channels, size, size + 1)
    out = pad_crop_flip(x, pad, (size, size + 1), generator(seed))
    gen = generator(seed)  # replay the draws in the documented order
    dy = torch.randint(0, 2 * pad + 1, (batch,), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (batch,), generator=gen)
    flips = torch.rand(batch, generator=gen) < 0.5
    for i in range(batch):
        expected = reference_crop(x[i], int(dy[i]), int(dx[i]), bool(flips[i]), pad, size, size + 1)
        assert torch.equal(out[i], expected)


def test_normalisation_and_formats(mnist_dir):
    data = mnist(mnist_dir, augment="none", val_size=0, batch_size=200)
    x, _ = next(data.train.epoch(0))
    assert x.mean().abs() < 1e-4 and (x.std() - 1).abs() < 1e-2  # per-channel stats of the training split
    pixel = mnist(mnist_dir, augment="none", val_size=0, batch_size=200, normalize="pixel")
    xp, _ = next(pixel.train.epoch(0))
    assert xp.mean(0).abs().max() < 1e-4  # per-pixel mean removed
    cl = mnist(mnist_dir, channels_last=True, in_chans=3)
    x, y = next(cl.train.epoch(0))
    assert x.shape == (32, 3, 28, 28) and x.is_contiguous(memory_format=torch.channels_last)
    assert y.dtype == torch.int64 and x.dtype == torch.float32
    xv, _ = next(iter(cl.val))
    assert xv.shape[1] == 3 and xv.is_contiguous(memory_format=torch.channels_last)


def test_splits_are_seeded_disjoint_and_subset_after_val(mnist_dir):
    train, val = split_indices(100, 10, None, seed=1)
    assert len(set(train.tolist()) | set(val.tolist())) == 100 and len(val) == 10
    assert torch.equal(split_indices(100, 10, None, seed=1)[1], val)
    assert not torch.equal(split_indices(100, 10, None, seed=2)[1], val)
    sub, val2 = split_indices(100, 10, 30, seed=1)
    assert torch.equal(val2, val) and len(sub) == 30 and set(sub.tolist()) <= set(train.tolist())
    data = mnist(mnist_dir, subset=64)
    assert (data.num_train, data.num_val, len(data.train)) == (64, 40, 2)
    with pytest.raises(ConfigError, match="subset"):
        mnist(mnist_dir, subset=1000)
    with pytest.raises(ConfigError, match="val_size"):
        mnist(mnist_dir, val_size=200)


def test_distributed_ranks_get_disjoint_slices(mnist_dir):
    seen = []
    for rank in range(2):
        data = mnist(mnist_dir, rank=rank, world_size=2, augment="none", batch_size=10)
        seen.append(torch.cat([y for _, y in data.train.epoch(0)]))
        assert len(data.train) == 8
    orders = [mnist(mnist_dir, rank=r, world_size=2).train.order(0) for r in range(2)]
    assert not set(orders[0].tolist()) & set(orders[1].tolist())


def test_eval_streams_cover_every_image_in_order(mnist_dir):
    data = mnist(mnist_dir, eval_batch_size=16)
    assert len(data.test) == 4 and sum(len(y) for _, y in data.test) == 50
    assert mnist(mnist_dir).test.batch_size == 256


def test_small_set_option_errors(mnist_dir):
    with pytest.raises(ConfigError, match="rrc"):
        mnist(mnist_dir, augment="rrc")
    with pytest.raises(ConfigError, match="on_bad_image"):
        mnist(mnist_dir, on_bad_image="ignore")
    with pytest.raises(ConfigError, match="batch_size 500"):
        mnist(mnist_dir, batch_size=500)


def test_views():
    image = torch.arange(3 * 40 * 60, dtype=torch.float32).reshape(3, 40, 60)
    crops = ten_crop(image, 32)
    assert crops.shape == (10, 3, 32, 32)
    assert torch.equal(crops[0], image[:, :32, :32]) and torch.equal(crops[5], image.flip(-1)[:, :32, :32])
    assert torch.equal(crops[4], center_crop(image, 32))
    scales = [full_image(image, side) for side in (20, 30)]
    assert [tuple(s.shape[1:]) for s in scales] == [(20, 30), (30, 45)]
