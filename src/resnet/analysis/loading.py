"""Networks and data for the analyses: a trained net from its checkpoint, its evaluation data, a training batch.

The analyses only read: they never train and never change a run directory.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from torch import nn

from resnet.config import Config
from resnet.data import DataBundle, build_data
from resnet.errors import CheckpointError, ConfigError
from resnet.inference import load_model


def load_trained(path: str | Path) -> tuple[nn.Module, Config]:
    """The network a training checkpoint holds (eval mode, on the CPU) and the configuration it was trained with,
    read as every reader does (:func:`resnet.inference.load_model`)."""
    loaded = load_model(path)
    if loaded.config is None:
        raise CheckpointError(f"'{path}' is not a training checkpoint of this package (no configuration)")
    return loaded.model, loaded.config


def data_for(
    config: Config,
    *,
    dataset: str | None = None,
    data_dir: str | None = None,
    batch_size: int = 256,
    outputs: int | None = None,
) -> DataBundle:
    """The data bundle a run trained on (same split, subset and normalisation), or another dataset named; with
    more classes than the model's ``outputs`` it is refused (their labels would index past the outputs)."""
    data = dataclasses.replace(
        config.data,
        dataset=dataset or config.data.dataset,
        data_dir=data_dir or config.data.data_dir,
        eval_batch_size=batch_size,
        augment="none",
        download=False,
    )
    bundle = build_data(data, seed=config.seed, in_chans=config.model.options.get("in_chans"))
    if outputs is not None and bundle.num_classes > outputs:
        raise ConfigError(
            f"{data.dataset} has {bundle.num_classes} classes, the checkpoint's model has {outputs} outputs; leave "
            "out --dataset to use the run's own data, or give data with the classes the model was trained on"
        )
    return bundle
