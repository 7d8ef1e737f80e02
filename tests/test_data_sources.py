"""CIFAR (python format) and IDX (MNIST family): download against a local HTTP server, checksums, parsing."""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import http.server
import stat
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import resnet.data.registry as registry
from resnet.data import data_roots, dataset_info, load_data
from resnet.data import paths as data_paths
from resnet.data.paths import cache_dir, checkout_shared_datasets, download_root
from resnet.data.sources.cifar import CIFAR10, CIFAR100
from resnet.data.sources.idx import FASHION_MNIST, FILES, MNIST, read_idx
from resnet.errors import ChecksumError, ConfigError, DataError, DataNotFoundError
from synthetic import idx_bytes, write_cifar_archive, write_idx_files


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def server(tmp_path: Path):
    """A local HTTP server on 127.0.0.1 serving ``tmp_path/www``; yields (folder, base URL, request log)."""
    www = tmp_path / "www"
    www.mkdir()
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            requests.append(self.path)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(www)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{httpd.server_address[1]}/", requests
    httpd.shutdown()
    httpd.server_close()


def serve_cifar(monkeypatch, www: Path, base: str, fmt=CIFAR10, name="CIFAR10", corrupt: bool = False):
    archive = write_cifar_archive(www / fmt.archive, fmt, num_classes=100 if fmt is CIFAR100 else 10)
    good = md5(archive)
    if corrupt:
        archive.write_bytes(archive.read_bytes()[:-100])  # truncated on the wire: the checksum no longer fits
    # synthetic members: no published per-file checksums apply
    monkeypatch.setattr(registry, name, dataclasses.replace(fmt, url=base + fmt.archive, md5=good, member_md5={}))
    return good


# --- paths --------------------------------------------------------------------------------------------------


def test_cache_dir_priority(monkeypatch, tmp_path):
    monkeypatch.delenv("RESNET_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "resnet"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == Path.home() / ".cache" / "resnet"
    monkeypatch.setenv("RESNET_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"


def test_data_dir_beats_environment_beats_cache_beats_shared(monkeypatch, tmp_path, cache_dir):
    monkeypatch.setenv("RESNET_DATA", str(tmp_path / "env"))
    shared = [] if checkout_shared_datasets() is None else [checkout_shared_datasets()]
    assert data_roots() == [tmp_path / "env", cache_dir / "datasets", *shared]
    assert data_roots(tmp_path / "flag") == [tmp_path / "flag", cache_dir / "datasets", *shared]


def test_shared_datasets_beside_the_checkout_are_found(shared_datasets):
    assert checkout_shared_datasets() == shared_datasets.resolve()


def test_downloads_skip_read_only_roots(tmp_path, cache_dir):
    readonly = tmp_path / "ro"
    readonly.mkdir()
    readonly.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        assert download_root(readonly) == cache_dir / "datasets"
    finally:
        readonly.chmod(stat.S_IRWXU)


# --- CIFAR ----------------------------------------------------------------------------------------------------


def test_cifar10_download_verify_extract_parse(monkeypatch, server, cache_dir):
    www, base, requests = server
    serve_cifar(monkeypatch, www, base)
    data = load_data("cifar10", batch_size=8, val_size=10, device="cpu")
    assert (data.num_train, data.num_val, data.num_test) == (90, 10, 20)
    assert data.class_names == [f"class{i}" for i in range(10)] and data.image_size == (32, 32)
    target = cache_dir / "datasets" / "cifar10"
    assert (target / "cifar-10-batches-py" / "data_batch_1").is_file()
    assert not list(target.glob("*.part"))
    # Second time: found locally, no request, no download allowed.
    count = len(requests)
    again = load_data("cifar10", batch_size=8, val_size=10, download=False)
    assert len(requests) == count and again.num_train == 90


def test_cifar_parse_matches_pixels(monkeypatch, server):
    www, base, _ = server
    serve_cifar(monkeypatch, www, base)
    info = dataset_info("cifar10")
    import pickle
    import tarfile

    with tarfile.open(www / CIFAR10.archive) as tar:
        batch = pickle.loads(tar.extractfile("cifar-10-batches-py/data_batch_1").read(), encoding="latin1")
    data = registry.REGISTRY["cifar10"].load(None, False, "error")
    assert torch.equal(data.train_x[:20].reshape(20, -1), torch.from_numpy(batch["data"]))
    assert data.train_y[:20].tolist() == batch["labels"]
    assert info["splits"] == {"train": 100, "test": 20} and info["channels"] == 3


def test_corrupted_download_is_removed_with_clear_error(monkeypatch, server, cache_dir):
    www, base, _ = server
    serve_cifar(monkeypatch, www, base, corrupt=True)
    with pytest.raises(ChecksumError, match=r"checksum mismatch.*partial file was removed"):
        load_data("cifar10")
    leftovers = [p for p in (cache_dir / "datasets").rglob("*") if p.is_file()]
    assert leftovers == []


def test_download_failure_is_a_data_error(monkeypatch, server):
    _, base, _ = server  # nothing served: 404
    monkeypatch.setattr(registry, "CIFAR10", dataclasses.replace(CIFAR10, url=base + "missing.tar.gz"))
    with pytest.raises(DataError, match=r"download of .* failed"):
        load_data("cifar10")


def test_cifar100_from_read_only_archive_without_extraction(monkeypatch, tmp_path):
    root = tmp_path / "data"
    archive = write_cifar_archive(root / "cifar100" / CIFAR100.archive, CIFAR100, num_classes=100)
    monkeypatch.setattr(registry, "CIFAR100", dataclasses.replace(CIFAR100, md5=md5(archive)))
    (root / "cifar100").chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        before = sorted(p.name for p in (root / "cifar100").iterdir())
        data = load_data("cifar100", data_dir=root, download=False, val_size=0, batch_size=4)
        assert data.num_classes == 100 and data.num_train == 20 and data.val is None
        assert sorted(p.name for p in (root / "cifar100").iterdir()) == before  # nothing written next to it
    finally:
        (root / "cifar100").chmod(stat.S_IRWXU)


def test_local_archive_with_wrong_checksum_is_refused(tmp_path):
    write_cifar_archive(tmp_path / "cifar10" / CIFAR10.archive)  # random content: not the official MD5
    with pytest.raises(ChecksumError, match=r"official cifar-10-python.tar.gz"):
        load_data("cifar10", data_dir=tmp_path, download=False)


def test_missing_dataset_without_download_says_where_it_looked(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"looked in .*cifar-10-batches-py.*drop --no-download"):
        load_data("cifar10", data_dir=tmp_path, download=False)


# --- IDX ------------------------------------------------------------------------------------------------------


def test_fashion_mnist_download_and_well_known_path(monkeypatch, server, tmp_path):
    www, base, _ = server
    monkeypatch.setattr(data_paths, "checkout_shared_datasets", lambda: None)  # the real copy must not be found
    paths = write_idx_files(www)
    fmt = dataclasses.replace(FASHION_MNIST, mirrors=(base,), gz_md5={s: md5(p) for s, p in paths.items()})
    monkeypatch.setattr(registry, "FASHION_MNIST", fmt)
    data = load_data("fashion-mnist", val_size=10, batch_size=10, in_chans=3)
    assert (data.num_train, data.num_val, data.num_test, data.in_chans) == (50, 10, 20, 3)
    x, _ = next(data.train.epoch(0))
    assert x.shape == (10, 3, 28, 28) and torch.equal(x[:, 0], x[:, 2])

    well_known = tmp_path / "usr-share"
    write_idx_files(well_known, compress=False, seed=1)
    monkeypatch.setattr(registry, "FASHION_MNIST", dataclasses.replace(fmt, content_md5={}, well_known=(well_known,)))
    monkeypatch.setenv("RESNET_CACHE", str(tmp_path / "other-cache"))
    assert dataset_info("fmnist", download=False)["location"] == str(well_known.resolve())


def test_idx_local_copy_accepted_by_decompressed_content(monkeypatch, tmp_path):
    paths = write_idx_files(tmp_path / "fashion-mnist")
    content = {s: hashlib.md5(gzip.decompress(p.read_bytes())).hexdigest() for s, p in paths.items()}
    # Recompress (as Debian did): the .gz bytes change, the content does not.
    for p in paths.values():
        p.write_bytes(gzip.compress(gzip.decompress(p.read_bytes()), compresslevel=1, mtime=12345))
    fmt = dataclasses.replace(FASHION_MNIST, content_md5=content)
    monkeypatch.setattr(registry, "FASHION_MNIST", fmt)
    assert dataset_info("fashion-mnist", data_dir=tmp_path, download=False)["splits"] == {"train": 60, "test": 20}
    bad = dict(content, **{FILES[0]: "0" * 32})
    monkeypatch.setattr(registry, "FASHION_MNIST", dataclasses.replace(fmt, content_md5=bad))
    monkeypatch.setenv("RESNET_CACHE", str(tmp_path / "fresh"))  # no decoded cache to hide the check
    with pytest.raises(ChecksumError, match=r"train-images-idx3-ubyte.gz: decompressed content has MD5"):
        load_data("fashion-mnist", data_dir=tmp_path, download=False)


def test_idx_raw_files_and_truncation(tmp_path):
    paths = write_idx_files(tmp_path / "mnist", compress=False)
    assert read_idx(paths[FILES[0]]).shape == (60, 28, 28)
    data = load_data("mnist", data_dir=tmp_path, download=False, val_size=0, batch_size=16, in_chans=1)
    assert data.in_chans == 1 and data.mean[0] == pytest.approx(127.5 / 255, abs=0.05)
    truncated = tmp_path / "t.idx"
    truncated.write_bytes(idx_bytes(np.zeros((3, 4, 4)))[:-5])
    with pytest.raises(DataError, match="truncated"):
        read_idx(truncated)
    (tmp_path / "x.idx").write_bytes(b"\x00\x00\x0d\x01" + bytes(8))
    with pytest.raises(DataError, match="bad magic"):
        read_idx(tmp_path / "x.idx")
    assert MNIST.content_md5 == {}  # documented: MNIST local copies are checked structurally


def test_decoded_tensor_cache_is_reused(tmp_path, cache_dir):
    write_idx_files(tmp_path / "mnist")
    dataset_info("mnist", data_dir=tmp_path, download=False)
    cached = list((cache_dir / "tensors").glob("mnist-*.pt"))
    assert len(cached) == 1
    mtime = cached[0].stat().st_mtime_ns
    dataset_info("mnist", data_dir=tmp_path, download=False)
    assert cached[0].stat().st_mtime_ns == mtime
    write_idx_files(tmp_path / "mnist", seed=5)  # new content -> new key
    dataset_info("mnist", data_dir=tmp_path, download=False)
    assert len(list((cache_dir / "tensors").glob("mnist-*.pt"))) == 2


def test_unknown_name_is_a_config_error():
    with pytest.raises(ConfigError, match="neither a registered name"):
        load_data("imagenet-9000")
