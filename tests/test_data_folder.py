"""Image folders: directory / per-split archives / one archive, layout errors, bad images, the loader pipeline."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image

from resnet.data import dataset_info, load_data
from resnet.data.decode import decode_image
from resnet.data.sources.folder import index_folder
from resnet.errors import ConfigError, DataError, DataNotFoundError
from synthetic import image_bytes, tar_tree, write_image_folder


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "tiny", per_class=4, splits={"train": 4, "val": 2})


def small(path, **kw):
    options = dict(batch_size=4, crop_size=24, num_workers=0, val_size=0)
    options.update(kw)
    return load_data(path, **options)


def test_directory_layout(folder):
    index = index_folder(folder)
    assert index.classes == ["cat", "dog", "frog"] and index.held_out == "val"
    assert [len(s.samples) for s in index.splits.values()] == [12, 6]
    data = small(folder)
    assert (data.num_train, data.num_val, data.num_test, data.pipeline) == (12, 0, 6, "loader")
    batches = list(data.train.epoch(0))
    assert len(batches) == len(data.train) == 3
    assert batches[0][0].shape == (4, 3, 24, 24) and batches[0][0].dtype == torch.float32
    assert sum(len(y) for _, y in data.test) == 6


@pytest.mark.parametrize("kind", ["single.tar", "single.tar.gz", "per-split.tar.gz", "per-split.tar"])
def test_archives_read_like_the_directory(folder, tmp_path, kind):
    if kind.startswith("single"):
        path = tar_tree(folder, tmp_path / f"tiny.{kind.split('.', 1)[1]}")
    else:
        path = tmp_path / "split-archives"
        path.mkdir()
        for split in ("train", "val"):
            tar_tree(folder / split, path / f"{split}.{kind.split('.', 1)[1]}")
    index = index_folder(path)
    assert index.classes == ["cat", "dog", "frog"]
    assert [len(s.samples) for s in index.splits.values()] == [12, 6]
    reference = decode_image((folder / "train" / "dog" / "0001.jpg").read_bytes(), "ref")
    key = next(k for k, _ in index.splits["train"].samples if k.endswith("dog/0001.jpg"))
    assert torch.equal(decode_image(index.splits["train"].reader.read(key), key), reference)
    tensors = small(path, pipeline="tensor")
    direct = small(folder, pipeline="tensor")
    assert torch.equal(next(iter(tensors.test))[0], next(iter(direct.test))[0])


def test_loader_stream_is_deterministic_and_resumable(folder):
    data = small(folder, batch_size=3)
    first = list(data.train.epoch(2))
    again = list(data.train.epoch(2, start_batch=2))
    assert len(first) == 4 and len(again) == 2
    for (x1, y1), (x2, y2) in zip(first[2:], again, strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    other = list(data.train.epoch(3))
    assert not torch.equal(first[0][0], other[0][0])


def test_workers_rrc_and_distributed_shards(folder):
    state = torch.get_rng_state()
    ranks = [small(folder, batch_size=2, augment="rrc", num_workers=2, rank=r, world_size=2) for r in (0, 1)]
    seen = [torch.cat([y for _, y in data.train.epoch(0)]) for data in ranks]
    assert [len(s) for s in seen] == [6, 6]
    assert torch.equal(torch.get_rng_state(), state)  # no global RNG use
    assert ranks[0].train.sampler.per_rank == 6


def test_eval_views(folder):
    ten = small(folder, eval_view="ten-crop", eval_batch_size=4)
    x, y = next(iter(ten.test))
    assert x.shape == (4, 10, 3, 24, 24) and len(y) == 4
    full = small(folder, eval_view="full")
    x, _ = next(iter(full.test))
    assert x.shape[0] == 1 and min(x.shape[-2:]) == round(24 * 256 / 224)
    center = small(folder)
    assert next(iter(center.test))[0].shape == (6, 3, 24, 24)


def test_test_and_val_splits_and_carved_validation(tmp_path):
    root = write_image_folder(tmp_path / "three", per_class=2, splits={"train": 10, "val": 2, "test": 3})
    data = small(root, val_size=None)
    assert (data.num_train, data.num_val, data.num_test) == (30, 6, 9)
    root2 = write_image_folder(tmp_path / "tt", splits={"train": 10, "test": 2})
    carved = small(root2, val_size=None)
    assert (carved.num_train, carved.num_val, carved.num_test) == (27, 3, 6)


# --- layout errors --------------------------------------------------------------------------------------------


def test_missing_directory_shows_layout(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"does not exist; expected an image folder laid out as ROOT/train"):
        load_data(str(tmp_path / "nowhere"))


def test_wrong_layouts(tmp_path):
    flat = tmp_path / "flat" / "train"
    flat.mkdir(parents=True)
    (flat / "a.jpg").write_bytes(image_bytes())
    with pytest.raises(DataError, match=r"not inside a class folder.*ROOT/train/<class>/<image>"):
        index_folder(tmp_path / "flat")
    only_train = write_image_folder(tmp_path / "only", splits={"train": 1})
    with pytest.raises(DataError, match="only a train split"):
        index_folder(only_train)
    no_train = tmp_path / "nt" / "images" / "cat"
    no_train.mkdir(parents=True)
    with pytest.raises(DataNotFoundError, match="no training images"):
        index_folder(tmp_path / "nt")


def test_empty_class_and_unknown_eval_class_are_errors(folder):
    (folder / "train" / "zebra").mkdir()
    with pytest.raises(DataError, match="zebra hold no images"):
        index_folder(folder)
    (folder / "train" / "zebra").rmdir()
    shutil.copytree(folder / "val" / "cat", folder / "val" / "lion")
    with pytest.raises(DataError, match="lion are not in the train split"):
        index_folder(folder)


def test_non_image_files_are_reported(folder):
    (folder / "train" / "cat" / "notes.txt").write_text("hi")
    with pytest.warns(UserWarning, match="ignored 1 non-image file"):
        index_folder(folder)


# --- bad images -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"", b"not an image", image_bytes()[:300]], ids=["empty", "corrupt", "truncated"])
def test_bad_image_is_named_or_skipped(folder, content):
    bad = folder / "train" / "dog" / "0002.jpg"
    bad.write_bytes(content)
    with pytest.raises(DataError, match=r"cannot decode image .*dog/0002.jpg.*--on-bad-image skip"):
        small(folder, pipeline="tensor")
    with pytest.warns(UserWarning, match="skipped 1 unreadable image"):
        data = small(folder, pipeline="tensor", on_bad_image="skip")
    assert data.num_train == 11
    loader = small(folder, on_bad_image="skip", batch_size=12)
    with pytest.warns(UserWarning, match="epoch 0: skipped 1 unreadable image"):
        batches = list(loader.train.epoch(0))
    assert sum(len(y) for _, y in batches) == 11
    strict = small(folder, batch_size=12)
    with pytest.raises(DataError, match=r"dog/0002.jpg"):
        list(strict.train.epoch(0))


@pytest.mark.parametrize("mode,fmt", [("L", "JPEG"), ("CMYK", "JPEG"), ("P", "PNG"), ("RGBA", "PNG"), ("LA", "PNG")])
def test_modes_are_converted_to_rgb(mode, fmt):
    image = decode_image(image_bytes((20, 10), mode=mode, fmt=fmt), "x")
    assert image.shape == (3, 10, 20) and image.dtype == torch.uint8


def test_decompression_bomb_guard_stays_on(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(DataError, match="decompression bomb"):
        decode_image(image_bytes((40, 40)), "bomb.jpg")


def test_folder_info(folder):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        info = dataset_info(folder)
    assert info["splits"] == {"train": 12, "val": 6} and info["image_size"] == (32, 32)
    assert info["class_counts"]["train"] == [4, 4, 4] and len(info["mean"]) == 3


def test_option_errors(folder):
    with pytest.raises(ConfigError, match="normalize='pixel'"):
        small(folder, normalize="pixel")
    with pytest.raises(ConfigError, match="eval_view must be one of"):
        small(folder, eval_view="five-crop")
    with pytest.raises(ConfigError, match="in_chans=1"):
        small(folder, in_chans=1)


def test_small_images_train_at_their_own_size_on_the_tensor_pipeline(folder):
    data = load_data(folder, batch_size=4, val_size=0)
    assert (data.pipeline, data.image_size) == ("tensor", (32, 32))
    assert data.train.augment and data.train.pad == 4  # CIFAR-style: pad-4 crop + flip
    assert next(iter(data.train.epoch(0)))[0].shape == (4, 3, 32, 32)
    assert data.pipeline_reason.startswith("tensor pipeline at 32x32")


def test_large_or_mixed_images_keep_the_imagenet_pipeline(tmp_path):
    large = write_image_folder(tmp_path / "large", splits={"train": 2, "val": 1}, size=(96, 80))
    data = load_data(large, batch_size=2, val_size=0, num_workers=0)
    assert (data.pipeline, data.image_size) == ("loader", (224, 224))
    assert data.pipeline_reason == "ImageNet pipeline at 224x224: 96x80 images (over 64 px)"
    mixed = write_image_folder(tmp_path / "mixed", splits={"train": 2, "val": 1}, size=(32, 32))
    (mixed / "train" / "cat" / "wide.jpg").write_bytes(image_bytes((40, 32)))
    assert load_data(mixed, batch_size=2, val_size=0, num_workers=0).pipeline == "loader"


@pytest.mark.parametrize(
    ("option", "reason"),
    [
        ({"pipeline": "loader"}, "data.pipeline = loader (set)"),
        ({"crop_size": 24}, "ImageNet pipeline: data.crop_size set"),
    ],
)
def test_set_options_override_the_choice(folder, option, reason):
    data = load_data(folder, batch_size=4, val_size=0, num_workers=0, **option)
    assert (data.pipeline, data.pipeline_reason) == ("loader", reason)
    assert data.image_size == (24, 24) if "crop_size" in option else (224, 224)


def test_the_run_header_says_which_pipeline_why_and_what_validates(folder, tmp_path, capsys):
    from resnet.cli import main
    from resnet.runs import read_checkpoint

    argv = ["train", "--model", "resnet8", "--dataset", str(folder), "--iterations", "1", "--batch-size", "3",
            "--subset", "3", "--device", "cpu", "--run-dir", str(tmp_path / "run"), "--progress", "plain",
            "--set", "log.tensorboard=false", "--set", "data.val_size=4"]  # fmt: skip
    assert main(argv) == 0
    captured = capsys.readouterr()
    header = (captured.out + captured.err).splitlines()
    assert any(line.startswith("data: tensor pipeline at 32x32, the images' own size") for line in header)
    assert any("(3 images, 1 iteration/epoch)" in line for line in header)
    assert any(line.startswith("validation: all 4 held-out images at every evaluation (--subset 3") for line in header)
    assert read_checkpoint(tmp_path / "run" / "last.pt").meta["preprocessing"]["crop"] == [32, 32]
