"""Every command's outputs (resnet.files, resnet.export): what ``eval --json``, ``analyze``, figures, reports and
``export`` write.

What it guarantees: one guard (``resnet.files.check_output``) before the slow work: an output never replaces an input
of the command, a checkpoint or a run's file it did not create (without ``--force``), and is never written through a
symbolic link; outputs are written atomically, a file created meanwhile by another process is kept, and no temporary
file is left; a figure that cannot be written is a warning and loses no summary; an export never replaces the
checkpoint or sidecar it exports, verifies before it renames, names its output (not its temporary file) in an error,
and exports pooling that does not divide (VGG-19 at 32x32) to ONNX.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from bad_inputs import TRAIN, image_folder, one_error_line, run_cli, snapshot
from resnet.export import export_model
from resnet.export.onnx import MatrixAdaptiveAvgPool2d, onnx_compatible_pooling


@pytest.fixture
def run_copy(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / "run"))


# --- one guard for every command's output ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "says"),
    [
        ("last.pt", "is an input of this command"),
        ("best.pt", "exists and is a checkpoint this command did not create; pass --force"),
        ("summary.json", "exists and is a file of the run directory"),
        ("metrics.jsonl", "exists and is a file of the run directory"),
    ],
)
def test_eval_json_never_replaces_a_checkpoint_or_a_run_s_file(trained: Path, capsys, target: str, says: str) -> None:
    before = snapshot(trained)
    code, _, err = run_cli(capsys, "eval", "--checkpoint", str(trained / "last.pt"), "--json", str(trained / target))
    assert code == 2 and says in one_error_line(err)
    assert snapshot(trained) == before


def test_outputs_never_go_through_a_link_and_force_is_needed_for_run_files(
    trained: Path, tmp_path: Path, capsys
) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    (tmp_path / "link.json").symlink_to(run / "summary.json")
    before = snapshot(run)
    code, _, err = run_cli(capsys, "eval", "--checkpoint", str(run / "last.pt"), "--json", str(tmp_path / "link.json"))
    assert code == 2 and "is a symbolic link" in one_error_line(err) and snapshot(run) == before
    # analyses: the run's own curves.png, and --out naming a file
    code, _, err = run_cli(capsys, "analyze", "curves", str(run), "--out", str(run))
    assert code == 2 and f"{run / 'curves.json'}" not in err and "a file of the run directory" in one_error_line(err)
    assert snapshot(run) == before
    code, _, err = run_cli(capsys, "analyze", "curves", str(run), "--out", str(run / "summary.json"))
    assert code == 2 and "is a file; give a folder" in one_error_line(err)
    # --force replaces a run's file, atomically, and leaves no temporary file
    code, _, err = run_cli(capsys, "eval", "--checkpoint", str(run / "last.pt"), "--json", str(run / "summary.json"),
                           "--force")  # fmt: skip
    assert code == 0, err
    assert json.loads((run / "summary.json").read_text())["checkpoint"] == str(run / "last.pt")
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


def test_a_file_created_while_an_output_is_produced_is_never_replaced(tmp_path: Path) -> None:
    from resnet.export.writing import OutputExistsError, check_targets, staged
    from resnet.files import OutputError, check_output, write_output

    target = tmp_path / "results.json"
    output = check_output(target)
    target.write_text("theirs")  # another process wrote it meanwhile
    with pytest.raises(OutputError, match="created by another process"):
        write_output(output, "ours")
    assert target.read_text() == "theirs" and sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]
    # an export's verification: the weights and the sidecar of safetensors; the second export is refused
    weights = tmp_path / "model.safetensors"
    outputs = check_targets([weights, weights.with_suffix(".json")], source=None, force=False)
    with pytest.raises(OutputExistsError, match="created by another process"), staged(outputs) as temp:
        temp.write_bytes(b"ours")
        temp.with_suffix(".json").write_text("{}")
        weights.write_bytes(b"theirs")
    assert weights.read_bytes() == b"theirs" and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_the_run_files_the_guard_knows_are_the_run_s(trained: Path) -> None:
    from resnet.files import RUN_FILES, describe_existing

    assert {p.name for p in trained.iterdir() if p.is_file() and not p.name.startswith("events.")} <= {
        *RUN_FILES,
        "last.pt",
        "best.pt",
    }
    assert all(describe_existing(p) for p in trained.iterdir() if p.is_file())


# --- figures and reports: atomic; the summary first; a figure that cannot be written is a warning -------------------


def _full_disk_savefig(self, target, **kw) -> None:
    Path(target).write_bytes(b"\x89PNG" + b"\0" * 996)  # 1000 bytes, then the disk is full
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_while_plotting_loses_no_summary(tmp_path: Path, capsys, monkeypatch) -> None:
    from matplotlib.figure import Figure

    folder = image_folder(tmp_path / "data")
    monkeypatch.setattr(Figure, "savefig", _full_disk_savefig)
    code, _, err = run_cli(capsys, *TRAIN, "--dataset", str(folder), "--iterations", "2", "--run-dir",
                           str(tmp_path / "run"))  # fmt: skip
    assert code == 0, err
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["iterations"] == 2
    assert "warning: cannot write the figure" in err and "the disk is full" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "curves.png").exists()
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.endswith(".png")]


def test_a_figure_that_cannot_be_replaced_keeps_the_previous_one(tmp_path: Path, monkeypatch) -> None:
    from matplotlib.figure import Figure

    from resnet.files import save_figure

    previous = tmp_path / "fig6.png"
    previous.write_bytes(b"the previous figure")
    figure = Figure()
    figure.subplots().plot([1, 2], [3, 4])
    assert save_figure(figure, tmp_path / "new.png") and (tmp_path / "new.png").read_bytes()[:4] == b"\x89PNG"
    monkeypatch.setattr(Figure, "savefig", _full_disk_savefig)
    with pytest.warns(UserWarning, match="cannot write the figure .*fig6.png"):
        assert not save_figure(figure, previous)
    assert previous.read_bytes() == b"the previous figure"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig6.png", "new.png"]


# --- export never replaces the checkpoint, its sidecar or a file it did not create ----------------------------------


def test_export_never_replaces_the_checkpoint_it_exports(capsys, run_copy: Path) -> None:
    before = snapshot(run_copy)
    for extra in ([], ["--force"]):
        argv = ["export", "--checkpoint", str(run_copy / "last.pt"), "--format", "onnx", "--output"]
        code, _, err = run_cli(capsys, *argv, str(run_copy / "last.pt"), *extra)
        assert code == 2
        assert f"{run_copy / 'last.pt'} is the checkpoint being exported" in one_error_line(err)
        assert snapshot(run_copy) == before


def test_export_never_replaces_the_sidecar_of_the_weights_it_exports(capsys, exported: Path, tmp_path: Path) -> None:
    weights = Path(shutil.copy(exported, tmp_path / "model.safetensors"))
    shutil.copy(exported.with_suffix(".json"), tmp_path / "model.json")
    before = snapshot(tmp_path)
    argv = ["export", "--checkpoint", str(weights), "--format", "onnx", "--output", str(tmp_path / "model.json")]
    code, _, err = run_cli(capsys, *argv, "--force")
    assert code == 2
    assert f"{tmp_path / 'model.json'} is the sidecar of the weights being exported" in one_error_line(err)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    ("fmt", "output", "taken", "message"),
    [
        ("torchvision", "best.pt", "best.pt", "exists and is a PyTorch checkpoint this export did not create"),
        ("safetensors", "notes.safetensors", "notes.json", "the JSON sidecar the safetensors export writes"),
        ("safetensors", "summary.safetensors", "summary.json", "is a file of a run directory"),
        ("onnx", "model.onnx", "model.onnx", "exists and is a file this export did not create"),
    ],
)
def test_export_refuses_to_replace_an_existing_file(capsys, run_copy, fmt, output, taken, message) -> None:
    (run_copy / taken).exists() or (run_copy / taken).write_text('{"mine": true}\n')
    before = snapshot(run_copy)
    argv = ["export", "--checkpoint", str(run_copy / "last.pt"), "--format", fmt, "--output", str(run_copy / output)]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    line = one_error_line(err)
    assert f"{run_copy / taken}" in line and message in line and "--force" in line
    assert snapshot(run_copy) == before  # neither the taken file nor a half of the export


def test_force_replaces_through_a_temporary_file(capsys, run_copy: Path) -> None:
    (run_copy / "last.json").write_text("{}\n")
    argv = ["export", "--checkpoint", str(run_copy / "last.pt"), "--format", "safetensors"]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and "last.json" in one_error_line(err)
    code, _, err = run_cli(capsys, *argv, "--force")
    assert code == 0, err
    assert '"class_names"' in (run_copy / "last.json").read_text()
    code, _, err = run_cli(capsys, *argv)  # a second export to the same files also needs --force
    assert code == 2 and "--force" in one_error_line(err)
    assert not [p for p in run_copy.iterdir() if "export-tmp" in p.name]


def test_a_failed_verification_leaves_nothing(tmp_path: Path) -> None:
    from resnet.export.onnx import ExportError
    from test_export import meta_for

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))
    (tmp_path / "m.onnx").write_bytes(b"older")
    with pytest.raises(ExportError, match=r"so .*m\.onnx was not written"):
        export_model(model, meta_for("resnet8", 16, num_classes=5), "onnx", tmp_path / "m.onnx", force=True,
                     tolerance=-1.0)  # fmt: skip
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"] and (tmp_path / "m.onnx").read_bytes() == b"older"


def test_an_export_error_names_the_output_not_its_temporary_file(tmp_path: Path) -> None:
    from resnet.export.onnx import ExportError
    from resnet.export.writing import check_targets, staged

    target = tmp_path / "model.onnx"
    with pytest.raises(ExportError) as caught, staged(check_targets([target], source=None, force=False)) as temp:
        raise RuntimeError(f"failed to write {temp}: protobuf too large\n(and 40 more lines)")
    assert str(caught.value) == f"failed to write {target}: protobuf too large"
    assert list(tmp_path.iterdir()) == []


# --- ONNX export of pooling that does not divide (VGG-19 at 32x32) --------------------------------------------------


@pytest.mark.parametrize(
    ("size_in", "size_out"), [((1, 1), (7, 7)), ((5, 5), (3, 3)), ((10, 13), (7, 7)), ((2, 9), (7, 4))]
)
def test_matrix_pooling_equals_adaptive_pooling(size_in, size_out) -> None:
    x = torch.randn(2, 3, *size_in)
    got = MatrixAdaptiveAvgPool2d(size_in, size_out)(x)
    torch.testing.assert_close(got, nn.AdaptiveAvgPool2d(size_out)(x), rtol=0, atol=1e-6)


def test_pooling_that_does_not_divide_exports_to_onnx(tmp_path: Path) -> None:
    from test_export import meta_for

    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d((3, 3)), nn.Flatten(), nn.Linear(36, 5))
    meta = {**meta_for("resnet8", 5, num_classes=5), "input_size": [3, 5, 5]}  # 5x5 -> 3x3: overlapping bins
    result = export_model(model, meta, "onnx", tmp_path / "m.onnx", dynamic_batch=True)
    assert result["max_abs_diff"] < 1e-5
    assert isinstance(model[1], nn.AdaptiveAvgPool2d)  # the model is restored after the export
    with onnx_compatible_pooling(model, torch.zeros(1, 3, 8, 8)) as swapped:  # 8 -> 3 still does not divide
        assert swapped == 1 and isinstance(model[1], MatrixAdaptiveAvgPool2d)
    with onnx_compatible_pooling(model, torch.zeros(1, 3, 9, 9)) as swapped:  # 9 -> 3 does: exported natively
        assert swapped == 0


@pytest.mark.slow
def test_vgg19_trained_on_32x32_exports_to_onnx(capsys, run: Path, tmp_path: Path) -> None:
    from resnet.models import create_model, resolve_options
    from resnet.runs.checkpoint import load_checkpoint, save_atomic

    payload = load_checkpoint(run / "best.pt")
    meta = payload["meta"]
    meta["model"] = {"name": "vgg19", "options": resolve_options("vgg19", num_classes=3)}
    meta["input_size"] = [3, 32, 32]
    meta["preprocessing"].update(crop=[32, 32], resize=36)
    payload["model"] = create_model("vgg19", num_classes=3).state_dict()
    payload.pop("optimizer", None)
    save_atomic(payload, tmp_path / "vgg19.pt")
    del payload
    before = snapshot(tmp_path)
    code, out, err = run_cli(capsys, "export", "--checkpoint", str(tmp_path / "vgg19.pt"), "--format", "onnx",
                             "--dynamic-batch")  # fmt: skip
    assert code == 0, err
    assert f"wrote {tmp_path / 'vgg19.onnx'}" in out and "checked with onnxruntime" in out
    assert "Traceback" not in err
    assert {k: v for k, v in snapshot(tmp_path).items() if k != "vgg19.onnx"} == before


def test_a_killed_writer_s_temporary_file_is_removed_by_the_next_write(tmp_path: Path) -> None:
    from resnet.files import STALE_SECONDS, temporary_name, write_text_atomic

    killed = textwrap.dedent(f"""
        import os, signal
        from resnet.files import staged_file
        with staged_file({str(tmp_path / "cache.pt")!r}) as temp:
            temp.write_bytes(bytes(2**20))
            os.kill(os.getpid(), signal.SIGKILL)  # kill -9 mid-write: no cleanup runs
    """)  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    assert subprocess.run([sys.executable, "-c", killed], env=env).returncode == -signal.SIGKILL
    [left] = tmp_path.iterdir()
    assert left.name.startswith(".cache.pt.") and left.stat().st_size == 2**20
    ours = tmp_path / f"{temporary_name(tmp_path / 'mine.pt')}abcd1234.tmp"  # a live writer's (this process)
    elsewhere = tmp_path / ".x.pt.123@00000000.abcd1234.tmp"  # another host's: its pid says nothing here
    old = tmp_path / ".y.pt.123@00000000.abcd1234.png"
    unrelated = tmp_path / ".notes.1.tmp"  # not a name of ours
    for path in (ours, elsewhere, old, unrelated):
        path.write_bytes(b"x")
    os.utime(old, (time.time() - STALE_SECONDS - 60,) * 2)
    write_text_atomic(tmp_path / "other.json", "{}\n")  # any write in the folder
    kept = ["other.json", ours.name, elsewhere.name, unrelated.name]  # the killed writer's and the old one: gone
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)
