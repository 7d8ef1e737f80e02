"""Bad inputs to the data room (resnet.data): image files, image folders, archives, CIFAR files, downloads, caches.

What it guarantees: a bad image (undecodable, an extreme size or aspect ratio, a decompression bomb's header, a FIFO
or device named like an image) is refused from its header or file type before anything is decoded or allocated, in
one line naming the file, on every path that reads images (``data info``, the tensor cache, DataLoader workers,
``predict``'s reader), or skipped and counted with ``--on-bad-image skip``; 16-bit grayscale decodes to its high
byte everywhere; an image folder is read once through symbolic links, and a class is never dropped silently (no
images, a dangling link, a name that is no UTF-8); archives are recognised by their content and their hard links
read; CIFAR files are checked against the published checksums and never unpickled into code; a stalled download
times out and says where to place the file; a full disk under a cache falls back to memory or is one line with no
temporary file left. Every refused command exits 2 with one line and leaves every earlier file as it was.
"""

from __future__ import annotations

import dataclasses
import errno
import io
import json
import os
import pickle
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bad_inputs import (
    TRAIN,
    cifar_batch,
    cifar_folder,
    corrupt_jpeg,
    crafted_pickle,
    gray16_image_bytes,
    image_folder,
    misnamed_archive,
    one_error_line,
    png8,
    png16,
    run_cli,
    silent_server,
    snapshot,
    symlink_loops,
)
from resnet.data import download, load_data, registry
from resnet.data.decode import MAX_ASPECT_RATIO, BadImageError, check_size, decode_image
from resnet.data.sources.cifar import CIFAR10
from resnet.data.sources.safe_pickle import UnsafePickleError, safe_loads
from resnet.inference import UnreadableImageError, read_image

# --- image files: one decoder, sizes refused from the header, regular files only ------------------------------------


def test_16_bit_grayscale_scales_like_16_bit_rgb(tmp_path: Path) -> None:
    values = np.arange(0, 65536, 1024, dtype=np.uint16).reshape(8, 8)
    gray = decode_image(gray16_image_bytes(values), "gray16.png")
    expected = torch.from_numpy((values >> 8).astype(np.uint8))
    assert gray.dtype == torch.uint8 and gray.shape == (3, 8, 8)
    assert all(torch.equal(gray[c], expected) for c in range(3))  # not saturated at 255
    rgb = decode_image(png16(tmp_path / "rgb16.png", np.stack([values] * 3, -1)).read_bytes(), "rgb16.png")
    assert torch.equal(rgb, gray)  # the same picture decodes the same in either form
    written = decode_image(png16(tmp_path / "gray16.png", values).read_bytes(), "gray16.png")
    assert torch.equal(written, gray)


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
    training = decode_image(path.read_bytes(), str(path))
    assert torch.equal(training, expected.expand(3, -1, -1))
    assert torch.equal(read_image(path, "RGB"), training)  # resnet predict's reader (before: all 254-255)
    assert torch.equal(read_image(path, "L")[0], expected)  # and in a grayscale model's mode


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
        decode_image(data, "x.png")
    assert str(caught.value).startswith("cannot decode image x.png: ") and "--on-bad-image skip" in str(caught.value)
    with pytest.raises(UnreadableImageError, match=message):  # prediction's reader: the same decoder
        read_image(tmp_path / "x.png", "L")


def test_extreme_jpeg_is_refused_before_torchvision_decodes_it() -> None:
    with pytest.raises(BadImageError, match="aspect ratio is 2,500:1"):
        decode_image(_jpeg(20000, 8), "strip.jpg")


def test_the_limits_leave_ordinary_shapes_alone(tmp_path: Path) -> None:
    assert decode_image(png8(tmp_path / "p.png", MAX_ASPECT_RATIO * 2, 2).read_bytes(), "p.png").shape == (3, 2, 100)
    assert decode_image(_jpeg(300, 40), "pano.jpg", "L").shape == (1, 40, 300)
    check_size(4000, 3000, "photo.jpg", resize_to=480)
    with pytest.raises(BadImageError, match="resizing its shorter side to 5000 would make"):
        check_size(400, 20, "wide.png", resize_to=5000)  # within the aspect limit, too large once resized


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "dangling"])
def test_special_files_named_like_images_are_bad_images(tmp_path: Path, capsys, kind: str) -> None:
    folder = image_folder(tmp_path / "folder")
    special = folder / "train" / "b" / "x.png"
    if kind == "fifo":
        os.mkfifo(special)  # no writer: reading it would block forever
    elif kind == "dev-zero":
        special.symlink_to("/dev/zero")  # reading it would never end
    else:
        special.symlink_to(tmp_path / "gone.png")
    says = {"fifo": "a FIFO, not a regular file", "dev-zero": "a character device, not a regular file",
            "dangling": f"a symbolic link to {tmp_path / 'gone.png'}, which does not exist"}[kind]  # fmt: skip
    code, _, err = run_cli(capsys, "data", "info", str(folder))
    assert code == 2 and f"image {special}" in one_error_line(err) and says in one_error_line(err)
    code, out, err = run_cli(capsys, "data", "info", str(folder), "--on-bad-image", "skip")
    assert code == 0 and f"skipped:     1 unreadable image(s), e.g. {special}" in out, err
    code, out, err = run_cli(capsys, "predict", str(special), str(folder / "test" / "a"), "--checkpoint", "x.pt")
    assert code == 2 and "Traceback" not in err  # no checkpoint: refused before any image is read
    from resnet.inference.images import UnreadableImageError, read_image

    with pytest.raises(UnreadableImageError, match=says):
        read_image(special, "RGB")


# --- image folders: classes never dropped silently, links followed once ---------------------------------------------


def test_16_bit_grayscale_folder_statistics(capsys, tmp_path: Path) -> None:
    for split, count in (("train", 3), ("test", 1)):
        for name in ("a", "b"):
            for i in range(count):
                png16(tmp_path / "folder" / split / name / f"{i}.png", np.full((8, 8), 32768, dtype=np.uint16))
    code, out, err = run_cli(capsys, "data", "info", str(tmp_path / "folder"), "--json")
    assert code == 0, err
    assert json.loads(out)["mean"] == pytest.approx((128 / 255,) * 3)  # 32768 >> 8, not 255


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


def test_a_class_folder_that_is_a_dangling_link_is_refused(tmp_path: Path, capsys) -> None:
    folder = image_folder(tmp_path / "folder")
    (folder / "train" / "zebra").symlink_to(tmp_path / "moved-away")
    before = snapshot(folder)
    for argv in (["data", "info", str(folder)], [*TRAIN, "--dataset", str(folder), "--iterations", "1",
                                                 "--run-dir", str(tmp_path / "run")]):  # fmt: skip
        code, _, err = run_cli(capsys, *argv)
        line = one_error_line(err)
        assert code == 2 and f"{folder / 'train' / 'zebra'} is a symbolic link to {tmp_path / 'moved-away'}" in line
        assert "never dropped silently" in line
    assert snapshot(folder) == before and not (tmp_path / "run" / "last.pt").exists()


def test_a_latin_1_class_folder_is_one_line(tmp_path: Path, capsys) -> None:
    folder = image_folder(tmp_path / "folder")
    latin = os.fsencode(folder / "train") + b"/caf\xe9"
    os.rename(folder / "train" / "c", latin)
    os.rename(folder / "test" / "c", os.fsencode(folder / "test") + b"/caf\xe9")
    code, _, err = run_cli(capsys, *TRAIN, "--dataset", str(folder), "--iterations", "1", "--run-dir",
                           str(tmp_path / "run"))  # fmt: skip
    line = one_error_line(err)
    assert code == 2 and "the class folder 'caf\\udce9' is not valid UTF-8 (byte 0xe9 at position 3" in line
    assert not (tmp_path / "run" / "last.pt").exists()


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


# --- bad images met by data info and by training (tensor cache, DataLoader workers); skip counts --------------------


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


# --- archives: read by their content; hard links; the archive cache -------------------------------------------------


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


def test_a_full_archive_cache_is_one_line_and_leaves_no_temporary_file(tmp_path: Path, capsys, monkeypatch) -> None:
    import resnet.data.sources.folder as folder_source
    from synthetic import tar_tree

    archive = tar_tree(image_folder(tmp_path / "folder"), tmp_path / "folder.tar.gz")
    cache = tmp_path / "cache"
    monkeypatch.setenv("RESNET_CACHE", str(cache))

    def disk_full(source, target, ranges) -> None:
        target.write(source.read(1000))  # a part of the archive, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(folder_source, "copy_ranges", disk_full)
    code, _, err = run_cli(capsys, *TRAIN[:-4], "--set", "data.pipeline=loader", "--workers", "0", "--dataset",
                           str(archive), "--iterations", "1", "--run-dir", str(tmp_path / "run"))  # fmt: skip
    line = one_error_line(err)
    assert (
        code == 2 and f"cannot unpack {archive} into the archive cache {cache / 'untarred'} (the disk is full)" in line
    )
    assert list((cache / "untarred").iterdir()) == []  # no full-size temporary left behind


# --- CIFAR files and downloads --------------------------------------------------------------------------------------


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


# --- the tensor cache -----------------------------------------------------------------------------------------------


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


# Sizes from headers before a byte is read; the tensor cache's checksum.
BIG = 600 * 2**20  # above the default limit of 512 MiB for an image file; sparse, so it takes no disk space
TOO_BIG = f"{BIG:,} bytes, above the limit of {512 * 2**20:,} bytes"


def _sparse(path: Path, head: bytes, size: int) -> Path:
    """A file of ``size`` bytes that takes no disk space: ``head``, then a hole."""
    with open(path, "wb") as handle:
        handle.write(head)
        handle.truncate(size)
    return path


def test_an_image_file_above_the_size_limit_is_refused_before_it_is_read(trained: Path, tmp_path: Path, capsys,
                                                                         monkeypatch) -> None:  # fmt: skip
    from resnet.inference.images import UnreadableImageError, read_image

    folder = image_folder(tmp_path / "folder")
    small = next((folder / "test" / "a").iterdir())
    big = _sparse(folder / "train" / "b" / "big.png", small.read_bytes(), BIG)
    code, _, err = run_cli(capsys, "data", "info", str(folder))
    line = one_error_line(err)
    assert code == 2 and f"image {big}: cannot read the file ({TOO_BIG}; set RESNET_MAX_IMAGE_BYTES" in line
    code, out, err = run_cli(capsys, "data", "info", str(folder), "--on-bad-image", "skip")
    assert code == 0 and f"skipped:     1 unreadable image(s), e.g. {big}" in out, err
    code, out, err = run_cli(capsys, "predict", str(big), "--checkpoint", str(trained / "last.pt"))
    assert code == 1 and f"skipped cannot read image {big}: cannot read the file ({TOO_BIG}" in err  # the others go on
    monkeypatch.setenv("RESNET_MAX_IMAGE_BYTES", "100")  # the limit is a setting: here below a small image
    with pytest.raises(UnreadableImageError, match=f"{small.stat().st_size:,} bytes, above the limit of 100 bytes"):
        read_image(small, "RGB")


def _tar_with_a_sparse_member(folder: Path, archive: Path, member: str, size: int) -> Path:
    """``folder`` packed as a plain tar, plus ``member`` of ``size`` bytes whose data is a hole: its size is in its
    header, and nothing but the header is ever written."""
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(folder, arcname=folder.name)
        members_end = tar.offset
    info = tarfile.TarInfo(f"{folder.name}/{member}")
    info.size = size
    with open(archive, "wb") as out:
        out.write(buffer.getvalue()[:members_end] + info.tobuf())
        out.seek(-(-size // 512) * 512, os.SEEK_CUR)
        out.write(bytes(1024))  # the end of the archive
    return archive


def test_an_archive_member_above_the_size_limit_is_a_bad_image_from_its_header(tmp_path: Path, capsys) -> None:
    from resnet.data.decode import BadImageError
    from resnet.data.sources.folder import index_folder

    archive = _tar_with_a_sparse_member(image_folder(tmp_path / "folder"), tmp_path / "f.tar", "train/b/huge.png", BIG)
    assert archive.stat().st_blocks * 512 < 2**20  # the 600 MB member is a hole on disk
    reader = index_folder(archive).splits["train"].reader
    key = "folder/train/b/huge.png"
    [(name, refused)] = list(reader.iter_bytes([key]))
    assert name == key and isinstance(refused, BadImageError) and TOO_BIG in refused.reason
    with pytest.raises(BadImageError, match=TOO_BIG):
        reader.read(key)
    code, _, err = run_cli(capsys, "data", "info", str(archive))
    assert code == 2 and f"image {archive}:{key}: the file is {TOO_BIG} for an image" in one_error_line(err)
    run = ["--dataset", str(archive), "--iterations", "1", "--run-dir", str(tmp_path / "run")]
    code, _, err = run_cli(capsys, *TRAIN, *run, "--on-bad-image", "skip")
    assert code == 0 and "Traceback" not in err


def test_a_tar_gz_member_above_the_limit_never_reaches_the_archive_cache(tmp_path: Path, capsys, monkeypatch) -> None:
    from synthetic import tar_tree

    folder = image_folder(tmp_path / "folder")
    (folder / "train" / "b" / "huge.png").write_bytes(bytes(8 * 2**20))  # compressed to a few kB
    (folder / "train" / "notes.bin").write_bytes(bytes(4 * 2**20))  # not an image: never unpacked either
    archive = tar_tree(folder, tmp_path / "folder.tar.gz")
    cache = tmp_path / "cache"
    monkeypatch.setenv("RESNET_CACHE", str(cache))
    monkeypatch.setenv("RESNET_MAX_IMAGE_BYTES", str(2**20))
    code, _, err = run_cli(capsys, *TRAIN[:-4], "--set", "data.pipeline=loader", "--workers", "0", "--dataset",
                           str(archive), "--iterations", "1", "--run-dir", str(tmp_path / "run"),
                           "--on-bad-image", "skip")  # fmt: skip
    assert code == 0, err
    [unpacked] = (cache / "untarred").iterdir()
    assert unpacked.stat().st_blocks * 512 < 2**20  # the images; the 12 MB of other members are holes


def test_a_damaged_tensor_cache_is_rebuilt_not_loaded(tmp_path: Path, monkeypatch) -> None:
    import warnings

    from resnet.data.paths import tensor_cache_dir
    from resnet.data.sources.base import ArrayDataset, cached_arrays

    monkeypatch.setenv("RESNET_CACHE", str(tmp_path))
    pixels = torch.randint(0, 256, (64, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(64) % 10
    data = ArrayDataset(pixels, labels, pixels[:8].clone(), labels[:8].clone(), [str(i) for i in range(10)])
    builds: list[int] = []

    def build() -> ArrayDataset:
        builds.append(1)
        return data

    cached_arrays("toy", ["key"], build)
    [path] = tensor_cache_dir().glob("toy-*.pt")
    raw = bytearray(path.read_bytes())
    start = raw.find(pixels.flatten()[:64].numpy().tobytes())
    raw[start : start + 2000] = bytes(b ^ 0xFF for b in raw[start : start + 2000])  # 2,000 flipped bytes
    path.write_bytes(raw)
    torch.load(path, weights_only=True)  # the zip is intact: only the checksum tells
    with pytest.warns(UserWarning, match=f"the tensor cache {path} is damaged .*; rebuilding it"):
        again = cached_arrays("toy", ["key"], build)
    assert len(builds) == 2 and torch.equal(again.train_x, pixels)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(cached_arrays("toy", ["key"], build).train_x, pixels) and len(builds) == 2


def test_a_cifar_file_larger_than_any_official_one_is_refused_from_its_size(tmp_path: Path) -> None:
    import tarfile

    from resnet.data.sources.cifar import CIFAR10, MAX_MEMBER_BYTES, _read_members
    from resnet.errors import DataError

    folder = tmp_path / CIFAR10.folder
    folder.mkdir()
    (folder / CIFAR10.meta_file).write_bytes(b"\x80\x04N.")
    archive = _tar_with_a_sparse_member(folder, tmp_path / "cifar.tar", CIFAR10.train_files[0], 2**32)  # 4 GB
    with tarfile.open(archive) as tar:
        assert tar.getmember(f"{folder.name}/{CIFAR10.train_files[0]}").size == 2**32  # a readable archive
    with pytest.raises(DataError, match=f"{CIFAR10.train_files[0]} has {2**32:,} bytes, more than any file of"):
        _read_members(CIFAR10, archive)
    _sparse(folder / CIFAR10.train_files[0], b"\x80\x04", MAX_MEMBER_BYTES + 1)
    with pytest.raises(DataError, match=f"has {MAX_MEMBER_BYTES + 1:,} bytes, more than any file of the official"):
        _read_members(CIFAR10, folder)
