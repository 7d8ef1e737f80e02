"""The progress bar on a real pseudo-terminal, as `script` or an ssh session gives one (size 0x0 included)."""

from __future__ import annotations

import os
import select
import subprocess
import sys
from pathlib import Path

import pytest

from synthetic import write_image_folder

pty = pytest.importorskip("pty")
SRC = Path(__file__).resolve().parents[1] / "src"


def _run_on_a_pty(argv: list[str]) -> tuple[int, str]:
    master, slave = pty.openpty()  # a fresh pty reports 0 columns and 0 rows
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    process = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, close_fds=True, env=env)
    os.close(slave)
    output = b""
    while select.select([master], [], [], 120)[0]:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.close(master)
    return process.wait(), output.decode(errors="replace")


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a Linux pseudo-terminal")
def test_train_shows_a_bar_on_a_terminal(tmp_path: Path) -> None:
    folder = write_image_folder(tmp_path / "d", ("a", "b"), splits={"train": 16, "test": 4}, size=(8, 8))
    code, text = _run_on_a_pty([
        sys.executable, "-m", "resnet", "train", "--model", "resnet8", "--dataset", str(folder), "--iterations", "6",
        "--batch-size", "4", "--set", "data.pipeline=tensor", "--set", "log.tensorboard=false",
        "--set", "system.threads=1", "--run-dir", str(tmp_path / "run"),
    ])  # fmt: skip
    assert code == 0, text
    assert "train:" in text and "%|" in text and "6/6" in text  # tqdm's bar, to the end
