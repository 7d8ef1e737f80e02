"""Bad inputs and faults of issue 26: concurrent runs, outputs that never replace inputs, signals from schedulers,
untrusted model files; one line, exit 2, nothing that existed changed, and the variants of each."""

from __future__ import annotations

from pathlib import Path

import pytest

from bad_inputs import image_folder, one_error_line, run_cli, snapshot
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
