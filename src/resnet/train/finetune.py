"""Fine-tuning: start from other weights (``model.init``), freeze early stages (``train.freeze``), and train the
backbone at a fraction of the classifier's learning rate (``optim.backbone_lr_factor``)."""

from __future__ import annotations

from torch import nn

from resnet.config import Config
from resnet.data import TrainingData
from resnet.errors import ConfigError
from resnet.models.blocks import FrozenBatchNorm2d, freeze_batchnorms

STAGES = ("stem", "layer1", "layer2", "layer3", "layer4")
HEAD_PREFIXES = ("fc.", "classifier.")


def _stage_modules(model: nn.Module, stage: str) -> list[tuple[nn.Module, str]]:
    """(parent, attribute) pairs making up ``stage``."""
    if stage == "stem":
        return [(model, name) for name in ("conv1", "bn1") if hasattr(model, name)]
    return [(model, stage)] if isinstance(getattr(model, stage, None), nn.Sequential) else []


def freeze_stages(model: nn.Module, stages: list[str]) -> list[str]:
    """No gradients, and BN on running statistics, in ``stages`` (e.g. ["stem", "layer1"]); returns them."""
    frozen = []
    for stage in stages:
        if stage not in STAGES:
            raise ConfigError(f"train.freeze: unknown stage {stage!r}; expected some of {', '.join(STAGES)}")
        parts = _stage_modules(model, stage)
        if not parts:
            raise ConfigError(f"train.freeze: {getattr(model, 'arch', 'this model')} has no stage {stage!r}")
        for parent, name in parts:
            module = getattr(parent, name)
            for parameter in module.parameters():
                parameter.requires_grad_(False)
            if isinstance(module, nn.BatchNorm2d):
                setattr(parent, name, FrozenBatchNorm2d.convert(module))
                continue
            freeze_batchnorms(module)
        frozen.append(stage)
    return frozen


def prepare_finetuning(model: nn.Module, config: Config, resume: bool) -> list[str]:
    """Apply ``model.init`` (unless resuming: the checkpoint has the weights) and ``train.freeze``; returns the
    one-line notes to show the user."""
    from resnet.models.weights import load_weights

    notes: list[str] = []
    init = config.model.init
    if init and not resume:
        report = load_weights(model, init)
        notes.append(f"initialised from {init} ({report.loaded} tensors)")
        notes.extend(report.notes)
    if config.train.freeze:
        notes.append(f"frozen: {', '.join(freeze_stages(model, config.train.freeze))}")
    return notes


def is_head(name: str) -> bool:
    """Whether a parameter belongs to the classifier (trained at the full learning rate)."""
    return name.startswith(HEAD_PREFIXES)


def build_network(config: Config, data: TrainingData, *, resume: bool) -> tuple[nn.Module, list[str]]:
    """The network of ``config`` for ``data`` (its classes and channels), with ``model.init`` and ``train.freeze``
    applied; and the one-line notes to show the user."""
    from resnet.models import create_model

    options = {"in_chans": data.in_chans, **config.model.options}
    asked = options.pop("num_classes", data.num_classes)
    if asked != data.num_classes:
        raise ConfigError(
            f"model.options.num_classes = {asked!r}, but {data.name} has {data.num_classes} classes; the classifier "
            "has one output per class of the data: drop model.options.num_classes"
        )
    network = create_model(config.model.name, num_classes=data.num_classes, **options)
    return network, prepare_finetuning(network, config, resume=resume)
