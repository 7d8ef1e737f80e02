from __future__ import annotations

import json

import pytest

from resnet.cli import main


def test_models_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--family", "imagenet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "family", "block", "depth", "shortcut", "params", "MACs", "input"]
    row = next(line.split() for line in lines if line.startswith("resnet50 "))
    assert row[1:] == ["imagenet", "bottleneck", "50", "B", "25.56M", "4.09G", "3x224x224"]


@pytest.mark.slow
def test_models_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--family", "cifar", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {r["name"] for r in rows} >= {"resnet20", "plain1202"}
    assert next(r for r in rows if r["name"] == "resnet20")["params"] == 269722
