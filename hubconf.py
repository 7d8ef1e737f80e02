"""torch.hub entry points: ``torch.hub.load("path/to/resnet", "resnet50", source="local")``.

Every network of the paper is an entry point; keyword arguments go to ``resnet.create_model`` (``num_classes``,
``shortcut``, ``in_chans``, ...), and ``weights=PATH`` loads a torchvision ``.pth``, one of our checkpoints or a
safetensors file. No pretrained weights are downloaded.
"""

from __future__ import annotations

import os
import sys
from typing import Any

dependencies = ["torch", "torchvision"]

_SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "src")
if os.path.isdir(_SRC) and _SRC not in sys.path:
    sys.path.insert(0, _SRC)

from resnet.models import create_model, list_models  # noqa: E402


def _entry(name: str):
    def build(pretrained: bool = False, weights: str | None = None, **kwargs: Any):
        if pretrained:
            raise ValueError(f"no pretrained weights are published for {name}; pass weights=PATH to a weights file")
        return create_model(name, weights=weights, **kwargs)

    build.__name__ = name
    build.__doc__ = f"{name} of He et al. (2015); see resnet.create_model for the options."
    return build


for _name in list_models():
    globals()[_name] = _entry(_name)
