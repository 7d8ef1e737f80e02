"""Weights as safetensors (no pickle: safe to load from untrusted sources) with a JSON sidecar that names the
model, its options, classes and preprocessing, so ``resnet.load_model`` and ``resnet predict`` can use them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import Tensor, nn


def json_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """``meta`` with tensors (the mean image) as nested lists."""

    def convert(value: Any) -> Any:
        if isinstance(value, Tensor):
            return value.tolist()
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [convert(v) for v in value]
        return value

    return convert(meta)


SERVED_KEYS = ("model", "class_names", "input_size", "preprocessing")


def served_metadata(meta: dict[str, Any]) -> dict[str, str]:
    """What a server needs beside the graph, as JSON strings: the ONNX ``metadata_props`` and the TorchScript
    extra files of an export, so that the file alone says its classes, input size and preprocessing."""
    plain = json_meta(meta)
    return {key: json.dumps(plain[key]) for key in SERVED_KEYS if key in plain}


def save_safetensors(model: nn.Module, meta: dict[str, Any], path: str | Path) -> tuple[Path, Path]:
    """Write ``path`` (weights) and ``path`` with ``.json`` (metadata); returns both paths."""
    from safetensors.torch import save

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state: dict[str, Tensor] = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    # safetensors' save_file creates its file with mode 0600; bytes written here get the user's umask.
    path.write_bytes(save(state, metadata={"format": "pt", "model": meta["model"]["name"]}))
    sidecar = path.with_suffix(".json")
    sidecar.write_text(json.dumps(json_meta(meta), indent=1) + "\n")
    return path, sidecar
