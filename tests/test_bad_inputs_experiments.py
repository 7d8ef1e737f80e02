"""Bad inputs to experiments (resnet.experiments): an experiment and its nets in one ``--out``.

What it guarantees: an experiment holds its ``--out`` (a second one is refused), and sets a net aside as stopped
before its first checkpoint only when the net's own run lock is free, after which it starts cleanly; a rerun with
other settings is refused naming the setting, and a damaged summary resumes the net; an ``--out`` that is a file and
a depth given twice are refused before anything is created. Every refused command exits 2 with one line and leaves
every earlier file as it was.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bad_inputs import image_folder, one_error_line, run_cli, snapshot
from resnet.runs.lock import RunDirLockedError, RunLock

EXPERIMENT = ["experiment", "degradation", "--depths", "8", "--iterations", "4", "--jobs", "1",
              "--set", "data.batch_size=8", "--set", "system.threads=1", "--set", "log.tensorboard=false"]  # fmt: skip


@pytest.fixture
def experiment(tmp_path: Path, capsys) -> tuple[Path, Path]:
    folder = image_folder(tmp_path / "tiny")
    out = tmp_path / "exp"
    code, _, err = run_cli(capsys, *EXPERIMENT, "--dataset", str(folder), "--out", str(out))
    assert code == 0, err
    return folder, out


# --- an experiment holds its --out; a net is set aside only under its own run lock ----------------------------------


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


# --- reruns: other settings are refused, a damaged summary resumes --------------------------------------------------


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


# --- refused before anything is created -----------------------------------------------------------------------------


def test_experiment_out_that_is_a_file(tmp_path: Path, capsys) -> None:
    folder = image_folder(tmp_path / "tiny")
    (tmp_path / "file").write_text("x")
    code, _, err = run_cli(capsys, *EXPERIMENT, "--dataset", str(folder), "--out", str(tmp_path / "file"))
    assert code == 2 and "is a file" in one_error_line(err)


def test_a_depth_given_twice_is_refused_before_training(tmp_path: Path, capsys) -> None:
    folder = image_folder(tmp_path / "tiny")
    argv = [*EXPERIMENT, "--dataset", str(folder), "--out", str(tmp_path / "exp")]
    depths = argv.index("--depths")
    argv[depths + 1 : depths + 2] = ["8", "14", "8"]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and "--depths names 8 more than once; give each depth once" in one_error_line(err)
    assert not (tmp_path / "exp").exists()
