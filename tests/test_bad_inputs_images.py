"""Bad images and image folders: cases 19-22 of docs/bad-inputs.md (issue 19 items 1, 2, 4, 12).

Extreme sizes are bad images before anything is allocated, on every decoding path; symlink loops are followed
once; 16-bit grayscale decodes the same for training and prediction; archives are recognised by content.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bad_inputs import (
    TRAIN,
    gray16_image_bytes,
    image_folder,
    misnamed_archive,
    one_error_line,
    png8,
    png16,
    run_cli,
    snapshot,
    symlink_loops,
)
from resnet.data.decode import MAX_ASPECT_RATIO, BadImageError, check_size, decode_image, decode_rgb
from resnet.inference import UnreadableImageError, read_image

# --- 19. extreme aspect ratios and decompression bombs --------------------------------------------------------------


def _jpeg(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 30)).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("width", "height", "pixel_data", "message"),
    [
        (20000, 1, True, "aspect ratio is 20,000:1"),  # the 144-byte PNG
        (1, 60000, True, "aspect ratio is 60,000:1"),  # tall, and a traceback before
        (MAX_ASPECT_RATIO * 10 + 10, 10, True, f"above the limit of {MAX_ASPECT_RATIO}:1"),  # just over the limit
        (100_000, 100_000, False, "decompression bomb"),  # a header that claims 10^10 pixels
    ],
)
def test_extreme_png_sizes_are_bad_images(tmp_path: Path, width: int, height: int, pixel_data: bool, message: str):
    data = png8(tmp_path / "x.png", width, height, pixel_data=pixel_data).read_bytes()
    assert len(data) < 2000
    with pytest.raises(BadImageError, match=message) as caught:
        decode_rgb(data, "x.png")
    assert str(caught.value).startswith("cannot decode image x.png: ") and "--on-bad-image skip" in str(caught.value)
    with pytest.raises(UnreadableImageError, match=message):  # prediction's reader: the same decoder
        read_image(tmp_path / "x.png", "L")


def test_extreme_jpeg_is_refused_before_torchvision_decodes_it() -> None:
    with pytest.raises(BadImageError, match="aspect ratio is 2,500:1"):
        decode_rgb(_jpeg(20000, 8), "strip.jpg")


def test_the_limits_leave_ordinary_shapes_alone(tmp_path: Path) -> None:
    assert decode_rgb(png8(tmp_path / "p.png", MAX_ASPECT_RATIO * 2, 2).read_bytes(), "p.png").shape == (3, 2, 100)
    assert decode_image(_jpeg(300, 40), "pano.jpg", "L").shape == (1, 40, 300)
    check_size(4000, 3000, "photo.jpg", resize_to=480)
    with pytest.raises(BadImageError, match="resizing its shorter side to 5000 would make"):
        check_size(400, 20, "wide.png", resize_to=5000)  # within the aspect limit, too large once resized


def test_a_strip_in_a_training_folder_is_a_bad_image(capsys, tmp_path: Path) -> None:
    folder = image_folder(tmp_path / "folder")
    strip = png8(folder / "test" / "a" / "strip.png", 20000, 1)  # the test split is evaluated in full
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, "data", "info", str(folder))
    assert code == 2
    line = one_error_line(err)
    assert f"cannot decode image {strip}: its aspect ratio is 20,000:1" in line and "--on-bad-image skip" in line
    code, out, err = run_cli(capsys, "data", "info", str(folder), "--on-bad-image", "skip")
    assert code == 0, err
    assert f"skipped:     1 unreadable image(s), e.g. {strip}" in out
    argv = [*TRAIN, "--dataset", str(folder), "--iterations", "2", "--run-dir", str(tmp_path / "run")]
    argv[argv.index("data.pipeline=tensor")] = "data.pipeline=loader"  # DataLoader workers, shorter side resized
    code, _, err = run_cli(capsys, *argv, "--set", "data.num_workers=1", "--set", "data.crop_size=8")
    assert code == 2
    assert f"cannot decode image {strip}: its aspect ratio" in one_error_line(err) and "DataLoader" not in err
    assert {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("run")} == before


def test_a_strip_in_a_tensor_cache_folder_is_skipped(capsys, tmp_path: Path) -> None:
    folder = image_folder(tmp_path / "folder")
    png8(folder / "train" / "b" / "strip.png", 1, 20000)
    run_dir = tmp_path / "run"
    argv = [*TRAIN, "--dataset", str(folder), "--iterations", "2", "--run-dir", str(run_dir), "--on-bad-image", "skip"]
    code, _, err = run_cli(capsys, *argv)  # decoded once into the tensor cache
    assert code == 0, err
    assert json.loads((run_dir / "summary.json").read_text())["skipped_images"] == 1


# --- 20. symlink loops in image folders ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["self", "branching", "ancestor", "file"])
def test_symlink_loops_are_followed_once(capsys, tmp_path: Path, kind: str) -> None:
    folder = image_folder(tmp_path / "folder")
    link = symlink_loops(folder, kind)
    before = snapshot(folder / "test")
    start = time.monotonic()
    code, out, err = run_cli(capsys, "data", "info", str(folder), "--json")
    assert code == 0, err
    assert time.monotonic() - start < 30  # the branching loop used to grow until killed
    info = json.loads(out)
    assert info["class_counts"]["train"] == [8, 8, 8]  # not 328
    warnings = [line for line in err.splitlines() if line.strip()]
    assert len(warnings) == 1 and warnings[0].startswith("warning: ") and "Traceback" not in err
    if kind == "file":
        assert f"e.g. {link} (the same file as {folder / 'train' / 'a' / '0000.jpg'})" in warnings[0]
    else:
        assert "symbolic link(s) lead to a folder already listed or to one that contains it" in warnings[0]
        assert str(link) in warnings[0]
    assert snapshot(folder / "test") == before


def test_a_linked_folder_outside_the_tree_is_still_read(capsys, tmp_path: Path) -> None:
    folder = image_folder(tmp_path / "folder")
    extra = image_folder(tmp_path / "extra")
    (folder / "train" / "a" / "more").symlink_to(extra / "train" / "a")
    code, out, err = run_cli(capsys, "data", "info", str(folder), "--json")
    assert code == 0 and "warning" not in err, err
    assert json.loads(out)["class_counts"]["train"] == [16, 8, 8]


# --- 21. 16-bit grayscale: one decoder for training and prediction --------------------------------------------------


@pytest.mark.parametrize("form", ["png-pil", "png-bytes", "tiff"])
def test_16_bit_grayscale_predicts_as_it_trains(tmp_path: Path, form: str) -> None:
    values = np.arange(0, 65536, 1024, dtype=np.uint16).reshape(8, 8)
    path = tmp_path / f"gray16.{'tif' if form == 'tiff' else 'png'}"
    if form == "png-pil":
        path.write_bytes(gray16_image_bytes(values))
    elif form == "png-bytes":
        png16(path, values)
    else:
        Image.fromarray(values).save(path, "TIFF")
    expected = torch.from_numpy((values >> 8).astype(np.uint8))
    training = decode_rgb(path.read_bytes(), str(path))
    assert torch.equal(training, expected.expand(3, -1, -1))
    assert torch.equal(read_image(path, "RGB"), training)  # resnet predict's reader (before: all 254-255)
    assert torch.equal(read_image(path, "L")[0], expected)  # and in a grayscale model's mode


# --- 22. archives whose names lie, and files that are no archive ----------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind"),
    [("plain.tar.gz", "tar"), ("gzip.tar", "gz"), ("bzip2.tar.gz", "bz2"), ("xz.tgz", "xz")],
)
def test_archives_are_read_by_their_content(capsys, tmp_path: Path, name: str, kind: str) -> None:
    folder = image_folder(tmp_path / "folder")
    archive = misnamed_archive(folder, tmp_path / name, kind)
    code, out, err = run_cli(capsys, "data", "info", str(archive), "--json")  # also reads images by offset
    assert code == 0, err
    info = json.loads(out)
    assert info["splits"] == {"train": 24, "test": 6} and info["images_checked"] == 30


def test_a_misnamed_split_archive_is_read_by_its_content(capsys, tmp_path: Path) -> None:
    folder = image_folder(tmp_path / "folder")
    root = tmp_path / "splits"
    root.mkdir()
    misnamed_archive(folder / "train", root / "train.tar.gz", "tar")
    misnamed_archive(folder / "test", root / "test.tar", "gz")
    code, out, err = run_cli(capsys, "data", "info", str(root), "--json")
    assert code == 0, err
    assert json.loads(out)["splits"] == {"train": 24, "test": 6}


@pytest.mark.parametrize(
    ("name", "kind", "message"),
    [
        ("data.tar.gz", "zip", "is a zip file, not a .tar/.tar.gz/.tar.bz2/.tar.xz archive"),
        ("data.tar.gz", "gz-no-tar", "is a gzip-compressed file that holds no tar archive"),
        ("data.tar", "png", "is a file of unknown format (no tar header)"),
    ],
)
def test_a_file_that_is_no_tar_says_what_it_is(capsys, tmp_path: Path, name: str, kind: str, message: str) -> None:
    folder = image_folder(tmp_path / "folder")
    target = tmp_path / name
    if kind == "png":
        png8(target, 4, 4)
    else:
        misnamed_archive(folder, target, kind)
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, "data", "info", str(target))
    assert code == 2
    assert f"{target} {message}" in one_error_line(err)
    assert snapshot(tmp_path) == before
