"""The analyses end to end: checkpoints or model names in, a figure and a JSON file of the numbers out.

The analyses only read: they never train and never change a run directory.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from resnet.analysis.gradients import GradientNorms, gradient_norms, plot_gradients
from resnet.analysis.responses import Responses, measure_responses, plot_responses
from resnet.config import Config
from resnet.data import DataBundle, DataConfig, build_data
from resnet.errors import CheckpointError, ConfigError
from resnet.files import output_folder, write_output
from resnet.inference import load_model


def load_trained(path: str | Path) -> tuple[nn.Module, Config]:
    """The network a training checkpoint holds (eval mode, on the CPU) and the configuration it was trained with,
    read as every reader does (:func:`resnet.inference.load_model`)."""
    loaded = load_model(path)
    if loaded.config is None:
        raise CheckpointError(f"'{path}' is not a training checkpoint of this package (no configuration)")
    return loaded.model, loaded.config


def trained_with_data(
    checkpoint: Path, dataset: str | None, data_dir: str | None, batch_size: int
) -> tuple[nn.Module, Config, DataBundle]:
    """A trained net, its configuration and the data bundle its run trained on (same split, subset and
    normalisation), or another dataset named; with more classes than the model's outputs it is refused (their
    labels would index past the outputs)."""
    model, config = load_trained(checkpoint)
    data = dataclasses.replace(
        config.data,
        dataset=dataset or config.data.dataset,
        data_dir=data_dir or config.data.data_dir,
        eval_batch_size=batch_size,
        augment="none",
        download=False,
    )
    bundle = build_data(data, seed=config.seed, in_chans=config.model.options.get("in_chans"))
    outputs = getattr(model, "num_classes", None)
    if outputs is not None and bundle.num_classes > outputs:
        raise ConfigError(
            f"{data.dataset} has {bundle.num_classes} classes, the checkpoint's model has {outputs} outputs; leave "
            "out --dataset to use the run's own data, or give data with the classes the model was trained on"
        )
    return model, config, bundle


def _label(path: Path) -> str:
    """``runs/plain56-seed0/last.pt`` -> ``plain56-seed0`` (the run directory names the net)."""
    return path.parent.name or path.stem


def analyze_responses(
    checkpoints: Sequence[str | Path],
    out: str | Path,
    *,
    dataset: str | None = None,
    data_dir: str | None = None,
    split: str = "test",
    max_images: int | None = None,
    batch_size: int = 256,
    force: bool = False,
) -> list[Responses]:
    """Fig. 7 for trained nets: ``responses.png`` and ``responses.json`` in ``out`` (``force``: even over a
    checkpoint or a run's file, see :func:`resnet.files.check_output`)."""
    if split not in ("test", "val"):
        raise ConfigError(f"--split must be test or val, got '{split}'")
    numbers, figure = output_folder(out, ["responses.json", "responses.png"], inputs=checkpoints, force=force)
    results = []
    for checkpoint in map(Path, checkpoints):
        model, _, data = trained_with_data(checkpoint, dataset, data_dir, batch_size)
        stream = data.test if split == "test" else data.val
        if stream is None:
            raise ConfigError(f"the run of '{checkpoint}' has no validation split; use --split test")
        results.append(measure_responses(model, stream, label=_label(checkpoint), max_images=max_images))
    write_output(numbers, json.dumps([dataclasses.asdict(r) for r in results], indent=1) + "\n")  # the numbers first
    plot_responses(results, figure)
    return results


def analyze_gradients(
    out: str | Path,
    *,
    models: Sequence[str] = (),
    checkpoints: Sequence[str | Path] = (),
    dataset: str | None = None,
    data_dir: str | None = None,
    batch_size: int = 128,
    seed: int = 0,
    force: bool = False,
) -> list[GradientNorms]:
    """Per-layer gradient norms on one training batch for new nets (``models``, at initialisation) and trained ones
    (``checkpoints``): ``gradients.png`` (log scale) and ``gradients.json`` in ``out``. The batch comes from
    ``dataset``, by default each trained net's own data (as ``resnet eval``), and for new nets the first trained
    net's data, else CIFAR-10."""
    from resnet.models import create_model

    if not models and not checkpoints:
        raise ConfigError("give at least one --model NAME or --checkpoint PATH")
    numbers, figure = output_folder(out, ["gradients.json", "gradients.png"], inputs=checkpoints, force=force)
    results = []
    own = None  # the first trained net's dataset: new nets beside it are compared on the same images
    for checkpoint in map(Path, checkpoints):
        model, config, bundle = trained_with_data(checkpoint, dataset, data_dir, batch_size)
        own = own or config.data.dataset
        images, labels = _first_batch(bundle)
        results.append(gradient_norms(model, images, labels, label=f"{_label(checkpoint)} (trained)"))
    if models:
        chosen = dataset or own or "cifar10-jpeg"
        data = build_data(
            DataConfig(chosen, data_dir=data_dir, batch_size=batch_size, augment="none", download=False), seed=seed
        )
        images, labels = _first_batch(data)
        for name in models:
            torch.manual_seed(seed)
            model = create_model(name, num_classes=data.num_classes, in_chans=data.in_chans)
            results.append(gradient_norms(model, images, labels, label=f"{name} (initialisation)"))
    write_output(numbers, json.dumps([dataclasses.asdict(r) for r in results], indent=1) + "\n")
    plot_gradients(results, figure)
    return results


def _first_batch(data: DataBundle) -> tuple[torch.Tensor, torch.Tensor]:
    """The first batch of the first epoch: fixed by the data seed, the same for every net compared."""
    images, labels = next(iter(data.train.epoch(0, 0)))
    return images.float(), labels
