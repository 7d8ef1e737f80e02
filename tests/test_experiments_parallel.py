"""``resnet experiment --jobs``: nets side by side in processes of their own, resumable after a kill, each
bit-identical to the same net trained alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from resnet.experiments import ExperimentSettings, budget_named, run_degradation
from resnet.experiments.parallel import resolve_jobs, threads_per_job
from resnet.runs import load_checkpoint
from resnet.runs.run_dir import read_metrics
from synthetic import write_image_folder

pytestmark = pytest.mark.slow  # torchrun, subprocesses, compilation or real data: `make check` skips it

SRC = Path(__file__).resolve().parents[1] / "src"
TINY = {
    "data.batch_size": 4,
    "data.val_size": 4,
    "data.pipeline": "tensor",
    "system.threads": 1,
    # The precision and layout fixed: measured beside the other net and the test suite, the two would be noise, and
    # a net trained alone must run the same kernels to be bit-identical (resumed runs keep their own choice anyway).
    "system.amp": "off",
    "system.channels_last": "on",
    "log.tensorboard": False,
    "checkpoint.every_iterations": 20,
    "checkpoint.every_minutes": 0,
}
ITERATIONS = 400


def test_jobs_auto_is_one_net_per_core_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import resnet.experiments.parallel as parallel

    monkeypatch.setattr(parallel, "cpu_cores", lambda: 2)
    assert resolve_jobs("auto", pending=4, on_gpu=False) == 2
    assert resolve_jobs("auto", pending=1, on_gpu=False) == 1
    assert resolve_jobs("auto", pending=4, on_gpu=True) == 1
    assert resolve_jobs("3", pending=4, on_gpu=True) == 3 and threads_per_job(2) == 1
    with pytest.raises(Exception, match="--jobs"):
        resolve_jobs("0", pending=1, on_gpu=False)


def _command(out: Path, dataset: Path) -> list[str]:
    sets = [f"--set={key}={str(value).lower() if isinstance(value, bool) else value}" for key, value in TINY.items()]
    return [sys.executable, "-m", "resnet", "experiment", "degradation", "--dataset", str(dataset), "--depths", "8",
            "--iterations", str(ITERATIONS), "--jobs", "2", "--out", str(out), *sets]  # fmt: skip


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the kill relies on Linux's parent-death signal")
def test_two_nets_in_parallel_resume_after_a_kill_bit_identically(tmp_path: Path) -> None:
    dataset = write_image_folder(tmp_path / "tiny", classes=("a", "b"), splits={"train": 16, "test": 4}, size=(8, 8))
    out = tmp_path / "parallel"
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    first = subprocess.Popen(_command(out, dataset), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    nets = [out / "plain8-seed0", out / "resnet8-seed0"]
    deadline = time.monotonic() + 120
    while not all((net / "last.pt").is_file() for net in nets):  # both nets have trained a while
        assert first.poll() is None, first.stdout.read().decode() if first.stdout else ""
        assert time.monotonic() < deadline
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)  # the experiment dies; each net gets SIGTERM, checkpoints and stops
    first.wait()
    time.sleep(3)
    stopped = [int(load_checkpoint(net / "last.pt")["iteration"]) for net in nets]
    assert all(0 < it < ITERATIONS for it in stopped) or all((net / "summary.json").exists() for net in nets)

    second = subprocess.run(_command(out, dataset), env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "resuming" in second.stdout

    _train_alone(tmp_path / "alone", dataset)
    for net in nets:
        ours = load_checkpoint(net / "last.pt")["model"]
        theirs = load_checkpoint(tmp_path / "alone" / net.name / "last.pt")["model"]
        assert all(torch.equal(ours[k], theirs[k]) for k in theirs), net.name


# In the nets' processes only (spawned children import sitecustomize from PYTHONPATH): every evaluation pass lasts
# minutes, one batch every 0.1 s, and says when it begins. Only a stop that abandons it can end it in seconds.
SLOW_EVALUATION = """
import os, time
from pathlib import Path
import resnet.eval
import resnet.eval.evaluate as evaluate

original = evaluate.evaluate_metrics

def slow(model, stream, *args, **kwargs):
    Path(os.environ["EVALUATING"], str(os.getpid())).touch()

    def batches():
        for batch in stream:
            for _ in range(3000):
                time.sleep(0.1)
                yield batch

    return original(model, batches(), *args, **kwargs)

if os.environ.get("EVALUATING"):
    evaluate.evaluate_metrics = resnet.eval.evaluate_metrics = slow
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="os.setsid and the parent-death signal")
def test_ctrl_c_stops_an_experiment_s_nets_within_seconds_during_their_evaluations(tmp_path: Path) -> None:
    dataset = write_image_folder(tmp_path / "tiny", classes=("a", "b"), splits={"train": 16, "test": 4}, size=(8, 8))
    out, evaluating, patch = tmp_path / "parallel", tmp_path / "evaluating", tmp_path / "patch"
    evaluating.mkdir()
    patch.mkdir()
    (patch / "sitecustomize.py").write_text(SLOW_EVALUATION)
    path = os.pathsep.join([str(patch), str(SRC), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path, "EVALUATING": str(evaluating)}
    first = subprocess.Popen(_command(out, dataset), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while len(list(evaluating.iterdir())) < 2:  # both nets are in an evaluation of minutes
        assert first.poll() is None, first.stdout.read().decode() if first.stdout else ""
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.5)
    first.send_signal(signal.SIGINT)  # Ctrl-C reaches the experiment, which stops its nets
    start = time.monotonic()
    try:
        output = first.communicate(timeout=120)[0].decode()
    finally:
        first.kill()  # a no-op once it has ended
    # Seconds (16 s measured on 2 busy cores, checkpoints of two nets included): not the 300 s and more that one
    # batch of the evaluations takes.
    assert time.monotonic() - start < 60, output
    assert first.returncode == 128 + signal.SIGINT, output
    assert "Run the same `resnet experiment` command again to continue" in output
    nets = [out / "plain8-seed0", out / "resnet8-seed0"]
    checkpoints = [load_checkpoint(net / "last.pt") for net in nets]
    assert all(checkpoint["evaluation_due"] for checkpoint in checkpoints), output

    env.pop("EVALUATING")
    second = subprocess.run(_command(out, dataset), env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout + second.stderr
    _train_alone(tmp_path / "alone", dataset)
    for net in nets:
        ours, theirs = read_metrics(net), read_metrics(tmp_path / "alone" / net.name)
        drop = ("images_per_sec", "wall_time", "train_time")
        assert [{k: v for k, v in r.items() if k not in drop} for r in ours] == [
            {k: v for k, v in r.items() if k not in drop} for r in theirs
        ], net.name


def _train_alone(out: Path, dataset: Path) -> None:
    """The same nets trained one after another in this process, never interrupted: what a resumed experiment must
    reproduce."""
    alone = ExperimentSettings(
        out=out, depths=(8,), dataset=str(dataset), budget=budget_named("small", ITERATIONS),
        overrides={**TINY, "log.progress": "none"}, jobs=1,
    )  # fmt: skip
    run_degradation(alone, say=lambda _: None)
