"""Equivalence with torchvision: same parameter counts, strict state-dict loading both ways, equal outputs."""

from __future__ import annotations

import pytest
import torch
import torchvision

import resnet

TORCHVISION_NAMES = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "vgg19"]


@pytest.mark.parametrize("name", TORCHVISION_NAMES)
def test_matches_torchvision(name: str) -> None:
    torch.manual_seed(0)
    ours = resnet.create_model(name).eval()
    theirs = getattr(torchvision.models, name)().eval()
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())

    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=1e-5)

    # And the reverse: our (differently initialised) weights drive torchvision's module.
    fresh = resnet.create_model(name).eval()
    theirs.load_state_dict(fresh.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), theirs(x), rtol=0, atol=1e-5)


def test_matches_torchvision_at_224() -> None:
    ours = resnet.create_model("resnet50").eval()
    theirs = torchvision.models.resnet50().eval()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=1e-5)


def test_state_dict_keys_are_torchvisions() -> None:
    assert list(resnet.create_model("resnet50").state_dict()) == list(torchvision.models.resnet50().state_dict())
