"""Bad inputs and faults of issue 26: concurrent runs, outputs that never replace inputs, signals from schedulers,
untrusted model files; one line, exit 2, nothing that existed changed, and the variants of each."""

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

from bad_inputs import TRAIN, image_folder, one_error_line, run_cli, snapshot
from resnet.runs import load_checkpoint
from resnet.runs.lock import RunDirLockedError, RunLock

EXPERIMENT = ["experiment", "degradation", "--depths", "8", "--iterations", "2", "--jobs", "1",
              "--set", "data.batch_size=8", "--set", "system.threads=1", "--set", "log.tensorboard=false"]  # fmt: skip


# --- 1: an experiment holds its --out; setting a net aside respects the net's run lock -------------------------
@pytest.mark.parametrize("command", ["degradation", "cifar-table"])
def test_a_second_experiment_on_a_held_out_is_refused(tmp_path: Path, capsys, command: str) -> None:
    folder = image_folder(tmp_path / "tiny")
    out = tmp_path / "exp"
    (out / "plain8-seed0").mkdir(parents=True)
    (out / "plain8-seed0" / "metrics.jsonl").write_text('{"iteration": 1}\n')  # a net training, no checkpoint yet
    argv = [EXPERIMENT[0], command, *EXPERIMENT[2:]]
    with RunLock(out, file="experiment.lock", what="experiment", option="--out"):
        before = snapshot(out)
        code, _, err = run_cli(capsys, *argv, "--dataset", str(folder), "--out", str(out))
        assert code == 2
        line = one_error_line(err)
        assert f"experiment folder '{out}' is in use by process" in line and "--out" in line
        assert snapshot(out) == before and not list(tmp_path.glob("exp/*.unfinished-*"))


def test_setting_aside_never_moves_a_net_that_holds_its_run_lock(tmp_path: Path, capsys) -> None:
    """A net started by hand (`resnet train --run-dir OUT/plain8-seed0`) before its first checkpoint looks like one
    that stopped; its lock says it did not."""
    folder = image_folder(tmp_path / "tiny")
    out = tmp_path / "exp"
    net = out / "plain8-seed0"
    net.mkdir(parents=True)
    (net / "metrics.jsonl").write_text('{"iteration": 1}\n')
    with RunLock(net):
        before = snapshot(out)
        code, _, err = run_cli(capsys, *EXPERIMENT, "--dataset", str(folder), "--out", str(out))
        assert code == 2 and f"run directory '{net}' is in use" in one_error_line(err)
        assert snapshot(out) == before and not list(out.glob("*.unfinished-*"))
    from resnet.experiments.runs import PlannedRun, set_aside_unfinished

    said: list[str] = []
    set_aside_unfinished(PlannedRun("plain8", 0, net), said.append)  # released: moved aside, lock file removed
    (aside,) = out.glob("plain8-seed0.unfinished-*")
    assert not net.exists() and not (aside / "run.lock").exists() and "moved to" in said[0]
    with pytest.raises(RunDirLockedError), RunLock(out, file="experiment.lock"):  # taken once
        RunLock(out, file="experiment.lock").acquire()


# --- 2: one guarded writer for every command's output -----------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny run (``RUN``) on a 3-class folder."""
    from resnet.cli import main

    base = tmp_path_factory.mktemp("hardening")
    folder = image_folder(base / "data")
    assert main([*TRAIN, "--dataset", str(folder), "--iterations", "2", "--run-dir", str(base / "run")]) == 0
    return base / "run"


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


# --- 3: figures and reports atomic; the summary first; a figure that cannot be written is a warning -------------
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


# --- 4: SIGTERM to the whole process group, as schedulers send it -----------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_to_the_process_group_checkpoints_without_a_worker_traceback(tmp_path: Path, workers: int) -> None:
    """``kill -TERM -- -PGID`` (scancel, timeout, systemd, docker stop) on image-folder training with DataLoader
    workers: the run checkpoints and says so in one line, exit 143; the signal reaches only the group started here."""
    folder = image_folder(tmp_path / "data", size=12, train=16)
    run_dir = tmp_path / "run"
    argv = [
        sys.executable,
        "-m",
        "resnet",
        *TRAIN[:-4],
        "--set",
        "data.pipeline=loader",
        "--workers",
        str(workers),
        "--dataset",
        str(folder),
        "--iterations",
        "100000",
        "--run-dir",
        str(run_dir),
        "--set",
        "log.every_iterations=1",
        "--set",
        "checkpoint.every_minutes=0",
        "--set",
        "system.compile=off",
    ]  # fmt: skip (a signal during compilation: item 5's test)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            curve = run_dir / "train_curve.jsonl"
            if curve.is_file() and len(curve.read_text().splitlines()) >= 3:
                break
            time.sleep(0.05)
        assert process.poll() is None, process.communicate()
        assert subprocess.run(["kill", "-TERM", "--", f"-{process.pid}"], check=False).returncode == 0
        _, err_bytes = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # the group this test started, nothing else
            process.wait()
    err = err_bytes.decode()
    assert process.returncode == 143, err
    assert "Traceback" not in err and "DataLoader worker" not in err, err
    line = one_error_line(err.split("to stop at once)")[-1])
    assert line.startswith("resnet train: stopped by SIGTERM at iteration") and "--resume" in line
    assert load_checkpoint(run_dir / "last.pt")["iteration"] >= 3


WORKER_SCRIPT = """
import sys, time
from torch.utils.data import DataLoader
from resnet.data.loader_pipeline import leave_signals_to_main
loader = DataLoader(list(range(100)), batch_size=2, num_workers=1, persistent_workers=True,
                    worker_init_fn=leave_signals_to_main)
batches = iter(loader)
next(batches)
print(batches._workers[0].pid, flush=True)
sys.stdin.readline()  # the test sends the worker a SIGTERM of its own meanwhile
time.sleep(0.5)
print(batches._workers[0].is_alive(), next(batches).tolist(), flush=True)
"""  # then exits with the workers alive: multiprocessing's SIGTERM (from the parent) must still end them


@pytest.mark.slow
def test_a_worker_ignores_a_foreign_sigterm_but_not_its_parent_s(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-c", WORKER_SCRIPT], env=env, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert process.stdout is not None and process.stdin is not None
        worker = int(process.stdout.readline())
        os.kill(worker, signal.SIGTERM)  # a worker of the process this test started
        process.stdin.write("\n")
        process.stdin.flush()
        assert process.stdout.readline().split(" ", 1) == ["True", "[2, 3]\n"]
        _, err = process.communicate(timeout=60)  # no hang at exit: the parent's SIGTERM ends the worker
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0 and "Traceback" not in err, err


# --- 5: a signal that kills torch.compile's C++ compiler mid-build --------------------------------------------
@pytest.mark.parametrize(("signum", "after"), [(signal.SIGINT, 0), (signal.SIGTERM, 0), (signal.SIGINT, 3)])
def test_a_step_killed_by_the_same_signal_is_the_signal_s_one_line(
    tmp_path: Path, capsys, monkeypatch, signum: int, after: int
) -> None:
    """Ctrl-C reaches the whole process group: the compiler dies of it and the step raises (CppCompileError, an
    InductorError); that failure is the signal's stop, with what is left, not a 98-line traceback."""
    import resnet.train.trainer as trainer

    real, calls = trainer.train_step, []

    def compile_killed_by_the_signal(*args, **kw):
        calls.append(1)
        if len(calls) > after:
            os.kill(os.getpid(), signum)  # the guard records it; the compiler (a child) dies of it
            raise RuntimeError("CppCompileError: C++ compile error\nCommand:\ng++ ...\n(98 lines)")
        return real(*args, **kw)

    monkeypatch.setattr(trainer, "train_step", compile_killed_by_the_signal)
    run_dir = tmp_path / "run"
    folder = image_folder(tmp_path / "data")
    code, _, err = run_cli(capsys, *TRAIN, "--dataset", str(folder), "--iterations", "20", "--run-dir", str(run_dir),
                           "--set", "checkpoint.every_iterations=2")  # fmt: skip
    assert code == 128 + signum
    line = one_error_line(err.split("to stop at once)")[-1])
    name = signal.Signals(signum).name
    assert line.startswith(f"resnet train: stopped by {name} at iteration {after}, which was not completed")
    if after:
        assert (
            f"the last checkpoint is {run_dir / 'last.pt'} (iteration 2); continue with: resnet train --resume" in line
        )
        assert load_checkpoint(run_dir / "last.pt")["iteration"] == 2
    else:
        assert "no checkpoint was written before that" in line and not (run_dir / "last.pt").exists()


def test_a_failure_without_a_signal_is_not_taken_for_one() -> None:
    from types import SimpleNamespace

    from resnet.errors import DataError
    from resnet.train.interrupt import InterruptGuard

    run = SimpleNamespace(iteration=1, saved_iteration=None, run_dir=SimpleNamespace(path=Path("run")))
    for error in (RuntimeError("a real compile error"), DataError("bad image")):
        with pytest.raises(type(error), match=str(error)), InterruptGuard().watch(run):
            raise error
    guard = InterruptGuard()
    with pytest.raises(DataError), guard.watch(run):  # a user's error stays itself even after a signal
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.1)
        raise DataError("bad image")


# --- 12: explicit flags beat --set, as --help says ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "key", "value"),
    [
        (["--batch-size", "32", "--set", "data.batch_size=64"], "data.batch_size", 32),
        (["--set", "data.batch_size=64", "--batch-size", "32"], "data.batch_size", 32),
        (["--set", "optim.lr=0.05", "--lr", "0.3", "--set", "optim.lr=0.07"], "optim.lr", 0.3),
        (["--no-compile", "--set", "system.compile=on"], "system.compile", "off"),
        (["--set", "optim.momentum=0.5"], "optim.momentum", 0.5),  # --set alone still reaches anything
    ],
)
def test_explicit_flags_beat_set(argv: list[str], key: str, value: object) -> None:
    from resnet.cli import build_parser
    from resnet.cli.train import overrides_from_args
    from resnet.config.recipes import load_config

    args = build_parser().parse_args(["train", "--model", "resnet20", "--dataset", "x", *argv])
    section, name = key.split(".")
    assert getattr(getattr(load_config("cifar-paper", overrides_from_args(args)), section), name) == value


# --- 13: ranges live with the schema, checked once -------------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--set", "schedule.gamma=-1"], "'schedule.gamma' must be a factor in (0, 1]"),
        (["--set", "schedule.gamma=0"], "'schedule.gamma' must be a factor in (0, 1]"),
        (["--set", "schedule.milestones=[48000, 32000]"], "'schedule.milestones' must be positive and increasing"),
        (["--set", "schedule.milestones=[-5, 32000]"], "'schedule.milestones' must be positive and increasing"),
        (["--set", "schedule.milestones=[32000, 70000]"], "must lie inside the run's 64000 iterations"),
        (["--set", "optim.momentum=5"], "'optim.momentum' must be a number in [0, 1), got 5"),
        (["--set", "schedule.pct_start=1.5"], "'schedule.pct_start' must be a fraction of the run in (0, 1)"),
        (["--set", "schedule.warmup.epochs=-1"], "'schedule.warmup.epochs' must be a number of epochs >= 0"),
        (["--set", "eval.every_epochs=0"], "'eval.every_epochs' must be at least 1, got 0"),
        (["--set", "data.repeats=1000000"], "'data.repeats' must be a number of repeats in [1, 64]"),
        (["--epochs", "1e300"], "'train.epochs' must be a positive number (at most 1,000,000)"),
        (["--iterations", "99999999999"], "'train.iterations' must be a positive number (at most 1,000,000,000)"),
        (["--seed", "99999999999999999999"], "'seed' must be an integer in [0, 2**32 - 1]"),
        (["--set", "seed=-1"], "'seed' must be an integer in [0, 2**32 - 1]"),
        (["--set", "system.threads=1000000"], "'system.threads' must be a positive number of threads (at most 1024)"),
        (["--workers", "-1"], "argument --workers: must be a number of DataLoader workers in [0, 256], got -1"),
        (["--set", "data.num_workers=-1"], "'data.num_workers' must be a number of DataLoader workers in [0, 256]"),
    ],
)
def test_out_of_range_settings_are_one_line(tmp_path: Path, capsys, argv: list[str], says: str) -> None:
    run_dir = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--recipe", "cifar-paper", "--model", "resnet8", "--dataset", "fake",
                           "--run-dir", str(run_dir), *argv)  # fmt: skip
    assert code == 2 and says in one_error_line(err)
    assert not run_dir.exists()


def test_every_range_names_a_key_of_the_schema_and_the_recipes_are_within_them() -> None:
    from resnet.config.recipes import list_recipes, load_config
    from resnet.config.schema import RANGES, Config

    for key in RANGES:
        value: object = Config()
        for part in key.split("."):
            value = getattr(value, part)  # an AttributeError names a key the schema lost
    for recipe in list_recipes():
        load_config(recipe, {"model.name": "resnet20", "data.dataset": "x"})


@pytest.mark.parametrize("argv", [["--scales", "0"], ["--scales", "32", "-4"], ["--workers", "-1"]])
def test_eval_numbers_are_checked_by_argparse(trained: Path, capsys, argv: list[str]) -> None:
    code, _, err = run_cli(capsys, "eval", "--checkpoint", str(trained / "last.pt"), "--views", "multiscale", *argv)
    assert code == 2 and f"argument {argv[0]}: must be" in one_error_line(err)


# --- 8, 9: untrusted model files: non-finite weights, invalid preprocessing, inconsistent meta ------------------
def _edited_checkpoint(trained: Path, tmp_path: Path, edit) -> Path:
    """A copy of the run's last.pt with ``edit(payload)`` applied and a valid checksum (as a crafted file has)."""
    from resnet.runs.checkpoint import load_checkpoint, save_atomic

    payload = load_checkpoint(trained / "last.pt")
    edit(payload)
    path = tmp_path / "edited" / "last.pt"
    save_atomic(payload, path)
    return path


def _nan_weight(payload: dict) -> None:
    payload["model"]["fc.weight"][0, 0] = float("nan")


def _inf_buffer(payload: dict) -> None:
    payload["model"]["bn1.running_var"][0] = float("inf")


def _meta(field: str, value: object):
    def edit(payload: dict) -> None:
        target = payload["meta"]
        *parents, last = field.split(".")
        for name in parents:
            target = target[name]
        target[last] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (_nan_weight, "holds NaN or infinite weights (fc.weight)"),
        (_inf_buffer, "holds NaN or infinite weights (bn1.running_var)"),
        (_meta("preprocessing.std", [0.0, 0.0, 0.0]), "a standard deviation must be positive"),
        (_meta("preprocessing.std", [0.2, -0.1, 0.2]), "a standard deviation must be positive"),
        (_meta("class_names", ["a", "b"]), "names 2 classes but the model has 3 outputs"),
        (_meta("class_names", None), "has no class_names list"),
        (_meta("model.options", None), "has model.options that is not a JSON object"),
        (_meta("preprocessing.mean", [0.5, 0.5]), "has 2 preprocessing.mean values for 3-channel images"),
        (_meta("preprocessing.crop", [0, 8]), "preprocessing.crop = 0, not a positive whole number"),
        (_meta("preprocessing.mode", "L"), "has 3 preprocessing.mean values for 1-channel images"),
        (_meta("model.options.in_chans", 1), 'preprocessing.mode = "RGB" (3 channels) for a model of 1 input'),
    ],
)
def test_a_checkpoint_with_bad_weights_or_meta_is_refused_by_every_command(
    trained: Path, tmp_path: Path, capsys, edit, says: str
) -> None:
    checkpoint = _edited_checkpoint(trained, tmp_path, edit)
    image = next((trained.parent / "data" / "test" / "a").iterdir())
    for argv in (["eval", "--checkpoint", str(checkpoint)], ["predict", str(image), "--checkpoint", str(checkpoint)],
                 ["export", "--checkpoint", str(checkpoint), "--format", "torchscript"]):  # fmt: skip
        code, out, err = run_cli(capsys, *argv)
        assert code == 2 and says in one_error_line(err), (argv, err)
        assert "nan%" not in out
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == ["last.pt"]


def test_non_finite_safetensors_and_akamaster_weights_are_refused(trained: Path, tmp_path: Path, capsys) -> None:
    from safetensors.torch import load_file, save_file

    from resnet.errors import CheckpointError
    from resnet.models import create_model
    from test_models_akamaster import AkaResNet, save_akamaster

    code, _, err = run_cli(capsys, "export", "--checkpoint", str(trained / "last.pt"), "--format", "safetensors",
                           "--output", str(tmp_path / "model.safetensors"))  # fmt: skip
    assert code == 0, err
    state = load_file(str(tmp_path / "model.safetensors"))
    state["conv1.weight"][0, 0, 0, 0] = float("-inf")
    save_file(state, str(tmp_path / "model.safetensors"))
    code, _, err = run_cli(capsys, "eval", "--checkpoint", str(tmp_path / "model.safetensors"))
    assert code == 2 and "holds NaN or infinite weights (conv1.weight)" in one_error_line(err)
    with pytest.raises(CheckpointError, match="NaN or infinite weights"):  # the library's own reader, --init
        create_model("resnet8", num_classes=3, weights=tmp_path / "model.safetensors")
    reference = AkaResNet(3)
    with torch.no_grad():
        reference.linear.weight[1, 2] = float("nan")
    path = save_akamaster(reference, tmp_path / "resnet20.th")
    code, _, err = run_cli(capsys, "eval", "--checkpoint", str(path), "--dataset", "fake")
    assert code == 2 and "holds NaN or infinite weights (linear.weight)" in one_error_line(err)  # the file's name


def test_deeply_nested_sidecar_json_is_one_line(trained: Path, tmp_path: Path, capsys) -> None:
    code, _, err = run_cli(capsys, "export", "--checkpoint", str(trained / "last.pt"), "--format", "safetensors",
                           "--output", str(tmp_path / "model.safetensors"))  # fmt: skip
    assert code == 0, err
    (tmp_path / "model.json").write_text("[" * 100000 + "]" * 100000)
    code, _, err = run_cli(capsys, "eval", "--checkpoint", str(tmp_path / "model.safetensors"))
    assert code == 2 and "is nested too deeply to be model metadata" in one_error_line(err)


# --- 6: sizes from meta are bounded before anything is built ---------------------------------------------------
def _huge_input(payload: dict) -> None:
    payload["meta"]["model"]["options"]["in_chans"] = 2**40
    payload["meta"]["preprocessing"] = {}


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (_meta("model.name", "resnet600002"), "resnet600002 with 3 input channels and 3 classes would have about"),
        (_huge_input, "with 1,099,511,627,776 input channels"),
        (_meta("preprocessing.crop", [100000, 100000]), "preprocessing.crop = 100,000, above the limit of 8,192"),
        (_meta("preprocessing.resize", 10**6), "preprocessing.resize = 1,000,000, above the limit of 8,192"),
        (_meta("input_size", [3, 8, 2**31]), "input_size = 2,147,483,648, above the limit"),
    ],
)
def test_sizes_in_meta_are_bounded_before_anything_is_built(
    trained: Path, tmp_path: Path, capsys, edit, says: str
) -> None:
    checkpoint = _edited_checkpoint(trained, tmp_path, edit)
    code, _, err = run_cli(capsys, "eval", "--checkpoint", str(checkpoint))
    assert code == 2 and says in one_error_line(err)


def test_the_parameter_limit_is_computed_from_the_name_and_overridable(monkeypatch) -> None:
    from resnet.errors import ConfigError
    from resnet.models import create_model

    with pytest.raises(ConfigError, match=r"resnet50 with 3 input channels and 1,000,000,000 classes .* GiB"):
        create_model("resnet50", num_classes=10**9)
    with pytest.raises(ConfigError, match="RESNET_MAX_PARAMETERS"):
        create_model("plain600002")
    monkeypatch.setenv("RESNET_MAX_PARAMETERS", "50000")
    with pytest.raises(ConfigError, match=r"resnet8 .* about 74,810 parameters .* above the limit of 50,000"):
        create_model("resnet8")
    monkeypatch.setenv("RESNET_MAX_PARAMETERS", "80000")
    assert sum(p.numel() for p in create_model("resnet8").parameters()) < 80_000


# --- 14: analyze gradients reads the run's own data -----------------------------------------------------------
def test_analyze_gradients_uses_the_run_s_data(trained: Path, tmp_path: Path, capsys) -> None:
    from synthetic import write_image_folder

    out = tmp_path / "analysis"
    argv = ["analyze", "gradients", "--checkpoint", str(trained / "last.pt"), "--batch-size", "4", "--out", str(out)]
    code, _, err = run_cli(capsys, *argv, "--model", "plain8")  # no CIFAR-10 here: the run's 3 classes are read
    assert code == 0, err
    grads = json.loads((out / "gradients.json").read_text())
    assert [g["label"] for g in grads] == ["run (trained)", "plain8 (initialisation)"]
    four = write_image_folder(tmp_path / "four", ("a", "b", "c", "d"), splits={"train": 4, "test": 2}, size=(8, 8))
    for command in (argv, ["analyze", "responses", "--checkpoint", str(trained / "last.pt"), "--out", str(out)]):
        code, _, err = run_cli(capsys, *command, "--dataset", str(four), "--force")
        assert code == 2 and "has 4 classes, the checkpoint's model has 3 outputs" in one_error_line(err)
    code, _, err = run_cli(capsys, *argv[:-2], "--batch-size", "0", "--out", str(out))
    assert code == 2 and "argument --batch-size: must be a positive integer" in one_error_line(err)


# --- 10: special files: regular files only; a dangling class folder is refused ---------------------------------
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


# --- 15: the tour's unclear messages ----------------------------------------------------------------------------
def test_a_depth_given_twice_is_refused_before_training(tmp_path: Path, capsys) -> None:
    folder = image_folder(tmp_path / "tiny")
    argv = [*EXPERIMENT, "--dataset", str(folder), "--out", str(tmp_path / "exp")]
    depths = argv.index("--depths")
    argv[depths + 1 : depths + 2] = ["8", "14", "8"]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and "--depths names 8 more than once; give each depth once" in one_error_line(err)
    assert not (tmp_path / "exp").exists()


def test_init_from_nan_weights_names_the_file_not_the_learning_rate(trained: Path, tmp_path: Path, capsys) -> None:
    bad = _edited_checkpoint(trained, tmp_path, _nan_weight)
    code, _, err = run_cli(capsys, *TRAIN, "--dataset", str(trained.parent / "data"), "--iterations", "1",
                           "--init", str(bad), "--run-dir", str(tmp_path / "run"))  # fmt: skip
    line = one_error_line(err)
    assert code == 2 and f"'{bad}' holds NaN or infinite weights (fc.weight)" in line and "--lr" not in line
    assert not (tmp_path / "run" / "last.pt").exists()


def test_an_export_error_names_the_output_not_its_temporary_file(tmp_path: Path) -> None:
    from resnet.export.onnx import ExportError
    from resnet.export.writing import check_targets, staged

    target = tmp_path / "model.onnx"
    with pytest.raises(ExportError) as caught, staged(check_targets([target], source=None, force=False)) as temp:
        raise RuntimeError(f"failed to write {temp}: protobuf too large\n(and 40 more lines)")
    assert str(caught.value) == f"failed to write {target}: protobuf too large"
    assert list(tmp_path.iterdir()) == []


# --- 11: names that are no UTF-8 or hold control characters ------------------------------------------------------
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


@pytest.mark.parametrize(
    ("name", "says"),
    [("run\udce9", "is not valid UTF-8 (byte 0xe9 at position"), ("run\x07", "contains a control character"),
     ("run\nx", "contains a control character ('\\n')")],
)  # fmt: skip
def test_a_run_dir_or_dataset_name_that_cannot_be_written_is_one_line(
    tmp_path: Path, capsys, name: str, says: str
) -> None:
    folder = image_folder(tmp_path / "folder")
    for argv in (["--run-dir", str(tmp_path / name), "--dataset", str(folder)],
                 ["--run-dir", str(tmp_path / "run"), "--dataset", str(tmp_path / name)]):  # fmt: skip
        code, _, err = run_cli(capsys, *TRAIN, "--iterations", "1", *argv)
        assert code == 2 and says in one_error_line(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder"]


# --- 7 (in part): a full archive cache -------------------------------------------------------------------------
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


# --- 7: sizes from headers before a byte is read; temporaries of a killed writer; the tensor cache's checksum ----
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
