"""Distributed training on the CPU (gloo): equivalence with one process, sharded evaluation, exact resume at the
same and another world size, bounded failure detection and torchrun restarts. Tiny data, resnet8, 8 iterations.

Processes are started with the environment torchrun gives them (RANK, WORLD_SIZE, ...) — or by torchrun itself
for the restart test — and run the real CLI (``resnet.cli.main``) or ``train()``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from resnet.data import load_data
from resnet.data.loader_pipeline import SeededBatchSampler
from resnet.data.tensor_pipeline import shard_bounds
from resnet.eval import evaluate_metrics
from resnet.models import create_model
from resnet.runs.checkpoint import load_checkpoint
from resnet.runs.run_dir import read_metrics
from resnet.train import load_config, train
from synthetic import write_image_folder

pytestmark = pytest.mark.slow  # torchrun, subprocesses, compilation or real data: `make check` skips it

SRC = str(Path(__file__).resolve().parents[1] / "src")
TIMEOUT = 30.0  # --dist-timeout of the restart test; a dead rank is noticed at once, far within it

TOLERANCE = 1e-5  # SyncBN: 2 x 32 vs 1 x 64, after 8 updates
# 4 classes x 70 = 280 training images, 15 carved off for validation (odd: uneven shards): 265 -> 4 steps of 64
# per epoch, 2 epochs. Channels-last off: oneDNN picks batch-size-dependent kernels for it, which differ by ~1e-5.
SETTINGS: dict[str, object] = {
    "model.name": "resnet8",
    "data.pipeline": "tensor",
    "data.augment": "none",
    "data.val_size": 15,
    "data.batch_size": 32,
    "data.eval_batch_size": 16,
    "data.num_workers": 0,
    "optim.lr": 0.05,
    "optim.reference_batch_size": 32,  # the linear scaling rule: lr 0.05 x 64/32 for the global batch of 64
    "train.epochs": 2,
    "eval.test": "every",
    "checkpoint.every_iterations": 3,
    "checkpoint.every_minutes": 0,
    "system.device": "cpu",
    "system.channels_last": "off",
    "system.amp": "off",  # fp32: the equivalences below are float32-exact (`auto` picks bf16 where the CPU has it)
    "log.tensorboard": False,
    "log.every_iterations": 2,
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("images")
    write_image_folder(root, classes=("a", "b", "c", "d"), splits={"train": 70, "val": 9}, size=(12, 12))
    return root


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    cache = tmp_path_factory.mktemp("cache")
    return {
        **os.environ,
        "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "RESNET_CACHE": str(cache),
        "OMP_NUM_THREADS": "1",
    }


def settings(folder: Path, run_dir: Path, **extra: object) -> dict[str, object]:
    return {**SETTINGS, "data.dataset": str(folder), "run_dir": str(run_dir), **extra}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cli_args(values: dict[str, object]) -> list[str]:
    args = ["train", "--recipe", "fast", "--progress", "plain"]
    for key, value in values.items():
        text = json.dumps(value) if not isinstance(value, bool) else str(value).lower()
        args += ["--set", f"{key}={text}"]
    return args


# Each rank runs the CLI. With HANG_AT set, rank 1 copies the run directory aside and SIGKILLs itself after that
# iteration on torchrun's first attempt; with SIGNAL_AT, rank 1 sends itself SIGTERM after that iteration. Every
# rank records how and when its CLI call ended.
CLI_SCRIPT = textwrap.dedent("""
    import json, os, shutil, signal, sys, time
    from pathlib import Path
    import resnet.train.trainer as trainer_module

    class Fault:
        def on_iteration_end(self, trainer, iteration):
            first_attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
            if iteration == int(os.environ.get("HANG_AT", -1)) and os.environ["RANK"] == "1" and first_attempt:
                shutil.copytree(trainer.run_dir.path, str(trainer.run_dir.path) + "-snapshot")
                Path(str(trainer.run_dir.path) + "-killed").write_text(str(time.time()))
                os.kill(os.getpid(), signal.SIGKILL)
            if iteration == int(os.environ.get("SIGNAL_AT", -1)) and os.environ["RANK"] == "1":
                os.kill(os.getpid(), signal.SIGTERM)  # this rank alone: rank 0 learns of it at the next sync

    original = trainer_module.Trainer.__init__
    def patched(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.callbacks.append(Fault())
    trainer_module.Trainer.__init__ = patched

    from resnet.cli import main
    code = main(sys.argv[1:])
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    record = {"code": code, "time": time.time()}
    Path(os.environ["EXIT_DIR"], f"rank{os.environ['RANK']}-attempt{attempt}.json").write_text(json.dumps(record))
    sys.exit(code)
""")

# Two trainings in one process group made by the caller (the library path): with and without SyncBN.
REFERENCE_SCRIPT = textwrap.dedent("""
    import json, sys
    import torch.distributed as dist
    from resnet.train import load_config, train

    settings = json.loads(sys.argv[1])
    dist.init_process_group("gloo")
    for name, sync_bn in (("sync", True), ("plain", False)):
        values = {**settings, "run_dir": settings["run_dir"] + "/" + name, "distributed.sync_bn": sync_bn}
        train(load_config("fast", values))
    dist.destroy_process_group()
""")


def launch(tmp_path: Path, env: dict[str, str], script: str, args: list[str], world: int) -> list[subprocess.Popen]:
    """``world`` processes with the environment torchrun gives its workers."""
    path = tmp_path / "script.py"
    path.write_text(script)
    port = str(free_port())
    processes = []
    for rank in range(world):
        rank_env = {
            **env,
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(world),
            "LOCAL_WORLD_SIZE": str(world),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": port,
        }
        command = [sys.executable, str(path), *args]
        output = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}
        processes.append(subprocess.Popen(command, env=rank_env, **output))
    return processes


def finish(processes: list[subprocess.Popen], timeout: float = 900) -> list[str]:
    outputs = []
    for process in processes:
        output, _ = process.communicate(timeout=timeout)
        assert process.returncode == 0, output
        outputs.append(output)
    return outputs


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "last.pt")["model"]


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].is_floating_point())


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, folder: Path, env: dict[str, str]) -> dict[str, object]:
    """Uninterrupted runs: 2 processes x 32 with and without SyncBN (one launch), and 1 process x 64."""
    root = tmp_path_factory.mktemp("reference")
    values = {**settings(folder, root), "log.progress": "plain"}
    outputs = finish(launch(root, env, REFERENCE_SCRIPT, [json.dumps(values)], 2))
    single = load_config("fast", settings(folder, root / "single", **{"data.batch_size": 64}))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RESNET_CACHE", env["RESNET_CACHE"])
        train(single)
    return {"sync": root / "sync", "plain": root / "plain", "single": root / "single", "outputs": outputs}


def test_sync_bn_two_by_32_equals_one_by_64(reference: dict[str, object]) -> None:
    sync, single = weights(Path(reference["sync"])), weights(Path(reference["single"]))
    assert load_checkpoint(Path(reference["sync"]) / "last.pt")["iteration"] == 8
    assert max_difference(sync, single) < TOLERANCE
    # Without SyncBN each rank normalises by its own 32 images: a real, documented difference (docs/training.md).
    assert max_difference(weights(Path(reference["plain"])), single) > 1e-3


def test_rank_zero_alone_reports_and_writes(reference: dict[str, object]) -> None:
    rank0, rank1 = reference["outputs"]  # type: ignore[misc]
    assert "distributed: 2 processes (gloo), global batch 64 (32 per process)" in rank0
    assert "lr 0.05 x 64/32 = 0.1 (linear scaling rule)" in rank0
    assert "SyncBatchNorm" in rank0 and "batch norm per rank" in rank0
    assert "iter 8/8" in rank0 and "iter" not in rank1  # rank 1 trains silently
    records = read_metrics(Path(reference["sync"]))
    assert [r["iteration"] for r in records] == [4, 8]  # one line per evaluation, not one per rank
    summary = json.loads((Path(reference["sync"]) / "summary.json").read_text())
    assert summary["world_size"] == 2
    checkpoint = load_checkpoint(Path(reference["sync"]) / "last.pt")
    assert (checkpoint["world_size"], checkpoint["global_batch"], checkpoint["images_seen"]) == (2, 64, 512)


def test_sharded_evaluation_equals_single_process(reference: dict[str, object], folder: Path) -> None:
    last = read_metrics(Path(reference["sync"]))[-1]
    data = load_data(str(folder), pipeline="tensor", val_size=15, eval_batch_size=16, augment="none")
    model = create_model("resnet8", num_classes=4, in_chans=3)
    model.load_state_dict(weights(Path(reference["sync"])))
    for stream, key in ((data.val, "val"), (data.test, "test")):
        metrics = evaluate_metrics(model, stream)
        error, loss = metrics.top1_error, metrics.loss
        assert last[f"{key}_error"] == pytest.approx(error, abs=1e-9)
        assert last[f"{key}_loss"] == pytest.approx(loss, rel=1e-5)


def test_eval_shards_are_disjoint_and_cover_the_set() -> None:
    for size, world in ((36, 2), (15, 2), (7, 3), (2, 4)):
        parts = [range(*shard_bounds(size, rank, world)) for rank in range(world)]
        assert sorted(i for part in parts for i in part) == list(range(size))


def test_loader_sampler_shards_each_epoch_disjointly_in_one_seeded_order() -> None:
    one = SeededBatchSampler(100, 8, seed=3, rank=0, world_size=1)
    ranks = [SeededBatchSampler(100, 4, seed=3, rank=r, world_size=2) for r in range(2)]
    for sampler in (one, *ranks):
        sampler.set_epoch(2)
    single_batches = [[i for i, _ in batch] for batch in one]
    rank_batches = [[[i for i, _ in batch] for batch in sampler] for sampler in ranks]
    for k, batch in enumerate(single_batches):  # step k of 2 x 4 covers step k of 1 x 8
        assert sorted(rank_batches[0][k] + rank_batches[1][k]) == sorted(batch)
    seen = [{i for batch in batches for i in batch} for batches in rank_batches]
    assert not seen[0] & seen[1]


def test_killed_rank_torchrun_restart_and_exact_resume(
    tmp_path: Path, folder: Path, env: dict[str, str], reference: dict[str, object]
) -> None:
    """Rank 1 is SIGKILLed at iteration 7 (last checkpoint: 6, mid-epoch). Rank 0 must stop by itself, at once,
    with a clear message; torchrun restarts both; --resume auto continues bit-identically to the uninterrupted
    run. The run directory as it was at the kill is then resumed by one process."""
    run_dir, exits = tmp_path / "run", tmp_path / "exits"
    exits.mkdir()
    script = tmp_path / "cli_with_faults.py"
    script.write_text(CLI_SCRIPT)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    options = ["--max-restarts", "1", "--monitor-interval", "10"]  # rank 0 must notice before torchrun does
    cli = [*cli_args(settings(folder, run_dir)), "--sync-bn", "--dist-timeout", str(TIMEOUT), "--resume", "auto"]
    fault = {"HANG_AT": "7", "EXIT_DIR": str(exits)}
    result = subprocess.run(
        [*torchrun, *options, str(script), *cli], env={**env, **fault}, capture_output=True, text=True, timeout=900
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output

    survivor = json.loads((exits / "rank0-attempt0.json").read_text())
    assert survivor["code"] == 2, output  # a user-facing error, not a crash
    assert survivor["time"] - float(Path(f"{run_dir}-killed").read_text()) < TIMEOUT
    assert "rank 1 of 2 died (rank 0 lost contact with it at iteration 7; last checkpoint: iteration 6," in output
    assert "torchrun restarts the job (restart 1 of 1) and --resume auto continues it" in output
    assert "Traceback" not in output
    assert output.count("distributed: 2 processes (gloo), global batch 64 (32 per process)") == 2  # rank 0 only
    assert json.loads((exits / "rank1-attempt1.json").read_text())["code"] == 0

    expected, actual = load_checkpoint(Path(reference["sync"]) / "last.pt"), load_checkpoint(run_dir / "last.pt")
    assert actual["iteration"] == 8
    for name, tensor in expected["model"].items():
        assert torch.equal(tensor, actual["model"][name]), name
    for key, state in expected["optimizer"]["state"].items():
        assert torch.equal(state["momentum_buffer"], actual["optimizer"]["state"][key]["momentum_buffer"])

    def comparable(records: list[dict]) -> list[dict]:
        return [{k: v for k, v in r.items() if k not in ("images_per_sec", "wall_time", "train_time")} for r in records]

    assert comparable(read_metrics(run_dir)) == comparable(read_metrics(Path(reference["sync"])))

    # One process takes over the 2-process checkpoint of iteration 6: same global batch, same data position.
    snapshot = Path(f"{run_dir}-snapshot")
    assert load_checkpoint(snapshot / "last.pt")["position"] == {"epoch": 1, "batch": 2}
    config = load_config(None, {"run_dir": str(snapshot), "log.progress": "none"}, check=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RESNET_CACHE", env["RESNET_CACHE"])
        summary = train(config, resume=True)
    assert summary["iterations"] == 8 and summary["world_size"] == 1
    assert load_checkpoint(snapshot / "last.pt")["config"]["data"]["batch_size"] == 64
    assert max_difference(weights(snapshot), expected["model"]) < TOLERANCE


def test_torchrun_noticing_first_leaves_one_line(tmp_path: Path, folder: Path, env: dict[str, str]) -> None:
    """The variant users meet: torchrun's default monitor interval notices the SIGKILLed rank first and sends SIGTERM
    to the survivor, whose DataLoader worker is stopped with it. Rank 0's stderr still ends in one line naming the
    dead rank and the restart, without a traceback; the restart finishes the run."""
    run_dir, exits, logs = tmp_path / "run", tmp_path / "exits", tmp_path / "logs"
    exits.mkdir()
    script = tmp_path / "cli_with_faults.py"
    script.write_text(CLI_SCRIPT)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    options = ["--max-restarts", "1", "--log-dir", str(logs), "--redirects", "3"]  # each rank's output in its file
    loader = {"data.pipeline": "loader", "data.num_workers": 1}
    cli = [*cli_args(settings(folder, run_dir, **loader)), "--dist-timeout", str(TIMEOUT), "--resume", "auto"]
    result = subprocess.run(
        [*torchrun, *options, str(script), *cli],
        env={**env, "HANG_AT": "5", "EXIT_DIR": str(exits)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (rank0,) = logs.glob("*/attempt_0/0/stderr.log")
    err = rank0.read_text()
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("resnet train: error:")]
    assert len(errors) == 1 and errors[0].startswith("resnet train: error: rank 1 of 2 died (rank 0 lost contact")
    assert "torchrun restarts the job (restart 1 of 1)" in errors[0]
    assert "SIGTERM received" not in err  # no checkpoint can be agreed on with a dead rank: none is promised
    assert err.rstrip().splitlines()[-1] == errors[0]
    assert json.loads((exits / "rank0-attempt0.json").read_text())["code"] == 2
    assert json.loads((exits / "rank0-attempt1.json").read_text())["code"] == 0
    assert load_checkpoint(run_dir / "last.pt")["iteration"] == 8


def test_sigterm_to_one_rank_stops_all_at_one_iteration_and_resumes_exactly(
    tmp_path: Path, folder: Path, env: dict[str, str], reference: dict[str, object]
) -> None:
    """A scheduler's SIGTERM may reach one rank first: every rank stops after the same update, rank 0 writes the
    checkpoint, both exit with SIGTERM's code, and the resumed run ends bit-identical to the uninterrupted one."""
    run_dir, exits = tmp_path / "run", tmp_path / "exits"
    exits.mkdir()
    cli = [*cli_args(settings(folder, run_dir)), "--sync-bn"]
    processes = launch(tmp_path, {**env, "SIGNAL_AT": "4", "EXIT_DIR": str(exits)}, CLI_SCRIPT, cli, 2)
    outputs = [process.communicate(timeout=900)[0] for process in processes]
    assert [process.returncode for process in processes] == [128 + 15, 128 + 15], outputs
    assert "SIGTERM received" in outputs[1] and "SIGTERM received" not in outputs[0]
    assert "stopped by SIGTERM (sent to another rank) at iteration 5" in outputs[0], outputs[0]
    assert "stopped by SIGTERM at iteration 5" in outputs[1], outputs[1]
    assert load_checkpoint(run_dir / "last.pt")["iteration"] == 5

    resume = ["train", "--resume", "--run-dir", str(run_dir), "--progress", "plain"]  # as the message says
    finish(launch(tmp_path, {**env, "EXIT_DIR": str(exits)}, CLI_SCRIPT, resume, 2))
    expected, actual = load_checkpoint(Path(reference["sync"]) / "last.pt"), load_checkpoint(run_dir / "last.pt")
    assert actual["iteration"] == 8
    for name, tensor in expected["model"].items():
        assert torch.equal(tensor, actual["model"][name]), name


def test_python_dash_m_resnet_exists(env: dict[str, str]) -> None:
    command = [sys.executable, "-m", "resnet", "train", "--help"]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    assert result.returncode == 0 and "--sync-bn" in result.stdout and "--resume" in result.stdout


def test_resume_at_another_world_size_keeps_the_global_batch() -> None:
    from resnet.errors import ConfigError
    from resnet.train.distributed import DistContext, resume_at_world_size

    checkpoint = {"world_size": 2, "global_batch": 64, "images_seen": 384, "iteration": 6}
    for world, per_rank in ((1, 64), (4, 16), (2, 32)):
        config = load_config("fast", {"data.batch_size": 32}, check=False)
        resume_at_world_size(config, config, checkpoint, DistContext(world_size=world))
        assert config.data.batch_size == per_rank
    with pytest.raises(ConfigError, match="cannot be split over 3 processes"):
        resume_at_world_size(config, config, checkpoint, DistContext(world_size=3))


def test_the_printed_line_has_the_global_batch_scaled_lr_and_warm_up() -> None:
    from resnet.train import build_schedule
    from resnet.train.distributed import DistContext, describe

    config = load_config("imagenet-paper", {"model.name": "resnet50", "data.dataset": "x", "data.batch_size": 64})
    ctx = DistContext(world_size=8, backend="nccl")
    line = describe(config, ctx, build_schedule(config, 2500, ctx.world_size))
    assert "8 processes (nccl), global batch 512 (64 per process), lr 0.1 x 512/256 = 0.2" in line
    assert "warm-up over 12500 iterations from 0.1" in line  # Goyal et al.: 5 epochs from the unscaled lr


def test_a_lost_peer_becomes_one_clear_error() -> None:
    from resnet.errors import DistributedError
    from resnet.train.distributed import DistContext, guard

    ctx = DistContext(rank=1, world_size=2, timeout=60)
    expected = pytest.raises(DistributedError, match=r"rank 1 of 2 lost contact with another rank at iteration 7")
    with expected, guard(ctx, lambda: "at iteration 7", resumes=True):
        raise RuntimeError("[gloo/transport/tcp/pair.cc:561] Connection closed by peer [127.0.0.1]:43667")
    with pytest.raises(RuntimeError, match="shape mismatch"), guard(ctx, lambda: "", resumes=True):
        raise RuntimeError("shape mismatch")  # not a communication error: unchanged
    with pytest.raises(RuntimeError, match="Connection"), guard(DistContext(), lambda: "", resumes=True):
        raise RuntimeError("Connection closed by peer")  # single process: unchanged


def _ended_process() -> int:
    """The pid of a process that has ended (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_the_dead_rank_is_named_with_what_torchrun_does_next(monkeypatch: pytest.MonkeyPatch) -> None:
    """torchrun's SIGTERM stops the survivor's DataLoader workers while it handles the gloo error: the chained
    error is still a lost peer, and the rank whose process ended is named, with the restart torchrun makes."""
    from resnet.errors import DistributedError
    from resnet.train.distributed import DistContext, Peer, guard, this_process

    here = this_process()
    alive, ended = Peer(here.host, os.getpid()), Peer(here.host, _ended_process())
    ctx = DistContext(rank=0, world_size=3, peers=(here, alive, ended))
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "0")
    monkeypatch.setenv("TORCHELASTIC_MAX_RESTARTS", "2")

    with pytest.raises(DistributedError) as stop, guard(ctx, lambda: "at iteration 7", resumes=True):
        try:
            raise RuntimeError("[pair.cc:561] Connection closed by peer [127.0.0.1]:19370. GLHF")
        except RuntimeError:
            raise RuntimeError("DataLoader worker (pid 29732) is killed by signal: Terminated. ")  # noqa: B904
    message = str(stop.value)
    assert message.startswith("rank 2 of 3 died (rank 0 lost contact with it at iteration 7)")
    assert "torchrun restarts the job (restart 1 of 2) and --resume auto continues it" in message
    assert "\n" not in message and "GLHF" not in message

    refused = pytest.raises(DistributedError, match="without --resume auto the restart refuses this run directory")
    with refused, guard(ctx, lambda: "at iteration 7", resumes=False):
        raise RuntimeError("DataLoader worker (pid 1) is killed by signal: Terminated. ")
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "2")
    last = pytest.raises(DistributedError, match=r"no restart left \(--max-restarts 2\); continue with --resume")
    with last, guard(ctx, lambda: "at iteration 7", resumes=True):
        raise RuntimeError("Connection closed by peer")
    with pytest.raises(RuntimeError, match="killed by signal: Killed"), guard(ctx, lambda: "", resumes=True):
        raise RuntimeError("DataLoader worker (pid 1) is killed by signal: Killed.")  # its own worker: unchanged


def test_resume_auto_starts_then_continues(tmp_path: Path) -> None:
    from resnet.errors import ConfigError
    from test_train_fake_data import make_fake_bundle
    from test_train_loop import tiny_config

    config = tiny_config(tmp_path, **{"train.epochs": 1})
    first = train(config, data=make_fake_bundle(), resume="auto")  # nothing to resume: a fresh run
    assert first["iterations"] == 8
    again = train(config, data=make_fake_bundle(), resume="auto")  # the finished run is continued, not redone
    assert again["iterations"] == 8 and again["test_error"] == first["test_error"]
    longer = tiny_config(tmp_path, **{"train.epochs": 2})  # a change --resume cannot honour is refused (issue 7)
    with pytest.raises(ConfigError, match="onecycle schedule spans the whole run"):
        train(longer, data=make_fake_bundle(), resume="auto")


def test_accumulated_update_all_reduces_once_with_the_same_gradient(tmp_path: Path) -> None:
    """DDP + accumulation: the first k-1 backward passes run in ``no_sync``; the update is unchanged."""
    from contextlib import nullcontext

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from resnet.train.step import train_step

    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
        twin = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
        twin.load_state_dict(net.state_dict())
        ddp = DistributedDataParallel(net)
        reductions = []

        def counting_hook(state, bucket):  # unannotated: DDP rejects annotations other than its own
            reductions.append(bucket.index())
            return dist.all_reduce(bucket.buffer(), async_op=True).get_future().then(lambda f: f.value()[0])

        ddp.register_comm_hook(None, counting_hook)
        images, labels = torch.randn(12, 1, 3, 4), torch.randint(0, 3, (12,))
        batches = [(images[i : i + 4], labels[i : i + 4]) for i in (0, 4, 8)]
        scaler = torch.amp.GradScaler("cpu", enabled=False)
        for model, forward in ((net, ddp), (twin, twin)):
            optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
            train_step(forward, torch.nn.CrossEntropyLoss(), batches, optimizer, scaler, autocast=nullcontext)
        assert len(reductions) == 1  # one bucket, reduced once for the 3 accumulated batches
        for a, b in zip(net.parameters(), twin.parameters(), strict=True):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    finally:
        dist.destroy_process_group()
