"""torch.hub entry points from the repository root."""

from __future__ import annotations

from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def test_torch_hub_load_local() -> None:
    model = torch.hub.load(str(REPO), "resnet20", source="local", num_classes=5)
    assert model.fc.out_features == 5
    plain = torch.hub.load(str(REPO), "plain20", source="local")
    assert plain.fc.out_features == 10 and plain.layer1[0].downsample is None
