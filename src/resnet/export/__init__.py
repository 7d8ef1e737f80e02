"""Exporting a trained network: ONNX and TorchScript (each verified against PyTorch), safetensors weights with a
JSON sidecar, and a plain state dict in torchvision's layout."""

from __future__ import annotations

from typing import TYPE_CHECKING

from resnet.lazy import lazy_package

# What `resnet export` offers, declared once: its --help is built from them without loading torch.
FORMATS = ("onnx", "torchscript", "safetensors", "torchvision")
EXPORTERS = ("legacy", "dynamo")

if TYPE_CHECKING:  # the names, for type checkers; at run time each loads on first use
    from resnet.export.formats import (
        export_checkpoint,
        export_model,
        export_torchscript,
        save_safetensors,
        torchvision_state_dict,
        verify_torchscript,
    )
    from resnet.export.onnx import export_onnx, verify_onnx

__getattr__, __all__ = lazy_package(__name__, __file__, also=("EXPORTERS", "FORMATS"))
