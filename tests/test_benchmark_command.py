"""`resnet benchmark`: the repository's benchmark runner, installed with the package, for a user's own machine."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from resnet.benchmarks import runner
from resnet.benchmarks.common import Row
from resnet.benchmarks.runner import add_arguments
from resnet.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def _no_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No dataset anywhere: not in $RESNET_DATA, the cache, or ../shared beside the checkout."""
    import resnet.data.paths

    monkeypatch.delenv("RESNET_DATA", raising=False)
    monkeypatch.setenv("RESNET_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(resnet.data.paths, "checkout_shared_datasets", lambda: None)


def test_every_help_is_built_without_importing_torch() -> None:
    probe = (
        "import sys\nfrom resnet.cli import build_parser\nbuild_parser()\n"
        "print(sorted(m for m in ('torch', 'torchvision', 'numpy') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_help_lists_the_sections(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["benchmark", "--help"])
    out = capsys.readouterr().out
    assert stop.value.code == 0
    assert all(f"  {n}. " in out for n in range(1, 7)) and "--quick" in out and "--gpu-budget" in out


@pytest.mark.parametrize("only", ["9", "1,x", ",", "0"])
def test_an_unknown_section_is_refused_by_the_parser(only: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["benchmark", "--only", only])
    assert stop.value.code == 2
    assert "--only" in capsys.readouterr().err


def test_sections_keep_their_order_once_each() -> None:
    assert _args("--only", "3,1,3").only == (3, 1)


def test_a_section_asked_for_without_its_data_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_data(monkeypatch, tmp_path)
    code = main(["benchmark", "--only", "1", "--quick", "--threads", "1", "--data-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "cifar10-jpeg not found" in err[0] and "--data-dir" in err[0]


def test_all_sections_skip_what_needs_missing_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without cifar10-jpeg a default run skips section 1 and section 6's CIFAR part, and runs the rest."""
    from resnet.benchmarks import data_pipeline, end_to_end, gpu, inference, steps

    called: list[str] = []

    def row(section: str):
        def fake(*args, **kwargs) -> list[Row]:
            called.append(section)
            return [Row(section, "fake", 2.0, 1.0, "img/s")]

        return fake

    plans: list[gpu.GpuPlan] = []
    _no_data(monkeypatch, tmp_path)
    monkeypatch.setattr(end_to_end, "run", row("1"))
    monkeypatch.setattr(steps, "training_steps", row("2"))
    monkeypatch.setattr(inference, "run", row("3"))
    monkeypatch.setattr(data_pipeline, "rows", row("4"))
    monkeypatch.setattr(steps, "depth_scaling", row("5"))
    monkeypatch.setattr(gpu, "run", lambda plan: plans.append(plan) or row("6")())
    assert runner.run(_args("--quick", "--threads", "1", "--data-dir", str(tmp_path))) == 0
    out = capsys.readouterr().out
    assert called == ["2", "3", "4", "5", "6"]
    assert "[1] skipped: cifar10-jpeg not found" in out
    assert len(plans) == 1 and plans[0].cifar is False and plans[0].throughput
    assert "2.00x" in out  # the table of ratios, last


@pytest.mark.slow
def test_the_installed_command_measures_a_section(tmp_path: Path) -> None:
    """The console script, from outside the repository: section 5 (cost against depth) runs and prints its table."""
    resnet = Path(sys.executable).with_name("resnet")
    if not resnet.is_file():
        pytest.skip("no `resnet` console script beside this Python (pip install -e .)")
    done = subprocess.run(
        [str(resnet), "benchmark", "--only", "5", "--quick", "--threads", "1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("resnet benchmark --quick at ")
    assert any(line.startswith("CPU: ") for line in lines) and any(line.startswith("torch ") for line in lines)
    table = lines[lines.index(next(line for line in lines if line.startswith("section"))) :]
    assert [line.split("  ")[0] for line in table[2:]] == ["5 depth"] * 4  # resnet20, 56, 110; resnet1202 memory
    assert "img/s x depth = 1.00 of resnet20's" in done.stdout


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "benchmarks").glob("*.py")))
def test_every_checkout_script_imports_what_it_needs(script: str) -> None:
    """The repository-only scripts import the installed runner's pieces; --help runs each one's imports."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--help"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage:")


@pytest.mark.slow
def test_the_checkout_script_is_the_same_runner() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "  6. GPU" in done.stdout and "--gpu-compile-modes" in done.stdout
