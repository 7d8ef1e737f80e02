"""What a checkpoint needs to be used on its own: the model, its classes and the exact preprocessing.

Training writes ``build_meta(config, data)`` under the checkpoint's ``meta`` key; evaluation, prediction and
export read it back with ``read_meta`` so the user never repeats the model name, its options, the class names
or the normalisation statistics (which depend on ``--subset`` and, for ``cifar-paper``, are a mean image).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from resnet.config import Config
from resnet.errors import CheckpointError

META_VERSION = 1


def build_meta(config: Config, data: Any) -> dict[str, Any]:
    """The ``meta`` entry of a checkpoint written while training ``config`` on ``data``."""
    from resnet.models import resolve_options

    given = {"in_chans": data.in_chans, **config.model.options}
    given.pop("num_classes", None)  # always the data's (the trainer refuses any other)
    options = resolve_options(config.model.name, data.num_classes, **given)
    return {
        "version": META_VERSION,
        "model": {"name": config.model.name, "options": options},
        "class_names": list(data.class_names),
        "input_size": [int(data.in_chans), *(int(v) for v in data.image_size)],
        "preprocessing": dict(getattr(data, "preprocessing", None) or {}),
        "dataset": {
            "name": data.name,
            "location": str(getattr(data, "location", "")),
            "pipeline": getattr(data, "pipeline", ""),
        },
    }


def read_meta(payload: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """The ``meta`` entry of a loaded checkpoint, or a clear error for checkpoints written before it existed."""
    meta = payload.get("meta")
    if not isinstance(meta, dict) or "model" not in meta:
        raise CheckpointError(
            f"checkpoint '{path}' was written by an older version of resnet and does not record its model, classes "
            "and preprocessing; retrain it with this version, or rebuild the model with "
            "resnet.create_model(NAME, num_classes=..., in_chans=...) and load payload['model'] into it"
        )
    version = meta.get("version")
    if not isinstance(version, int) or version > META_VERSION:
        raise CheckpointError(
            f"checkpoint '{path}' has model metadata version {version!r}; this version of resnet reads up to "
            f"{META_VERSION}: upgrade resnet"
        )
    return meta


def require_preprocessing(meta: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """The saved preprocessing, or an error when the run's data did not record it (e.g. a custom data bundle)."""
    pre = meta.get("preprocessing") or {}
    if meta.get("rebuilt"):
        raise CheckpointError(
            f"checkpoint '{path}' was written by an older version of resnet and does not record its classes and "
            "preprocessing; retrain it with this version (its model still loads: resnet analyze, "
            "resnet.runs.read_checkpoint)"
        )
    if not {"mean", "std", "crop", "resize"} <= pre.keys():
        raise CheckpointError(
            f"checkpoint '{path}' does not record its preprocessing (it was trained on data given in Python, not "
            "built by resnet.data.build_data); images cannot be prepared for it automatically"
        )
    return pre
