"""The typed configuration of a run: one dataclass per section, saved whole with the run so that it repeats.

The data section is :class:`resnet.data.DataConfig` (it belongs to the room that uses it); the others live here.
A misspelt key fails loudly with a suggestion (see :mod:`resnet.config.parse`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from resnet.data.config import DATA_CHOICES, DataConfig


@dataclass
class ModelConfig:
    name: str = ""
    options: dict[str, Any] = field(default_factory=dict)  # passed to resnet.create_model(name, **options)
    init: str | None = None  # start from these weights (torchvision .pth, our checkpoint, .safetensors)


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
    amp: str = "auto"  # auto (the fastest measured here; see resnet.runtime.measured) | off | bf16 | fp16
    channels_last: str = "auto"  # auto (the fastest measured here) | on | off
    retune: bool = False  # measure the automatic precision, layout and compilation again, not the cached decision
    compile: str = "auto"  # auto (GPUs; CPU runs long enough to repay it: measured, with a C++ compiler) | on | off
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
    **DATA_CHOICES,
    "optim.name": ("sgd", "adamw", "lamb", "rmsprop"),
    "optim.loss": ("ce", "bce"),
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


@dataclass(frozen=True)
class Range:
    """The values a numeric key may take; ``what`` names them in the one-line refusal."""

    what: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low itself is excluded
    high_open: bool = False

    def admits(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return self.high is None or (value < self.high or (not self.high_open and value == self.high))


_POSITIVE, _FRACTION = Range("a positive number", 0, low_open=True), Range("a probability in [0, 1]", 0, 1)
MAX_ITERATIONS, MAX_EPOCHS = 10**9, 10**6  # beyond: a typo (`--epochs 1e300`), not a run

# Every numeric key's range, checked once by resnet.config.validate (None is "unset" wherever a key allows it).
RANGES: dict[str, Range] = {
    "seed": Range("an integer in [0, 2**32 - 1] (numpy's seeds)", 0, 2**32 - 1),
    "data.batch_size": Range("a positive number", 0, 2**20, low_open=True),
    "data.num_workers": Range("a number of DataLoader workers in [0, 256]", 0, 256),
    "data.subset": Range("a positive number of images", 0, low_open=True),
    "data.val_size": Range("a number of images >= 0 (0: no validation set)", 0),
    "data.repeats": Range("a number of repeats in [1, 64] (each image appears this often an epoch)", 1, 64),
    "data.randaugment_ops": Range("at least 1", 1, 16),
    "data.randaugment_magnitude": Range("in [0, 30]", 0, 30),
    "data.random_erasing": _FRACTION,
    "data.crop_size": Range("a number of pixels in [1, 4096]", 1, 4096),
    "data.eval_crop_size": Range("a positive number of pixels (at most 4096)", 1, 4096),
    "data.eval_resize": Range("a positive number of pixels (at most 8192)", 1, 8192),
    "optim.lr": _POSITIVE,
    "optim.momentum": Range("a number in [0, 1)", 0, 1, high_open=True),
    "optim.weight_decay": Range("a finite number >= 0", 0),
    "optim.label_smoothing": Range("a probability in [0, 1)", 0, 1, high_open=True),
    "optim.reference_batch_size": Range("a positive number of images", 0, low_open=True),
    "optim.grad_clip_norm": _POSITIVE,
    "optim.eps": _POSITIVE,
    "optim.alpha": Range("a number in [0, 1)", 0, 1, high_open=True),
    "optim.accum_steps": Range("at least 1 (and at most 1024)", 1, 1024),
    "optim.bce_target_threshold": Range("a probability in [0, 1)", 0, 1, high_open=True),
    "optim.backbone_lr_factor": Range("in (0, 1]", 0, 1, low_open=True),
    "mix.mixup_alpha": Range("a number >= 0 (0 disables)", 0),
    "mix.cutmix_alpha": Range("a number >= 0 (0 disables)", 0),
    "mix.prob": _FRACTION,
    "mix.switch_prob": _FRACTION,
    "ema.decay": Range("a probability in [0, 1)", 0, 1, high_open=True),
    "ema.every_iterations": Range("at least 1", 1),
    "schedule.gamma": Range("a factor in (0, 1] (the lr is multiplied by it)", 0, 1, low_open=True),
    "schedule.patience": Range("a number of evaluations >= 0", 0),
    "schedule.threshold": Range("a number of points >= 0", 0),
    "schedule.min_lr": Range("a number >= 0", 0),
    "schedule.pct_start": Range("a fraction of the run in (0, 1)", 0, 1, low_open=True, high_open=True),
    "schedule.div_factor": Range("a factor >= 1", 1),
    "schedule.final_div_factor": Range("a factor >= 1", 1),
    "schedule.warmup.epochs": Range("a number of epochs >= 0", 0),
    "schedule.warmup.iterations": Range("a number of iterations >= 0", 0),
    "schedule.warmup.start_factor": Range("a factor in (0, 1]", 0, 1, low_open=True),
    "schedule.warmup.lr": _POSITIVE,
    "schedule.warmup.error_threshold": Range("a percentage in (0, 100]", 0, 100, low_open=True),
    "schedule.warmup.window": Range("at least 1", 1),
    "schedule.warmup.max_iterations": Range("a number of iterations >= 1", 1),
    "train.epochs": Range(f"a positive number (at most {MAX_EPOCHS:,})", 0, MAX_EPOCHS, low_open=True),
    "train.iterations": Range(f"a positive number (at most {MAX_ITERATIONS:,})", 0, MAX_ITERATIONS, low_open=True),
    "eval.every_epochs": Range("at least 1", 1),
    "eval.every_iterations": Range("at least 1", 1),
    "checkpoint.every_minutes": Range("a number of minutes >= 0 (0: off)", 0),
    "checkpoint.every_iterations": Range("at least 1", 1),
    "checkpoint.keep_best": Range("0 (off) or a number of checkpoints", 0),
    "checkpoint.average_last": Range("0 (off) or a number of checkpoints", 0),
    "system.threads": Range("a positive number of threads (at most 1024)", 1, 1024),
    "system.sync_every": Range("a number >= 0 (0: the device's default)", 0),
    "distributed.timeout": Range("a positive number of seconds", 0, low_open=True),
    "distributed.setup_timeout": Range("a positive number of seconds", 0, low_open=True),
    "log.every_iterations": Range("at least 1", 1),
}
