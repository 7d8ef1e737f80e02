"""Networks and data for the analyses: a trained net from its checkpoint, its evaluation data, a training batch.

The analyses only read: they never train and never change a run directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from resnet.errors import CheckpointError
from resnet.train.config import Config, config_from_dict


def load_trained(path: str | Path) -> tuple[nn.Module, Config]:
    """The network a training checkpoint holds (eval mode, on the CPU) and the configuration it was trained with.

    The model is built from the checkpoint's ``meta`` (what ``resnet.load_model`` reads); checkpoints older than
    ``meta`` fall back to the configuration, with ``in_chans``/``num_classes`` read from the weights' shapes.
    """
    from resnet.models import create_model
    from resnet.train.checkpoint import load_checkpoint

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at '{path}'; give the last.pt or best.pt of a run directory")
    payload = load_checkpoint(path)  # format and content checksum verified: a flipped bit is an error
    if "config" not in payload:
        raise CheckpointError(f"'{path}' is not a training checkpoint of this package (no model or configuration)")
    config = config_from_dict(payload["config"], f"the configuration saved in '{path}'")
    if isinstance(payload.get("meta"), dict):  # the model name and every resolved option, as resnet.load_model
        from resnet.inference import model_from_meta
        from resnet.train.meta import read_meta

        return model_from_meta(read_meta(payload, path), payload["model"], path), config
    # Checkpoints written before `meta` existed: in_chans and num_classes from the weights' shapes.
    state = payload["model"]
    first_conv = next((v for k, v in state.items() if k.endswith("weight") and v.dim() == 4), None)
    classifier = state.get("fc.weight")
    if first_conv is None or classifier is None:
        raise CheckpointError(f"'{path}' holds no ResNet weights (no convolution or no fc layer)")
    options = {**config.model.options, "in_chans": int(first_conv.shape[1]), "num_classes": int(classifier.shape[0])}
    model = create_model(config.model.name, **options)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise CheckpointError(f"the weights in '{path}' do not fit {config.model.name}: {error}") from error
    return model.eval(), config


def data_for(
    config: Config, *, dataset: str | None = None, data_dir: str | None = None, batch_size: int = 256
) -> Any:
    """The data bundle a run trained on (same split, subset and normalisation), or another dataset named."""
    from resnet.data import build_data

    data = config.data
    return build_data(
        dataset or data.dataset,
        data_dir=data_dir or data.data_dir,
        batch_size=data.batch_size,
        eval_batch_size=batch_size,
        device="cpu",
        val_size=data.val_size,
        subset=data.subset,
        seed=config.seed,
        augment="none",
        normalize=data.normalize,
        crop_size=data.crop_size,
        pipeline=data.pipeline,
        download=False,
    )
