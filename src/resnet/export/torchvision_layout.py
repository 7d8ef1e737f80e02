"""Our weights as a plain state dict that ``torchvision.models.<name>()`` loads strictly.

Our ImageNet networks use torchvision's module names, so the keys match; what must also match is the
computation: torchvision's ResNets are post-activation, projection shortcuts only where shapes change (option B),
stride on the 3x3 convolution (v1.5), RGB input.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from resnet.errors import ConfigError

TORCHVISION_NAMES = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "vgg19")


def torchvision_state_dict(model: nn.Module, meta: dict[str, Any]) -> dict[str, Tensor]:
    """The state dict, after checking that torchvision's module of the same name computes the same function."""
    name, options = meta["model"]["name"], meta["model"]["options"]
    if name not in TORCHVISION_NAMES:
        raise ConfigError(
            f"{name} has no torchvision counterpart (torchvision has {', '.join(TORCHVISION_NAMES)}); "
            "use --format safetensors or onnx"
        )
    expected = (
        {"in_chans": 3} if name == "vgg19" else {"in_chans": 3, "shortcut": "B", "stride_on": "3x3", "preact": False}
    )
    different = {k: options.get(k) for k, v in expected.items() if options.get(k) != v}
    if different:
        shown = ", ".join(f"{k}={v!r}" for k, v in different.items())
        raise ConfigError(f"torchvision's {name} cannot represent this model ({shown}); use --format safetensors")
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def load_into_torchvision(state: dict[str, Tensor], name: str, num_classes: int) -> nn.Module:
    """Round trip: build torchvision's model and load ``state`` strictly (raises on any mismatch)."""
    import torchvision

    module = getattr(torchvision.models, name)(weights=None, num_classes=num_classes)
    module.load_state_dict(state, strict=True)
    return module.eval()


def max_abs_difference(a: nn.Module, b: nn.Module, x: Tensor) -> float:
    with torch.no_grad():
        return float((a.eval()(x) - b.eval()(x)).abs().max())
