"""Bad data and bad model inputs: cases 4, 5, 7-9, 14-18 of issue 7 (see docs/bad-inputs.md).

Every refused command must exit 2 with one line and leave every earlier file as it was.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from bad_inputs import (
    TRAIN,
    cifar_batch,
    cifar_folder,
    corrupt_jpeg,
    crafted_pickle,
    gray16_image_bytes,
    image_folder,
    one_error_line,
    png16,
    run_cli,
    silent_server,
    snapshot,
)
from resnet.data import download, load_data, registry
from resnet.data.decode import decode_rgb
from resnet.data.sources.cifar import CIFAR10
from resnet.data.sources.safe_pickle import UnsafePickleError, safe_loads
from resnet.errors import ConfigError, InputError
from resnet.models import create_model

# --- 4. 16-bit grayscale PNG -----------------------------------------------------------------------------------------


def test_16_bit_grayscale_scales_like_16_bit_rgb(tmp_path: Path) -> None:
    values = np.arange(0, 65536, 1024, dtype=np.uint16).reshape(8, 8)
    gray = decode_rgb(gray16_image_bytes(values), "gray16.png")
    expected = torch.from_numpy((values >> 8).astype(np.uint8))
    assert gray.dtype == torch.uint8 and gray.shape == (3, 8, 8)
    assert all(torch.equal(gray[c], expected) for c in range(3))  # not saturated at 255
    rgb = decode_rgb(png16(tmp_path / "rgb16.png", np.stack([values] * 3, -1)).read_bytes(), "rgb16.png")
    assert torch.equal(rgb, gray)  # the same picture decodes the same in either form
    written = decode_rgb(png16(tmp_path / "gray16.png", values).read_bytes(), "gray16.png")
    assert torch.equal(written, gray)


def test_16_bit_grayscale_folder_statistics(capsys, tmp_path: Path) -> None:
    for split, count in (("train", 3), ("test", 1)):
        for name in ("a", "b"):
            for i in range(count):
                png16(tmp_path / "folder" / split / name / f"{i}.png", np.full((8, 8), 32768, dtype=np.uint16))
    code, out, err = run_cli(capsys, "data", "info", str(tmp_path / "folder"), "--json")
    assert code == 0, err
    assert json.loads(out)["mean"] == pytest.approx((128 / 255,) * 3)  # 32768 >> 8, not 255


# --- 5. class folders without images ---------------------------------------------------------------------------------


@pytest.mark.parametrize("content", ["dsstore", "text", "tar-empty-dir", "tar-dsstore"])
def test_a_class_without_images_is_an_error(capsys, tmp_path: Path, content: str) -> None:
    folder = image_folder(tmp_path / "folder")
    empty = folder / "train" / "zebra"
    empty.mkdir()
    if content in ("dsstore", "tar-dsstore"):
        (empty / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    elif content == "text":
        (empty / "README.txt").write_text("zebras to come")
    target = folder
    if content.startswith("tar"):
        target = tmp_path / "folder.tar.gz"
        with tarfile.open(target, "w:gz") as tar:
            tar.add(folder, arcname="folder")
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, "data", "info", str(target))
    assert code == 2
    line = one_error_line(err)
    assert "class folder(s) zebra hold no images" in line and "never dropped silently" in line
    assert snapshot(tmp_path) == before


# --- 7. data info on corrupt images; skip counts ---------------------------------------------------------------------


def test_data_info_reports_a_corrupt_image(capsys, tmp_path: Path) -> None:
    folder = image_folder(tmp_path / "folder")
    bad = corrupt_jpeg(folder / "train" / "b" / "0003.jpg")
    before = snapshot(folder)
    code, _, err = run_cli(capsys, "data", "info", str(folder))
    assert code == 2
    line = one_error_line(err)
    assert f"cannot decode image {bad}" in line and "--on-bad-image skip" in line
    code, out, err = run_cli(capsys, "data", "info", str(folder), "--on-bad-image", "skip")
    assert code == 0, err
    assert f"skipped:     1 unreadable image(s), e.g. {bad}" in out and "checked:     30 image(s)" in out
    assert snapshot(folder) == before


def test_skipped_images_are_counted_in_the_summary_with_a_plain_warning(capsys, tmp_path: Path) -> None:
    folder = image_folder(tmp_path / "folder")
    corrupt_jpeg(folder / "train" / "c" / "0001.jpg")
    run_dir = tmp_path / "run"
    argv = [*TRAIN, "--dataset", str(folder), "--iterations", "2", "--run-dir", str(run_dir), "--on-bad-image", "skip"]
    code, _, err = run_cli(capsys, *argv)
    assert code == 0, err
    assert json.loads((run_dir / "summary.json").read_text())["skipped_images"] == 1
    warnings = [line for line in err.splitlines() if "skipped 1 unreadable image(s)" in line]
    assert warnings and all(line.startswith("warning: ") for line in warnings)
    assert "UserWarning" not in err and "warnings.warn" not in err


# --- 14. a bad image read by a DataLoader worker ---------------------------------------------------------------------


def test_a_bad_image_in_a_worker_is_one_line(capsys, tmp_path: Path) -> None:
    folder = image_folder(tmp_path / "folder")
    bad = corrupt_jpeg(folder / "train" / "a" / "0002.jpg")
    run_dir = tmp_path / "run"
    argv = [*TRAIN, "--dataset", str(folder), "--iterations", "3", "--run-dir", str(run_dir)]
    argv[argv.index("data.pipeline=tensor")] = "data.pipeline=loader"
    code, _, err = run_cli(capsys, *argv, "--set", "data.num_workers=1", "--set", "data.crop_size=8")
    assert code == 2
    line = one_error_line(err)
    assert line.startswith(f"resnet train: error: cannot decode image {bad}")
    assert "DataLoader worker" not in err and "Original Traceback" not in err


# --- 8. a crafted CIFAR batch; 15. damaged CIFAR files ---------------------------------------------------------------


def test_the_cifar_unpickler_refuses_code_and_reads_real_batches(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    with pytest.raises(UnsafePickleError, match=r"(posix|os)\.system"):
        safe_loads(crafted_pickle(marker))
    assert not marker.exists()
    entry = safe_loads(cifar_batch(4))
    assert entry["data"].dtype == np.uint8 and entry["data"].shape == (4, 3072) and len(entry["labels"]) == 4
    with pytest.raises(UnsafePickleError, match="dtype object"):
        safe_loads(pickle.dumps({"data": np.array([1, "x"], dtype=object)}, protocol=2))


def test_a_crafted_cifar_batch_never_runs(capsys, monkeypatch, tmp_path: Path) -> None:
    folder = cifar_folder(tmp_path / "data")
    marker = tmp_path / "pwned"
    (folder / "data_batch_2").write_bytes(crafted_pickle(marker))
    before = snapshot(tmp_path)
    argv = ("data", "info", "cifar10", "--data-dir", str(tmp_path / "data"), "--no-download")
    code, _, err = run_cli(capsys, *argv)  # the published checksums stop it before it is unpickled
    assert code == 2
    assert f"{folder / 'data_batch_1'} is not the official cifar-10-batches-py file" in one_error_line(err)
    monkeypatch.setattr(registry, "CIFAR10", dataclasses.replace(CIFAR10, member_md5={}))  # no checksum to rely on
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    line = one_error_line(err)
    assert f"{folder / 'data_batch_2'} is not a CIFAR python batch" in line and "system" in line
    assert not marker.exists()
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("damage", ["missing", "garbage-meta", "label-out-of-range"])
def test_damaged_cifar_files_are_one_line(capsys, monkeypatch, tmp_path: Path, damage: str) -> None:
    monkeypatch.setattr(registry, "CIFAR10", dataclasses.replace(CIFAR10, member_md5={}))
    folder = cifar_folder(tmp_path / "data")
    if damage == "missing":
        (folder / "data_batch_5").unlink()
        expected = f"{folder} lacks data_batch_5"
    elif damage == "garbage-meta":
        (folder / "batches.meta").write_bytes(b"\x80\x02garbage that is no pickle")
        expected = f"{folder / 'batches.meta'} is not a CIFAR python batch"
    else:
        (folder / "data_batch_3").write_bytes(cifar_batch(10, labels=[0] * 9 + [12]))
        expected = f"{folder / 'data_batch_3'}: label 12 is out of range for 10 classes"
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, "data", "info", "cifar10", "--data-dir", str(tmp_path / "data"), "--no-download")
    assert code == 2
    assert expected in one_error_line(err)
    assert snapshot(tmp_path) == before


def test_small_cifar_copy_has_a_sane_default_split(capsys, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(registry, "CIFAR10", dataclasses.replace(CIFAR10, member_md5={}))
    cifar_folder(tmp_path / "data")
    code, out, err = run_cli(capsys, "data", "info", "cifar10", "--data-dir", str(tmp_path / "data"), "--no-download")
    assert code == 0, err
    assert "default training split: train 45 / val 5" in out


# --- 9. a download that stalls ---------------------------------------------------------------------------------------


def test_a_stalled_download_times_out_and_says_how_to_place_the_file(capsys, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(download, "TIMEOUT_S", 0.5)
    monkeypatch.setattr(download, "ATTEMPTS", 2)
    monkeypatch.setattr(download, "BACKOFF_S", 0.05)
    with silent_server() as base:
        monkeypatch.setattr(registry, "CIFAR10", dataclasses.replace(CIFAR10, url=base + CIFAR10.archive))
        start = time.monotonic()
        code, _, err = run_cli(capsys, "data", "info", "cifar10", "--data-dir", str(tmp_path / "data"))
        elapsed = time.monotonic() - start
    assert code == 2 and elapsed < 5
    line = one_error_line(err)
    assert "failed after 2 attempts (no answer within 0.5 s)" in line
    assert "--data-dir" in line and "RESNET_DATA" in line and f"cifar10/{CIFAR10.archive}" in line
    assert "retrying in 0.05 s (attempt 2 of 2)" in err
    assert not list((tmp_path / "data").rglob("*.part"))


# --- 16. disk full while writing the tensor cache --------------------------------------------------------------------


def test_a_full_disk_for_the_tensor_cache_falls_back_to_memory(tmp_path: Path, cache_dir: Path) -> None:
    import resource
    import signal

    folder = image_folder(tmp_path / "folder")
    saved_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    saved_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024, saved_limit[1]))  # the cache file is ~6 KB
        with pytest.warns(UserWarning, match="the disk is full.*using the decoded data from memory"):
            data = load_data(folder, pipeline="tensor", batch_size=4, val_size=0)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, saved_limit)
        signal.signal(signal.SIGXFSZ, saved_handler)
    assert data.num_train == 24
    assert not [p for p in cache_dir.rglob("*") if p.is_file()]  # no partial cache file left


# --- 17. model inputs and options; 18. stride_on on basic blocks ----------------------------------------------------


def test_uint8_images_and_small_images_are_clear_errors() -> None:
    with pytest.raises(InputError, match=r"expects floating-point images, got torch\.uint8"):
        create_model("resnet8")(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    with torch.device("meta"):  # the checks come first; no need for VGG's 140M real weights
        vgg = create_model("vgg19", num_classes=2)
        with pytest.raises(InputError, match="expects floating-point images"):
            vgg(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
        with pytest.raises(InputError, match=r"at least 32x32 pixels.*got 28x28"):
            vgg(torch.zeros(1, 3, 28, 28))


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("vgg19", {"dropout": "abc"}, "dropout must be a number in \\[0, 1\\), got 'abc'"),
        ("vgg19", {"dropout": True}, "dropout must be a number"),
        ("resnet20", {"stride_on": "1x1"}, "applies to bottleneck blocks only"),
        ("resnet34", {"stride_on": "1x1"}, "resnet34 has basic blocks"),
    ],
)
def test_bad_model_options_are_config_errors(name: str, options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        create_model(name, **options)


def test_stride_on_still_works_on_bottlenecks() -> None:
    with torch.device("meta"):
        model = create_model("resnet50", stride_on="1x1", num_classes=2)
    assert model.layer2[0].conv1.stride == (2, 2) and model.layer2[0].conv2.stride == (1, 1)


def test_bad_model_option_from_the_cli(capsys, tmp_path: Path) -> None:
    folder = image_folder(tmp_path / "folder", size=8, train=4, test=1)
    before = snapshot(folder)
    argv = [*TRAIN, "--dataset", str(folder), "--iterations", "1", "--run-dir", str(tmp_path / "run")]
    code, _, err = run_cli(capsys, *argv, "--set", 'model.options.stride_on="1x1"')
    assert code == 2 and "stride_on='1x1' applies to bottleneck blocks only" in one_error_line(err)
    assert snapshot(folder) == before and not (tmp_path / "run").exists()


@pytest.mark.parametrize("suffix", [".tar", ".tar.gz"])
def test_hard_linked_images_in_an_archive_are_read_not_dropped(tmp_path: Path, suffix: str) -> None:
    import os

    from resnet.data.sources.folder import index_folder
    from synthetic import tar_tree, write_image_folder

    root = write_image_folder(tmp_path / "tree", classes=("a", "b"), splits={"train": 3, "test": 2}, size=(8, 8))
    first = root / "train" / "a" / "0000.jpg"
    os.link(first, root / "train" / "a" / "copy.jpg")  # tar stores the second name as a hard-link member
    archive = tar_tree(root, tmp_path / f"tree{suffix}")
    with tarfile.open(archive) as tar:
        assert any(member.islnk() for member in tar)
    index = index_folder(archive)
    train = index.splits["train"]
    assert len(train.samples) == 7  # 3 + 3 images and the hard link
    keys = dict(train.samples)
    [(_, data)] = list(train.reader.iter_bytes([k for k in keys if k.endswith("copy.jpg")]))
    assert data == first.read_bytes()
