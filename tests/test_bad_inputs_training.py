"""Bad inputs and faults in a training run (resnet.train, and resnet.config and resnet.runs as training uses them).

What it guarantees: a run directory in use is refused (a stale lock of a killed process is taken over), one that
is a file, read-only or not nameable is refused before anything is written; flags and settings are checked against
one table of ranges before anything is created, and explicit flags beat ``--set``; settings that cannot work on the
data, a batch too large for memory and a model too large for the images are one line; diverged weights are never
checkpointed; ``--resume`` refuses what it cannot honour (naming both values), a checkpoint of another run and other
data, and extends a finished run keeping its milestones; Ctrl-C and SIGTERM (to the process, or to its group with
DataLoader workers, or while torch.compile builds) checkpoint and print the resume command, exit 130/143; the
checkpoints and metrics files training writes survive torn lines, flipped bits, a full disk and SIGKILL. Every
refused command exits 2 with one line and leaves every earlier file as it was.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch

from bad_inputs import TRAIN, image_folder, one_error_line, run_cli, snapshot
from resnet.errors import CheckpointError, ConfigError, TrainingDivergedError
from resnet.runs.checkpoint import content_checksum, load_checkpoint
from resnet.runs.lock import RunDirLockedError, RunLock
from resnet.runs.run_dir import read_metrics
from resnet.train import load_config, train
from resnet.train.interrupt import InterruptGuard
from resnet.train.resume import extend_schedule, merge_resume_config
from test_train_fake_data import make_fake_bundle
from test_train_loop import PoisonAt  # NaN in the weights after an update, with a finite loss so far

SRC = str(Path(__file__).resolve().parents[1] / "src")


MULTISTEP = ["--set", "schedule.kind=multistep", "--set", "schedule.milestones=[1]"]  # epoch 1 = iteration 2


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    image_folder(root / "folder")
    return root


@pytest.fixture(scope="module")
def finished(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 4-iteration CLI run (2 iterations per epoch, multistep with a milestone at iteration 2)."""
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    cache = tmp_path_factory.mktemp("cache")
    old = os.environ.get("RESNET_CACHE")
    os.environ["RESNET_CACHE"] = str(cache)
    try:
        from resnet.cli import main

        code = main(
            [*TRAIN, *MULTISTEP, "--dataset", str(corpus / "folder"), "--iterations", "4", "--run-dir", str(run_dir)]
        )
    finally:
        if old is None:
            os.environ.pop("RESNET_CACHE", None)
        else:
            os.environ["RESNET_CACHE"] = old
    assert code == 0
    return run_dir


@pytest.fixture
def run_copy(finished: Path, tmp_path: Path) -> Path:
    """A private copy of the finished run (tests may damage it)."""
    return Path(shutil.copytree(finished, tmp_path / "run"))


def resume(run_dir: Path, *extra: str) -> list[str]:
    return [*TRAIN[:1], "--resume", "--run-dir", str(run_dir), "--progress", "none", *extra]


@pytest.fixture
def trained(trained_base: Path) -> Path:
    """The shared tiny run's folder (``tests/conftest.py``): ``trained / "data"``, its 3-class image folder."""
    return trained_base


# --- the run directory: its lock, a file or a read-only folder, names that cannot be written ------------------------


def test_a_held_run_directory_refuses_a_second_run(capsys, corpus: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with RunLock(run_dir):
        before = snapshot(run_dir)
        code, _, err = run_cli(
            capsys, *TRAIN, "--dataset", str(corpus / "folder"), "--iterations", "2", "--run-dir", str(run_dir)
        )
        assert code == 2
        line = one_error_line(err)
        assert f"is in use by process {os.getpid()}" in line and "--run-dir" in line
        assert snapshot(run_dir) == before
        with pytest.raises(RunDirLockedError):  # a second lock on the same file, even from this process
            RunLock(run_dir).acquire()
    assert not (run_dir / "run.lock").exists()  # released


def test_a_stale_lock_of_a_killed_process_is_taken_over(capsys, corpus: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    holder = subprocess.Popen(  # another process holding the lock as RunLock does (without importing torch)
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import fcntl, json, os, time
            fd = os.open({str(run_dir / "run.lock")!r}, os.O_RDWR | os.O_CREAT)
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, json.dumps({{"pid": os.getpid(), "host": "here", "started": time.time()}}).encode())
            print("locked", flush=True)
            time.sleep(120)
        """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirLockedError, match=f"process {holder.pid} on here"):
            RunLock(run_dir).acquire()
    finally:
        holder.kill()
        holder.wait()
    assert (run_dir / "run.lock").exists()  # left behind by the SIGKILL
    code, _, err = run_cli(
        capsys, *TRAIN, "--dataset", str(corpus / "folder"), "--iterations", "2", "--run-dir", str(run_dir)
    )
    assert code == 0, err
    assert f"took over the lock of process {holder.pid}" in err
    assert not (run_dir / "run.lock").exists()


def test_run_dir_that_is_a_file_or_read_only(capsys, corpus: Path, tmp_path: Path) -> None:
    target = tmp_path / "a-file"
    target.write_text("not a run")
    code, _, err = run_cli(
        capsys, *TRAIN, "--dataset", str(corpus / "folder"), "--iterations", "2", "--run-dir", str(target)
    )
    assert code == 2 and "is a file, not a directory" in one_error_line(err)
    assert target.read_text() == "not a run"

    read_only = tmp_path / "ro"
    read_only.mkdir()
    read_only.chmod(0o555)
    try:
        code, _, err = run_cli(
            capsys, *TRAIN, "--dataset", str(corpus / "folder"), "--iterations", "2", "--run-dir", str(read_only)
        )
        assert code == 2 and "is read-only" in one_error_line(err)
        assert list(read_only.iterdir()) == []
    finally:
        read_only.chmod(0o755)


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


# --- the configuration: flags, settings and their ranges, checked before anything is created ------------------------


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--epochs", "0"),
        ("--epochs", "-1"),
        ("--iterations", "-3"),
        ("--iterations", "0"),
        ("--lr", "nan"),
        ("--lr", "inf"),
        ("--lr", "-0.1"),
        ("--batch-size", "0"),
    ],
)
def test_bad_numbers_are_rejected_at_parse_time(capsys, tmp_path: Path, flag: str, value: str) -> None:
    code, out, err = run_cli(
        capsys, "train", "--model", "resnet8", "--dataset", "fake", flag, value, "--run-dir", str(tmp_path / "r")
    )
    assert code == 2 and out == ""
    assert f"argument {flag}: " in one_error_line(err)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("assignment", ["optim.lr=nan", "train.epochs=0", "train.iterations=-3", "optim.momentum=-1"])
def test_bad_numbers_in_settings_are_rejected(capsys, tmp_path: Path, assignment: str) -> None:
    code, _, err = run_cli(
        capsys,
        "train",
        "--model",
        "resnet8",
        "--dataset",
        "fake",
        "--set",
        assignment,
        "--run-dir",
        str(tmp_path / "r"),
    )
    assert code == 2
    assert f"'{assignment.split('=')[0]}' must be" in one_error_line(err)
    assert not (tmp_path / "r").exists()


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


def test_vgg19_on_images_below_its_minimum(capsys, corpus: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    argv = [*TRAIN, "--dataset", str(corpus / "folder"), "--iterations", "2", "--run-dir", str(run_dir)]
    argv[argv.index("resnet8")] = "vgg19"
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    assert "vgg19 needs images of at least 32x32 pixels, the data has 8x8" in one_error_line(err)
    assert not run_dir.exists()  # nothing left behind


def test_a_batch_too_big_for_memory_says_what_to_try(monkeypatch: pytest.MonkeyPatch) -> None:
    from resnet.errors import ConfigError
    from resnet.train.checks import out_of_memory_hint

    fits = r"does not fit in the memory.*--batch-size 64 with --accum-steps 2"
    with pytest.raises(ConfigError, match=fits), out_of_memory_hint(128, 1, "cpu"):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 999 bytes")
    with pytest.raises(RuntimeError, match="shape"), out_of_memory_hint(128, 1, "cpu"):
        raise RuntimeError("shape mismatch")  # other errors pass through unchanged


# --- divergence: never a checkpoint of NaN weights ------------------------------------------------------------------


def tiny(run_dir: Path, **overrides: object):
    settings = {
        "model.name": "resnet8",
        "data.dataset": "fake",
        "data.batch_size": 32,
        "train.iterations": 8,
        "run_dir": str(run_dir),
        "log.progress": "none",
        "log.tensorboard": False,
        "checkpoint.every_iterations": 2,
        **overrides,
    }
    return load_config("fast", settings)


def test_diverged_weights_are_never_checkpointed(tmp_path: Path) -> None:
    with pytest.raises(TrainingDivergedError) as caught:
        train(tiny(tmp_path), data=make_fake_bundle(), callbacks=[PoisonAt(4)])
    message = str(caught.value)
    assert "weights became NaN or infinite by iteration 4" in message
    assert f"The last good checkpoint is {tmp_path / 'last.pt'} (iteration 2)" in message
    checkpoint = load_checkpoint(tmp_path / "last.pt")
    assert checkpoint["iteration"] == 2
    assert all(torch.isfinite(t).all() for t in checkpoint["model"].values() if t.is_floating_point())


def test_divergence_before_any_checkpoint_names_none(tmp_path: Path) -> None:
    with pytest.raises(TrainingDivergedError, match="No checkpoint was written before that") as caught:
        train(tiny(tmp_path), data=make_fake_bundle(), callbacks=[PoisonAt(1)])
    assert "last.pt" not in str(caught.value)
    assert not (tmp_path / "last.pt").exists()


def test_huge_learning_rate_from_the_cli(capsys, corpus: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    code, _, err = run_cli(
        capsys,
        *TRAIN,
        "--dataset",
        str(corpus / "folder"),
        "--iterations",
        "6",
        "--lr",
        "1e6",
        "--run-dir",
        str(run_dir),
        "--set",
        "checkpoint.every_iterations=1",
    )
    assert code == 2
    line = one_error_line(err)
    assert "NaN or infinite" in line
    if (run_dir / "last.pt").exists():  # whatever was written is finite, and the message names it
        checkpoint = load_checkpoint(run_dir / "last.pt")
        assert all(torch.isfinite(t).all() for t in checkpoint["model"].values() if t.is_floating_point())
        assert f"{run_dir / 'last.pt'} (iteration {checkpoint['iteration']})" in line
    else:
        assert "No checkpoint was written" in line


# --- resume: what it may change, whose checkpoint, which data, how a run is extended --------------------------------


def test_a_checkpoint_of_another_run_is_refused(capsys, run_copy: Path, tmp_path: Path) -> None:
    other = Path(shutil.copytree(run_copy, tmp_path / "other"))
    (other / "run.json").write_text(json.dumps({"run_id": "f" * 32}))  # the same files, another run's identity
    before = snapshot(other)
    code, _, err = run_cli(capsys, *resume(other))
    assert code == 2
    line = one_error_line(err)
    assert "belongs to another run" in line and "model resnet8" in line
    assert snapshot(other) == before

    bare = tmp_path / "bare"  # a last.pt dropped into a folder that never held a run
    bare.mkdir()
    shutil.copy(run_copy / "last.pt", bare / "last.pt")
    before = snapshot(bare)
    code, _, err = run_cli(capsys, *resume(bare))
    assert code == 2 and "run.json is missing" in one_error_line(err)
    assert snapshot(bare) == before


def test_resume_refuses_changes_it_cannot_honour(capsys, run_copy: Path) -> None:
    before = snapshot(run_copy)
    for flags, key in (
        (["--lr", "0.5"], "optim.lr"),
        (["--model", "resnet14"], "model.name"),
        (["--batch-size", "4"], "data.batch_size"),
    ):
        code, _, err = run_cli(capsys, *resume(run_copy, *flags))
        assert code == 2
        line = one_error_line(err)
        assert f"--resume cannot change {key}" in line and "may change only: --iterations (longer only)" in line
    code, _, err = run_cli(capsys, *resume(run_copy, "--iterations", "3"))
    assert code == 2 and "can only extend the run" in one_error_line(err)
    assert snapshot(run_copy) == before


def test_the_start_command_with_resume_continues_and_a_differing_flag_names_both_values(
    capsys, corpus: Path, run_copy: Path
) -> None:
    start = [*TRAIN, *MULTISTEP, "--dataset", str(corpus / "folder"), "--run-dir", str(run_copy)]
    saved_recipe = load_checkpoint(run_copy / "last.pt")["config"]["recipe"]
    before = snapshot(run_copy)
    other = "fast" if saved_recipe != "fast" else "cifar-paper"
    code, _, err = run_cli(capsys, *start, "--iterations", "4", "--recipe", other, "--resume")
    assert code == 2 and f"recipe (saved {saved_recipe!r}, given {other!r})" in one_error_line(err)
    code, _, err = run_cli(capsys, *start, "--iterations", "4", "--lr", "0.5", "--resume")
    line = one_error_line(err)
    assert code == 2 and "optim.lr (saved " in line and "given 0.5)" in line
    assert snapshot(run_copy) == before
    code, _, err = run_cli(capsys, *start, "--iterations", "6", "--recipe", saved_recipe, "--resume")
    assert code == 0, err  # every flag equals the saved configuration (or lengthens the run): accepted
    assert load_checkpoint(run_copy / "last.pt")["iteration"] == 6


def test_resume_extends_a_finished_run_keeping_its_milestones(capsys, run_copy: Path) -> None:
    code, _, err = run_cli(capsys, *resume(run_copy, "--iterations", "8"))
    assert code == 0, err
    checkpoint = load_checkpoint(run_copy / "last.pt")
    assert checkpoint["iteration"] == 8
    schedule = checkpoint["config"]["schedule"]
    # the milestone stays at iteration 2 (it would move to 4 if rescaled to the new length)
    assert (schedule["milestones"], schedule["reference_iterations"], schedule["rescale_milestones"]) == (
        [2.0],
        4,
        False,
    )
    lrs = {r["iteration"]: r["lr"] for r in read_metrics(run_copy)}
    assert lrs[8] == pytest.approx(lrs[4])  # the extension runs at the final learning rate


def test_resume_finds_the_same_data_elsewhere_and_refuses_other_data(
    capsys, run_copy: Path, corpus: Path, tmp_path: Path
) -> None:
    moved = Path(shutil.copytree(corpus / "folder", tmp_path / "moved"))
    code, _, err = run_cli(capsys, *resume(run_copy, "--dataset", str(moved), "--iterations", "6"))
    assert code == 0, err
    changed = Path(shutil.copytree(corpus / "folder", tmp_path / "changed"))
    victim = sorted((changed / "train" / "a").iterdir())[0]
    shutil.copy(sorted((changed / "train" / "b").iterdir())[0], victim)
    before = snapshot(run_copy)
    code, _, err = run_cli(capsys, *resume(run_copy, "--dataset", str(changed), "--iterations", "8"))
    assert code == 2 and "differs from the data this run was trained on" in one_error_line(err)
    assert snapshot(run_copy) == before


def test_whole_run_schedules_are_not_extended() -> None:
    saved = load_config("fast", {"model.name": "resnet8", "data.dataset": "x", "train.iterations": 10})
    longer = merge_resume_config(saved, load_config(None, {"train.iterations": 20}, check=False), ["train.iterations"])
    with pytest.raises(ConfigError, match="onecycle schedule spans the whole run") as refusal:
        extend_schedule(saved, longer, steps_per_epoch=5, done=10, run_dir="runs/my run")
    assert "start a new run from its weights: resnet train --init 'runs/my run/last.pt' --run-dir" in str(refusal.value)


# --- signals: Ctrl-C and SIGTERM, to the process or its group, during a step or a compile ---------------------------


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signals_checkpoint_the_current_iteration_and_print_the_resume_command(
    capsys, corpus: Path, tmp_path: Path, signum: int
) -> None:
    run_dir = tmp_path / "run"
    handler_before = signal.getsignal(signum)  # SIG_IGN where the test runs as a background job (nohup, CI)

    def send_when_training() -> None:  # as a user would: once the run is well under way
        deadline = time.monotonic() + 60
        while len(read_metrics(run_dir, "train_curve.jsonl")) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(os.getpid(), signum)

    sender = threading.Thread(target=send_when_training, daemon=True)
    sender.start()
    argv = [*TRAIN, "--dataset", str(corpus / "folder"), "--iterations", "100000", "--run-dir", str(run_dir)]
    code, _, err = run_cli(capsys, *argv, "--set", "log.every_iterations=1", "--set", "checkpoint.every_minutes=0")
    sender.join()
    assert code == 128 + signum
    checkpoint = load_checkpoint(run_dir / "last.pt")
    name = signal.Signals(signum).name
    assert f"{name} received: writing a checkpoint" in err
    line = one_error_line(err.split("to stop at once)")[-1])  # a signal at an evaluation's iteration abandons it:
    assert line.replace(" (its evaluation is left to the resumed run)", "") == (
        f"resnet train: stopped by {name} at iteration {checkpoint['iteration']}; checkpoint written to "
        f"{run_dir / 'last.pt'}; continue with: resnet train --resume --run-dir {run_dir}"
    )
    assert checkpoint["iteration"] >= 3 and not (run_dir / "run.lock").exists()
    assert signal.getsignal(signum) == handler_before  # handlers restored


def test_a_second_ctrl_c_stops_at_once() -> None:
    previous = signal.getsignal(signal.SIGINT)
    with InterruptGuard() as guard, pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.1)
        assert guard.requested == signal.SIGINT  # the first one only asks the loop to checkpoint and stop
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)
    assert signal.getsignal(signal.SIGINT) is previous


def test_a_repeated_sigterm_does_not_cut_the_checkpoint_short() -> None:
    # An experiment's net gets SIGTERM from its parent, then its parent-death SIGTERM when the parent is killed.
    with InterruptGuard() as guard:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.1)
        assert guard.requested == signal.SIGTERM  # still stopping cleanly, at the next iteration's checkpoint
        with pytest.raises(KeyboardInterrupt):  # while a person's Ctrl-C still stops at once
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)


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


# --- the checkpoints and metrics files training writes: torn lines, flipped bits, a full disk, SIGKILL --------------


def test_torn_last_metrics_line_is_dropped_and_temporary_files_removed(capsys, run_copy: Path) -> None:
    with open(run_copy / "metrics.jsonl", "a") as handle:
        handle.write('{"epoch": 2.5, "iteration": 5, "train_lo')  # a kill during the append
    (run_copy / ".last.pt.x1y2.tmp").write_bytes(b"half a checkpoint")
    code, _, err = run_cli(capsys, *resume(run_copy, "--iterations", "6"))
    assert code == 0, err
    assert "warning:" in err and "dropped a torn last line" in err and "UserWarning" not in err
    assert [r["iteration"] for r in read_metrics(run_copy)] == [2, 4, 6]
    assert not list(run_copy.glob(".*.tmp"))


def test_damaged_metrics_line_in_the_middle_is_named(capsys, run_copy: Path) -> None:
    lines = (run_copy / "metrics.jsonl").read_text().splitlines()
    (run_copy / "metrics.jsonl").write_text("\n".join(["{not json", *lines]) + "\n")
    before = snapshot(run_copy)
    code, _, err = run_cli(capsys, *resume(run_copy, "--iterations", "6"))
    assert code == 2 and "metrics.jsonl line 1 is not valid JSON" in one_error_line(err)
    assert snapshot(run_copy) == before


def test_a_flipped_bit_in_the_weights_is_detected(capsys, run_copy: Path) -> None:
    path = run_copy / "last.pt"
    payload = load_checkpoint(path)
    data = bytearray(path.read_bytes())
    weights = payload["model"]["fc.weight"].numpy().tobytes()
    position = data.find(weights)
    assert position > 0
    data[position + len(weights) // 2] ^= 0x10
    path.write_bytes(bytes(data))
    before = snapshot(run_copy)
    with pytest.raises(CheckpointError, match="is corrupt: its content checksum does not match"):
        load_checkpoint(path)
    code, _, err = run_cli(capsys, *resume(run_copy, "--iterations", "6"))
    assert code == 2 and "is corrupt" in one_error_line(err)
    assert snapshot(run_copy) == before


def test_any_flipped_bit_is_detected_or_harmless(finished: Path) -> None:
    original = (finished / "best.pt").read_bytes()
    expected = content_checksum({k: v for k, v in load_checkpoint(finished / "best.pt").items() if k != "checksum"})
    generator = torch.Generator().manual_seed(0)
    positions = torch.randint(0, len(original) * 8, (24,), generator=generator).tolist()
    target = finished.parent / "flipped.pt"
    for bit in positions:
        data = bytearray(original)
        data[bit // 8] ^= 1 << (bit % 8)
        target.write_bytes(bytes(data))
        try:
            loaded = load_checkpoint(target)
        except CheckpointError:
            continue  # detected
        # undetected only where the content is unchanged (zip padding, unused header bytes)
        assert content_checksum({k: v for k, v in loaded.items() if k != "checksum"}) == expected


def test_disk_full_during_a_checkpoint_keeps_the_previous_one(capsys, run_copy: Path) -> None:
    before = (run_copy / "last.pt").read_bytes()
    limit = (64 << 10, resource.getrlimit(resource.RLIMIT_FSIZE)[1])
    saved_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    saved_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
    try:
        resource.setrlimit(resource.RLIMIT_FSIZE, limit)
        code, _, err = run_cli(capsys, *resume(run_copy, "--iterations", "6"))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, saved_limit)
        signal.signal(signal.SIGXFSZ, saved_handler)
    assert code == 2
    line = one_error_line(err)
    assert "the disk is full" in line and "the previous last.pt is intact" in line and "--resume" in line
    assert (run_copy / "last.pt").read_bytes() == before
    assert not list(run_copy.glob(".*.tmp"))


KILL_SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from test_train_fake_data import make_fake_bundle
    from resnet.train import load_config, train

    run_dir, resume = Path(sys.argv[1]), sys.argv[2] == "resume"
    config = load_config("fast", {{
        "model.name": "resnet8", "data.dataset": "fake", "data.batch_size": 32, "train.iterations": 100000,
        "run_dir": str(run_dir), "log.progress": "none", "log.tensorboard": False,
        "checkpoint.every_iterations": 1, "checkpoint.every_minutes": 0,
    }})
    train(config, data=make_fake_bundle(), resume=resume)
""")


@pytest.mark.slow
def test_sigkill_while_checkpointing_never_leaves_a_bad_checkpoint(tmp_path: Path) -> None:
    script = tmp_path / "kill_me.py"
    script.write_text(KILL_SCRIPT.format(tests=str(Path(__file__).resolve().parent)))
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    generator = torch.Generator().manual_seed(7)
    iterations = []

    def wait_until(condition, process: subprocess.Popen) -> None:
        deadline = time.monotonic() + 180  # generous: CI machines are slow to import torch under load
        while not condition():
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"the training subprocess did not get going: {process.communicate()[1][-2000:]}")
            time.sleep(0.05)

    def iteration() -> int:
        try:
            return load_checkpoint(run_dir / "last.pt", verify=False, mmap=True)["iteration"]
        except CheckpointError:  # not written yet
            return -1

    for round_ in range(3):
        mode = "resume" if round_ else "fresh"
        start = iteration()
        process = subprocess.Popen(
            [sys.executable, str(script), str(run_dir), mode],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_until(lambda start=start: iteration() >= start + 2, process)
        time.sleep(float(torch.rand((), generator=generator)) * 0.2)  # somewhere in a write, most likely
        process.kill()
        process.wait()
        checkpoint = load_checkpoint(run_dir / "last.pt")  # verified: never torn, never a flipped bit
        iterations.append(checkpoint["iteration"])
        assert all(torch.isfinite(t).all() for t in checkpoint["model"].values() if t.is_floating_point())
    assert iterations == sorted(iterations) and iterations[-1] > iterations[0]
    records = read_metrics(run_dir)  # every line parses (a torn one is dropped with a warning on resume)
    assert all(r["iteration"] <= iterations[-1] + 1 for r in records)
