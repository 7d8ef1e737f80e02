"""TorchScript export (scripted, so every input size works), verified after ``torch.jit.load``."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import Tensor, nn


def export_torchscript(model: nn.Module, path: str | Path, extra_files: dict[str, str] | None = None) -> Path:
    """Script ``model`` (eval mode) and save it, with ``extra_files`` (name -> text, read back by ``torch.jit.load(
    path, _extra_files={name: ""})``); loadable with ``torch.jit.load`` without this package."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated in favour of torch.export
        scripted = torch.jit.script(model.eval())
        torch.jit.save(scripted, str(path), _extra_files=dict(extra_files or {}))
    return path


def verify_torchscript(path: str | Path, model: nn.Module, inputs: list[Tensor]) -> float:
    """Max absolute difference between the reloaded TorchScript module and ``model`` over ``inputs``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        loaded = torch.jit.load(str(path), map_location="cpu").eval()
    worst = 0.0
    with torch.no_grad():
        for x in inputs:
            worst = max(worst, float((loaded(x) - model.eval()(x)).abs().max()))
    return worst
