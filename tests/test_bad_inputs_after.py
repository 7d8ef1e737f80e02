"""Bad inputs after training and in experiments (issue 19, items 5-7, 9, 10, 14, 16): one line, exit 2, nothing
that existed changed; and the variants of each."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from bad_inputs import TRAIN, CodeExecution, crafted_pickle, image_folder, one_error_line, run_cli, snapshot
from synthetic import write_image_folder

EXPERIMENT = ["experiment", "degradation", "--depths", "8", "--iterations", "4", "--jobs", "1",
              "--set", "data.batch_size=8", "--set", "system.threads=1", "--set", "log.tensorboard=false"]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny run on a 3-class folder (a, b, c), trained from a working directory of its own."""
    base = tmp_path_factory.mktemp("after")
    folder = image_folder(base / "data")
    cwd = Path.cwd()
    os.chdir(base)
    try:
        from resnet.cli import main

        assert main([*TRAIN, "--dataset", "data", "--iterations", "2", "--run-dir", str(base / "run")]) == 0
    finally:
        os.chdir(cwd)
    assert folder.is_dir()
    return base


# --- 5: evaluation on the wrong data -------------------------------------------------------------------------
def test_eval_from_another_directory_reads_the_run_s_data(trained: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    elsewhere = tmp_path / "elsewhere"
    image_folder(elsewhere / "data", test=1)  # the same relative path names other images here
    monkeypatch.chdir(elsewhere)
    code, out, _ = run_cli(capsys, "eval", "--checkpoint", str(trained / "run" / "last.pt"))
    assert code == 0 and str(trained / "data") in out and "6 images" in out  # the run's own 3 x 2 test images


@pytest.mark.parametrize("classes", [("ant", "bee", "cat"), ("ant", "bee")])  # renamed; and a variant: fewer
def test_eval_on_other_class_names_is_refused(trained: Path, tmp_path: Path, capsys, classes) -> None:
    other = write_image_folder(tmp_path / "other", classes, splits={"train": 2, "test": 2}, size=(8, 8))
    code, _, err = run_cli(capsys, "eval", "--checkpoint", str(trained / "run" / "last.pt"), "--dataset", str(other))
    assert code == 2 and "--allow-other-classes" in one_error_line(err)
    code, _, _ = run_cli(capsys, "eval", "--checkpoint", str(trained / "run" / "last.pt"), "--dataset", str(other),
                         "--allow-other-classes")  # fmt: skip
    assert code == 0


def test_eval_on_more_classes_than_outputs_is_refused(trained: Path, tmp_path: Path, capsys) -> None:
    more = write_image_folder(tmp_path / "more", ("a", "b", "c", "d"), splits={"train": 2, "test": 2}, size=(8, 8))
    for extra in ([], ["--allow-other-classes"]):
        code, _, err = run_cli(
            capsys, "eval", "--checkpoint", str(trained / "run" / "last.pt"), "--dataset", str(more), *extra
        )
        assert code == 2 and "4 classes" in one_error_line(err)


# --- 6, 7, 10: experiments ---------------------------------------------------------------------------------
@pytest.fixture
def experiment(tmp_path: Path, capsys) -> tuple[Path, Path]:
    folder = image_folder(tmp_path / "tiny")
    out = tmp_path / "exp"
    code, _, err = run_cli(capsys, *EXPERIMENT, "--dataset", str(folder), "--out", str(out))
    assert code == 0, err
    return folder, out


@pytest.mark.slow
@pytest.mark.parametrize("setting", ["optim.momentum=0.5", "optim.weight_decay=0.001", "data.batch_size=4"])
def test_experiment_rerun_with_other_settings_is_refused(experiment, capsys, setting: str) -> None:
    folder, out = experiment
    before = snapshot(out)
    code, _, err = run_cli(capsys, *EXPERIMENT, "--dataset", str(folder), "--out", str(out), "--set", setting)
    assert code == 2 and setting.split("=")[0] in one_error_line(err)
    assert snapshot(out) == before


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["", "{not json", "[1, 2]", '{"iterations": 3}'])
def test_a_damaged_summary_resumes_the_run(experiment, capsys, damage: str) -> None:
    folder, out = experiment
    summary = out / "resnet8-seed0" / "summary.json"
    summary.write_text(damage)
    code, out_text, err = run_cli(capsys, *EXPERIMENT, "--dataset", str(folder), "--out", str(out))
    assert code == 0, err
    assert "resuming resnet8-seed0" in out_text and json.loads(summary.read_text())["iterations"] == 4


@pytest.mark.slow
def test_a_net_stopped_before_its_first_checkpoint_starts_cleanly(experiment, capsys) -> None:
    folder, out = experiment
    net = out / "plain8-seed0"
    (net / "last.pt").unlink()
    (net / "summary.json").unlink()  # metrics.jsonl, best.pt... are left, as by a kill before the first last.pt
    code, out_text, err = run_cli(capsys, *EXPERIMENT, "--dataset", str(folder), "--out", str(out))
    assert code == 0, err
    assert "moved to" in out_text and list(out.glob("plain8-seed0.unfinished-*"))
    records = [json.loads(line)["iteration"] for line in (net / "metrics.jsonl").read_text().splitlines()]
    assert records == sorted(set(records))  # never appended to: no iteration twice


def test_experiment_out_that_is_a_file(tmp_path: Path, capsys) -> None:
    folder = image_folder(tmp_path / "tiny")
    (tmp_path / "file").write_text("x")
    code, _, err = run_cli(capsys, *EXPERIMENT, "--dataset", str(folder), "--out", str(tmp_path / "file"))
    assert code == 2 and "is a file" in one_error_line(err)


# --- 9: devices ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("device", ["banana", "mps", "cuda:7"])
def test_unavailable_or_unknown_devices_are_one_line(trained: Path, capsys, device: str) -> None:
    if device.startswith("cuda") and torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 GPUs")
    checkpoint = str(trained / "run" / "last.pt")
    image = next((trained / "data" / "test" / "a").iterdir())
    for argv in (
        [*TRAIN, "--dataset", str(trained / "data"), "--iterations", "1", "--device", device],
        ["eval", "--checkpoint", checkpoint, "--device", device],
        ["predict", str(image), "--checkpoint", checkpoint, "--device", device],
    ):
        code, _, err = run_cli(capsys, *argv)
        assert code == 2 and device.split(":")[0] in one_error_line(err), argv


# --- 14: settings that cannot work ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("setting", "says"),
    [("model.options.num_classes=5", "num_classes"), ("model.options.num_classes=3", None),
     ("system.threads=-4", "system.threads"), ("system.threads=0", "system.threads")],
)  # fmt: skip
def test_settings_that_cannot_work(trained: Path, tmp_path: Path, capsys, setting: str, says: str | None) -> None:
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, *TRAIN, "--dataset", str(trained / "data"), "--iterations", "1",
                           "--run-dir", str(run), "--set", setting)  # fmt: skip
    if says is None:  # the data's own number of classes is accepted
        assert code == 0, err
        return
    assert code == 2 and says in one_error_line(err)
    assert not run.exists()


def test_a_batch_too_big_for_memory_says_what_to_try(monkeypatch: pytest.MonkeyPatch) -> None:
    from resnet.errors import ConfigError
    from resnet.train.checks import out_of_memory_hint

    fits = r"does not fit in the memory.*--batch-size 64 with --accum-steps 2"
    with pytest.raises(ConfigError, match=fits), out_of_memory_hint(128, 1, "cpu"):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 999 bytes")
    with pytest.raises(RuntimeError, match="shape"), out_of_memory_hint(128, 1, "cpu"):
        raise RuntimeError("shape mismatch")  # other errors pass through unchanged


# --- 16: files that are not checkpoints ----------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["onnx", "image", "json", "torchscript"])
def test_a_file_that_is_not_a_checkpoint_says_what_it_is(trained: Path, tmp_path: Path, capsys, kind: str) -> None:
    path = {"onnx": tmp_path / "model.onnx", "image": tmp_path / "x.pt", "json": tmp_path / "x.pt",
            "torchscript": tmp_path / "ts.pt"}[kind]  # fmt: skip
    if kind == "onnx":
        path.write_bytes(b"\x08\x08\x12\x07pytorch")
    elif kind == "image":
        shutil.copy(next((trained / "data" / "test" / "a").iterdir()), path)
    elif kind == "json":
        path.write_text('{"model": "resnet8"}')
    else:
        torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(path))
    code, _, err = run_cli(capsys, "eval", "--checkpoint", str(path))
    line = one_error_line(err)
    names = {"onnx": "ONNX", "image": "an image", "json": "JSON", "torchscript": "TorchScript"}
    assert code == 2 and names[kind] in line
    assert "weights_only" not in line


def test_a_malicious_checkpoint_is_named_for_what_it_holds(tmp_path: Path, capsys) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    path.write_bytes(crafted_pickle(marker))
    for argv in (["eval", "--checkpoint", str(path)], ["predict", str(path), "--checkpoint", str(path)]):
        code, _, err = run_cli(capsys, *argv)
        line = one_error_line(err)
        assert code == 2 and "will not unpickle" in line and "weights_only" not in line, line
    assert not marker.exists()
    assert CodeExecution and pickle  # the corpus' own marker class stays importable


def test_predict_from_standard_input_says_what_it_reads(trained: Path, capsys) -> None:
    code, _, err = run_cli(capsys, "predict", "-", "--checkpoint", str(trained / "run" / "last.pt"))
    assert code == 2 and "not standard input" in one_error_line(err)
