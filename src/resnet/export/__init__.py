"""Exporting a trained network: ONNX and TorchScript (each verified against PyTorch), safetensors weights with a
JSON sidecar, and a plain state dict in torchvision's layout."""

from resnet.export.formats import FORMATS, export_checkpoint, export_model
from resnet.export.onnx import export_onnx, verify_onnx
from resnet.export.safetensors_io import save_safetensors
from resnet.export.torchscript import export_torchscript, verify_torchscript
from resnet.export.torchvision_layout import torchvision_state_dict
