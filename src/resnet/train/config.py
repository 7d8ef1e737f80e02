"""Typed training configuration: dataclasses built from recipe dicts and ``key=value`` overrides.

Every field of a run lives here so that the resolved configuration saved with a run reproduces it, and so that
a misspelt key fails loudly (with a suggestion) instead of being silently ignored.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Union

from resnet.errors import ConfigError

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]


@dataclass
class ModelConfig:
    name: str = ""
    options: dict[str, Any] = field(default_factory=dict)  # passed to resnet.create_model(name, **options)
    init: str | None = None  # start from these weights (torchvision .pth, our checkpoint, .safetensors)


@dataclass
class DataConfig:
    dataset: str = ""
    data_dir: str | None = None
    batch_size: int = 128  # per process; the global batch is batch_size * world_size
    eval_batch_size: int | None = None
    val_size: int | None = None  # None: the dataset's default split; 0: no validation set
    subset: int | None = None  # train on a seeded subset of this many images
    augment: str = "default"  # default | rrc | none
    normalize: str = "channel"  # channel | pixel
    eval_view: str = "center"  # center | ten-crop | full
    num_workers: int | None = None
    download: bool = True
    crop_size: int = 224  # training crop of image folders (small datasets keep their image size)
    pipeline: str = "auto"  # auto | tensor (decode a same-size folder once into memory) | loader (DataLoader)
    on_bad_image: str = "error"  # error | skip (counted and reported)
    # FixRes (Touvron et al. 2019): evaluate larger than the training crop; None: crop_size, resize crop*256/224
    eval_crop_size: int | None = None
    eval_resize: int | None = None
    policy: str = "none"  # none | trivialaugment | randaugment | autoaugment (torchvision's, per image)
    randaugment_ops: int = 2
    randaugment_magnitude: int = 9
    random_erasing: float = 0.0  # probability per image (batched on the device, after normalisation)
    repeats: int = 1  # repeated augmentation (Hoffer et al. 2020): each image appears this many times an epoch


@dataclass
class OptimConfig:
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    decay_norm_and_bias: bool = True  # the paper decays every parameter
    label_smoothing: float = 0.0
    reference_batch_size: int | None = None  # linear scaling rule: lr * global_batch / reference_batch_size
    grad_clip_norm: float | None = None
    name: str = "sgd"  # sgd | adamw | lamb | rmsprop (--opt)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # adamw, lamb
    eps: float = 1e-8  # adamw, lamb, rmsprop
    alpha: float = 0.9  # rmsprop's smoothing constant (TF-style, as torchvision's and timm's recipes)
    accum_steps: int = 1  # gradient accumulation: one update per this many batches (--accum-steps)
    loss: str = "ce"  # ce (cross-entropy) | bce (binary cross-entropy on the soft targets, ResNet strikes back)
    bce_target_threshold: float | None = None  # bce: targets above this become 1 (timm's bce_target_thresh)
    backbone_lr_factor: float = 1.0  # fine-tuning: every layer but the classifier at lr * this factor


@dataclass
class MixConfig:
    """Mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019) of a batch with itself reversed, on the device."""

    mixup_alpha: float = 0.0  # Beta(alpha, alpha) mixing weight; 0 disables
    cutmix_alpha: float = 0.0
    prob: float = 1.0  # probability that a batch is mixed at all
    switch_prob: float = 0.5  # with both on: probability of CutMix instead of Mixup


@dataclass
class EmaConfig:
    """An exponential moving average of the weights and buffers, evaluated and checkpointed beside the model."""

    enabled: bool = False
    decay: float = 0.9998  # per update
    warmup: bool = True  # decay min(decay, (1 + n) / (10 + n)) after n updates, so early averages forget fast
    every_iterations: int = 1  # update period (torchvision's recipe: 32, with the decay adjusted)


@dataclass
class WarmupConfig:
    kind: str = "none"  # none | linear | error-threshold
    # linear (Goyal et al.): ramp from start_factor * lr to lr over `epochs` (or `iterations`)
    epochs: float = 0.0
    iterations: int = 0
    start_factor: float = 0.1
    only_when_scaled: bool = False  # only when the linear scaling rule changed the lr; then start unscaled
    # error-threshold (He et al. for ResNet-110): `lr` until the training error drops below the threshold
    lr: float = 0.01
    error_threshold: float = 80.0  # percent
    window: int = 50  # iterations averaged when comparing with the threshold
    max_iterations: int | None = None  # give up warming up after this many iterations
    min_depth: int = 0  # apply only to models at least this deep (110 in the CIFAR recipe)


@dataclass
class ScheduleConfig:
    kind: str = "multistep"  # multistep | plateau | onecycle | cosine | constant
    # multistep: milestones in the unit of `train` (iterations or epochs) of the recipe that set them; they are
    # rescaled when --epochs/--iterations changes the run length (so shortened runs keep the shape)
    milestones: list[float] = field(default_factory=list)
    gamma: float = 0.1
    rescale_milestones: bool = True
    reference_iterations: int | None = None  # run length the milestones were written for (set by the recipe)
    reference_epochs: float | None = None
    # plateau: divide by 1/gamma when validation error has not improved by `threshold` points for `patience` evals
    patience: int = 5
    threshold: float = 0.1
    min_lr: float = 0.0
    # onecycle: warm up over pct_start of the run from lr/div_factor, then anneal to lr/final_div_factor
    pct_start: float = 0.25
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    warmup: WarmupConfig = field(default_factory=WarmupConfig)


@dataclass
class LengthConfig:
    epochs: float | None = None
    iterations: int | None = None
    freeze: list[str] = field(default_factory=list)  # stages without updates: stem, layer1, ... layer4


@dataclass
class EvalConfig:
    every_epochs: int = 1
    every_iterations: int | None = None  # overrides every_epochs when set
    test: str = "every"  # every: test error at each evaluation (paper curves) | end: only after training


@dataclass
class CheckpointConfig:
    every_minutes: float = 10.0  # 0 disables the time-based checkpoint
    every_iterations: int | None = None  # deterministic mid-epoch checkpoints (tests, preemptible machines)
    keep_best: int = 0  # keep the k checkpoints of lowest validation error (best-<iteration>.pt)
    average_last: int = 0  # average the weights of the last k evaluations' models into averaged.pt at the end


@dataclass
class SystemConfig:
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    amp: str = "auto"  # auto (bf16 on GPUs and CPUs with native bf16) | off | bf16 | fp16
    channels_last: str = "auto"  # auto (on CUDA and CPU) | on | off
    compile: str = "off"  # auto (on GPU) | on | off
    threads: int | None = None  # torch intra-op threads on CPU
    sync_every: int = 0  # GPU host syncs (NaN check, progress); 0: every iteration on CPU, 50 on GPU
    optimizer_impl: str = "auto"  # auto (fused where torch has it) | fused | foreach | for-loop


@dataclass
class DistributedConfig:
    """Used only when started by torchrun with more than one process (see docs/training.md)."""

    backend: str = "auto"  # auto (nccl on GPUs, gloo on the CPU) | nccl | gloo
    sync_bn: bool = False  # batch-norm statistics over the global batch instead of each rank's share
    timeout: float = 60.0  # seconds a rank waits for a dead or hung peer before the run stops with an error
    setup_timeout: float = 1800.0  # the same during start-up (rank 0 downloading/decoding data, first step)


@dataclass
class LogConfig:
    progress: str = "auto"  # auto (bar on a terminal) | bar | plain | none
    every_iterations: int = 100  # plain log line interval
    tensorboard: bool = True


@dataclass
class Config:
    recipe: str = ""
    seed: int = 0
    run_dir: str | None = None
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    mix: MixConfig = field(default_factory=MixConfig)
    ema: EmaConfig = field(default_factory=EmaConfig)
    train: LengthConfig = field(default_factory=LengthConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    system: SystemConfig = field(default_factory=SystemConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


CHOICES: dict[str, tuple[str, ...]] = {
    "data.augment": ("default", "rrc", "none"),
    "data.pipeline": ("auto", "tensor", "loader"),
    "data.on_bad_image": ("error", "skip"),
    "data.normalize": ("channel", "pixel"),
    "data.policy": ("none", "trivialaugment", "randaugment", "autoaugment"),
    "optim.name": ("sgd", "adamw", "lamb", "rmsprop"),
    "optim.loss": ("ce", "bce"),
    "data.eval_view": ("center", "ten-crop", "full"),
    "schedule.kind": ("multistep", "plateau", "onecycle", "cosine", "constant"),
    "schedule.warmup.kind": ("none", "linear", "error-threshold"),
    "eval.test": ("every", "end"),
    "system.amp": ("auto", "off", "bf16", "fp16"),
    "system.channels_last": ("auto", "on", "off"),
    "system.compile": ("auto", "on", "off"),
    "system.optimizer_impl": ("auto", "fused", "foreach", "for-loop"),
    "log.progress": ("auto", "bar", "plain", "none"),
    "distributed.backend": ("auto", "nccl", "gloo"),
}


def all_keys(cls: type = Config, prefix: str = "") -> list[str]:
    """Every settable dotted key, for suggestions and documentation."""
    keys: list[str] = []
    hints = typing.get_type_hints(cls)
    for item in dataclasses.fields(cls):
        hint = hints[item.name]
        if dataclasses.is_dataclass(hint):
            keys.extend(all_keys(hint, f"{prefix}{item.name}."))
        else:
            keys.append(f"{prefix}{item.name}")
    return keys


def _unknown_key(key: str, where: str) -> ConfigError:
    suggestions = difflib.get_close_matches(key, all_keys(), n=1, cutoff=0.6)
    if not suggestions:  # a right leaf in the wrong section: match the last component only
        leaf = key.rsplit(".", 1)[-1]
        suggestions = [k for k in all_keys() if k.rsplit(".", 1)[-1] == leaf][:1]
    hint = f"; did you mean '{suggestions[0]}'?" if suggestions else "; see docs/training.md for the keys"
    return ConfigError(f"unknown configuration key '{key}' in {where}{hint}")


def _coerce(value: Any, hint: Any, key: str, where: str) -> Any:
    """Check (and gently convert) a value against a field's type."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key, where)
            except ConfigError as error:
                errors.append(error)
        raise errors[0]
    if origin is list:
        if isinstance(value, str):  # --set train.freeze=stem,layer1
            value = [item.strip() for item in value.split(",") if item.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"'{key}' in {where} must be a list, got {value!r}")
        (item_hint,) = typing.get_args(hint)
        return [_coerce(item, item_hint, key, where) for item in value]
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"'{key}' in {where} must be a table, got {value!r}")
        return dict(value)
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "on", "off", "yes", "no", "1", "0"):
            return value.lower() in ("true", "on", "yes", "1")
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            if key in CHOICES and value not in CHOICES[key]:
                close = difflib.get_close_matches(value, CHOICES[key], n=1)
                hint_text = f"; did you mean '{close[0]}'?" if close else ""
                raise ConfigError(
                    f"'{key}' in {where} must be one of {', '.join(CHOICES[key])}, got '{value}'{hint_text}"
                )
            return value
        if isinstance(value, bool) and key in CHOICES and "on" in CHOICES[key]:
            return "on" if value else "off"
    name = getattr(hint, "__name__", str(hint))
    raise ConfigError(f"'{key}' in {where} must be {name}, got {value!r}")


def _apply(target: Any, data: dict[str, Any], where: str, prefix: str = "") -> None:
    hints = typing.get_type_hints(type(target))
    names = {item.name for item in dataclasses.fields(target)}
    for name, value in data.items():
        key = f"{prefix}{name}"
        if name not in names:
            raise _unknown_key(key, where)
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ConfigError(f"'{key}' in {where} must be a table of settings, got {value!r}")
            _apply(getattr(target, name), value, where, f"{key}.")
        else:
            setattr(target, name, _coerce(value, hint, key, where))


def merge_dicts(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursive merge, ``update`` winning; tables merge, everything else is replaced."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_dicts(merged[key], value)
        else:
            merged[key] = value
    return merged


def config_from_dict(data: dict[str, Any], where: str = "the configuration") -> Config:
    config = Config()
    _apply(config, data, where)
    return config


def parse_value(text: str) -> Any:
    """A command-line value as TOML (numbers, booleans, lists, quoted strings), else the bare string."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


_ASSIGNMENT = re.compile(r"^\s*([A-Za-z_][\w.\-]*)\s*=(.*)$")


def parse_assignment(text: str) -> tuple[str, Any]:
    match = _ASSIGNMENT.match(text)
    if not match:
        raise ConfigError(f"--set expects key=value (e.g. optim.lr=0.05), got '{text}'")
    return match.group(1), parse_value(match.group(2).strip())


def nest(key: str, value: Any) -> dict[str, Any]:
    """``"a.b.c", 1`` -> ``{"a": {"b": {"c": 1}}}``; keys under ``model.options`` stay free-form."""
    parts = key.split(".")
    nested: dict[str, Any] = {parts[-1]: value}
    for part in reversed(parts[:-1]):
        nested = {part: nested}
    return nested


def apply_overrides(config: Config, overrides: dict[str, Any], where: str = "the command line") -> Config:
    """Set dotted keys on a copy of ``config``, validating each against the schema."""
    data = config.to_dict()
    overrides = dict(overrides)
    # One run length wins: setting epochs clears iterations and vice versa.
    if "train.epochs" in overrides and "train.iterations" not in overrides:
        overrides["train.iterations"] = None
    if "train.iterations" in overrides and "train.epochs" not in overrides:
        overrides["train.epochs"] = None
    for key, value in overrides.items():
        if not key.startswith("model.options."):
            _check_key(key, where)
        data = merge_dicts(data, nest(key, value))
    return config_from_dict(data, where)


def _check_key(key: str, where: str) -> None:
    if key not in all_keys():
        if any(k.startswith(f"{key}.") for k in all_keys()):
            raise ConfigError(f"'{key}' in {where} is a section; set one of its keys, e.g. '{key}.…'")
        raise _unknown_key(key, where)


def validate(config: Config) -> None:
    """Cross-field checks that the types alone cannot express."""
    if not config.model.name:
        raise ConfigError("no model given: pass --model NAME (see `resnet models`)")
    if not config.data.dataset:
        raise ConfigError("no dataset given: pass --dataset NAME or PATH")
    if config.train.epochs is None and config.train.iterations is None:
        raise ConfigError("the run has no length: set train.epochs or train.iterations (--epochs/--iterations)")
    if config.train.epochs is not None and config.train.iterations is not None:
        raise ConfigError("both train.epochs and train.iterations are set: keep one")
    for key, value in (
        ("data.batch_size", config.data.batch_size),
        ("optim.lr", config.optim.lr),
        ("train.epochs", config.train.epochs),
        ("train.iterations", config.train.iterations),
    ):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ConfigError(f"'{key}' must be a positive number, got {value}")
    for key, value in (("optim.momentum", config.optim.momentum), ("optim.weight_decay", config.optim.weight_decay)):
        if not (math.isfinite(value) and value >= 0):
            raise ConfigError(f"'{key}' must be a finite number >= 0, got {value}")
    for key, value in (("timeout", config.distributed.timeout), ("setup_timeout", config.distributed.setup_timeout)):
        if value <= 0:
            raise ConfigError(f"'distributed.{key}' must be a positive number of seconds, got {value}")
    if not 0 < config.optim.backbone_lr_factor <= 1:
        raise ConfigError(f"'optim.backbone_lr_factor' must be in (0, 1], got {config.optim.backbone_lr_factor}")
    if config.data.subset is not None and config.data.subset <= 0:
        raise ConfigError(f"'data.subset' must be a positive number of images, got {config.data.subset}")
    from resnet.train.modern import validate_modern

    validate_modern(config)
