"""The analyses end to end: checkpoints or model names in, a figure and a JSON file of the numbers out."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

from resnet.analysis.gradients import GradientNorms, gradient_norms, plot_gradients
from resnet.analysis.loading import data_for, load_trained
from resnet.analysis.responses import Responses, measure_responses, plot_responses
from resnet.data import DataBundle
from resnet.errors import ConfigError
from resnet.files import output_folder, write_output


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
        model, config = load_trained(checkpoint)
        outputs = getattr(model, "num_classes", None)
        data = data_for(config, dataset=dataset, data_dir=data_dir, batch_size=batch_size, outputs=outputs)
        stream = data.test if split == "test" else data.val
        if stream is None:
            raise ConfigError(f"the run of '{checkpoint}' has no validation split; use --split test")
        results.append(measure_responses(model, stream, label=_label(checkpoint), max_images=max_images))
    write_output(numbers, json.dumps([r.to_dict() for r in results], indent=1) + "\n")  # the numbers first
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
    from resnet.data import DataConfig, build_data
    from resnet.models import create_model

    if not models and not checkpoints:
        raise ConfigError("give at least one --model NAME or --checkpoint PATH")
    numbers, figure = output_folder(out, ["gradients.json", "gradients.png"], inputs=checkpoints, force=force)
    results = []
    own = None  # the first trained net's dataset: new nets beside it are compared on the same images
    for checkpoint in map(Path, checkpoints):
        model, config = load_trained(checkpoint)
        outputs = getattr(model, "num_classes", None)
        bundle = data_for(config, dataset=dataset, data_dir=data_dir, batch_size=batch_size, outputs=outputs)
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
    write_output(numbers, json.dumps([r.to_dict() for r in results], indent=1) + "\n")
    plot_gradients(results, figure)
    return results


def _first_batch(data: DataBundle) -> tuple[torch.Tensor, torch.Tensor]:
    """The first batch of the first epoch: fixed by the data seed, the same for every net compared."""
    images, labels = next(iter(data.train.epoch(0, 0)))
    return images.float(), labels
