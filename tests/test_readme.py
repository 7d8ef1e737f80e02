"""README's Quick start as a newcomer follows it: after the line that activates the environment, `resnet` is on
PATH in a clean shell and the first commands answer."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ACTIVATE = "source .venv/bin/activate"


def test_quick_start_says_how_to_put_resnet_on_path() -> None:
    quick_start = (ROOT / "README.md").read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert ACTIVATE in quick_start


@pytest.mark.slow
@pytest.mark.skipif(not (ROOT / ".venv" / "bin" / "activate").is_file(), reason="no .venv (run `make setup`)")
def test_readme_commands_run_in_a_clean_shell() -> None:
    script = f"{ACTIVATE} && resnet --version && resnet --help && resnet train --help && resnet data list"
    clean = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home())}  # a new shell: nothing of this one's environment
    done = subprocess.run(["bash", "-c", script], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("resnet ") and "cifar10-jpeg" in done.stdout and "--recipe" in done.stdout
