"""What a model's name says about it, for reports and recipes that treat nets by depth."""

from __future__ import annotations

import re


def model_depth(name: str) -> int:
    """Depth from a model name (resnet110 -> 110, plain20 -> 20); 0 when the name carries none."""
    match = re.search(r"(\d+)$", name) or re.search(r"(\d+)", name)
    return int(match.group(1)) if match else 0
