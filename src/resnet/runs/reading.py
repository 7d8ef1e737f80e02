"""Reading what a run left behind, the one way every reader does it: verified checkpoint, its meta, its config.

Policy for checkpoints written before ``meta`` existed (one policy for every reader): the model is rebuilt from
the saved configuration, with ``in_chans`` and ``num_classes`` read from the weights' shapes and the classes named
by their index; their preprocessing is unknown, so commands that need it say so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resnet.config import Config, config_from_dict, tomllib
from resnet.errors import CheckpointError, RunDirError
from resnet.runs.checkpoint import load_checkpoint
from resnet.runs.meta import META_VERSION, read_meta
from resnet.runs.run_dir import CONFIG_FILE, SUMMARY_FILE


@dataclass
class SavedRun:
    """A checkpoint as its readers use it: the verified payload, its ``meta`` and the configuration it trained."""

    path: Path
    payload: dict[str, Any]
    meta: dict[str, Any]
    config: Config | None

    @property
    def state(self) -> dict[str, Any]:
        return self.payload["model"]


def read_checkpoint(path: str | Path) -> SavedRun:
    """A training checkpoint (``last.pt``, ``best.pt``...), verified, with its ``meta`` (rebuilt for old ones)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at '{path}'; give the last.pt or best.pt of a run directory")
    payload = load_checkpoint(path)  # format and content checksum verified: a flipped bit is an error
    config = None
    if isinstance(payload.get("config"), dict):
        config = config_from_dict(payload["config"], f"the configuration saved in '{path}'")
    if isinstance(payload.get("meta"), dict):
        return SavedRun(path, payload, read_meta(payload, path), config)
    if config is None:
        raise CheckpointError(f"'{path}' is not a training checkpoint of this package (no model or configuration)")
    return SavedRun(path, payload, meta_from_weights(config, payload["model"], path), config)


def meta_from_weights(config: Config, state: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """The ``meta`` of a checkpoint older than ``meta``: options from the config, shapes from the weights."""
    first_conv = next((v for k, v in state.items() if k.endswith("weight") and v.dim() == 4), None)
    classifier = state.get("fc.weight")
    if first_conv is None or classifier is None:
        raise CheckpointError(f"'{path}' holds no ResNet weights (no convolution or no fc layer)")
    num_classes = int(classifier.shape[0])
    options = {**config.model.options, "in_chans": int(first_conv.shape[1]), "num_classes": num_classes}
    return {
        "version": META_VERSION,
        "model": {"name": config.model.name, "options": options},
        "class_names": [str(i) for i in range(num_classes)],
        "input_size": None,
        "preprocessing": {},
        "dataset": {"name": config.data.dataset, "location": "", "pipeline": ""},
        "rebuilt": True,  # see the module doc: require_preprocessing names the cause
    }


def read_config_file(run_dir: str | Path) -> dict[str, Any]:
    """A run directory's resolved ``config.toml`` as a table ({} when there is none)."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise RunDirError(f"{path} cannot be read ({error}); repair it or remove the run directory") from error


def read_summary(run_dir: str | Path) -> dict[str, Any] | None:
    """A run's ``summary.json``, or None when the run has not finished (no file, or a damaged one)."""
    path = Path(run_dir) / SUMMARY_FILE
    try:
        summary = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None
