"""Learning-rate schedules at their boundary iterations, without training."""

from __future__ import annotations

import math

import pytest

from resnet.config.recipes import load_config
from resnet.train.optim.schedules import (
    ErrorThresholdWarmup,
    MultiStepSchedule,
    OneCycleSchedule,
    PlateauSchedule,
    build_schedule,
    milestone_iterations,
    total_iterations,
)

CIFAR_STEPS = 351  # 45k images / 128, full batches


def cifar(model: str = "resnet20", **overrides: object):
    return load_config("cifar-paper", {"model.name": model, "data.dataset": "cifar10", **overrides})


def test_cifar_paper_boundaries() -> None:
    config = cifar()
    schedule = build_schedule(config, CIFAR_STEPS)
    assert total_iterations(config, CIFAR_STEPS) == 64000  # iterations 0..63999, then stop
    expected = {0: 0.1, 31999: 0.1, 32000: 0.01, 47999: 0.01, 48000: 0.001, 63999: 0.001, 64000: 0.001}
    for iteration, lr in expected.items():
        assert schedule.lr_at(iteration) == pytest.approx(lr, rel=1e-12), iteration


def test_shortened_run_keeps_the_milestones_in_place() -> None:
    config = cifar(**{"train.iterations": 6400})
    assert milestone_iterations(config, CIFAR_STEPS) == [3200, 4800]
    by_epochs = cifar(**{"train.epochs": 10})
    assert by_epochs.train.iterations is None
    assert milestone_iterations(by_epochs, CIFAR_STEPS) == [1755, 2632]


def test_epoch_based_step_variant() -> None:
    config = load_config("imagenet-step", {"model.name": "resnet50", "data.dataset": "imagenet"})
    steps = 5004
    schedule = build_schedule(config, steps)
    assert total_iterations(config, steps) == 90 * steps
    assert schedule.lr_at(30 * steps - 1) == pytest.approx(0.1)
    assert schedule.lr_at(30 * steps) == pytest.approx(0.01)
    assert schedule.lr_at(60 * steps) == pytest.approx(0.001)


def test_resnet110_warmup_switches_back_to_the_full_rate() -> None:
    config = cifar("resnet110")
    schedule = build_schedule(config, CIFAR_STEPS)
    assert isinstance(schedule, ErrorThresholdWarmup)
    for iteration in range(300):  # training error 90%: still warming up
        assert schedule.lr_at(iteration) == pytest.approx(0.01)
        schedule.observe_training(iteration, 90.0, 1)
    for iteration in range(300, 400):  # error 70% < 80%: switch once a full window is below
        schedule.observe_training(iteration, 70.0, 1)
        if schedule.switched_at is not None:
            break
    switch = schedule.switched_at
    assert switch is not None and 300 < switch <= 351
    assert schedule.lr_at(switch - 1) == pytest.approx(0.01)
    assert schedule.lr_at(switch) == pytest.approx(0.1)  # back to 0.1, not 0.01 * steps
    assert schedule.lr_at(31999) == pytest.approx(0.1)
    assert schedule.lr_at(32000) == pytest.approx(0.01)
    assert schedule.lr_at(48000) == pytest.approx(0.001)
    schedule.observe_training(500, 95.0, 1)  # a bad batch later never returns to warm-up
    assert schedule.lr_at(501) == pytest.approx(0.1)


def test_warmup_state_survives_a_checkpoint() -> None:
    first = build_schedule(cifar("resnet110"), CIFAR_STEPS)
    for iteration in range(30):
        first.observe_training(iteration, 60.0, 1)
    second = build_schedule(cifar("resnet110"), CIFAR_STEPS)
    second.load_state_dict(first.state_dict())
    for iteration in range(30, 60):
        first.observe_training(iteration, 60.0, 1)
        second.observe_training(iteration, 60.0, 1)
    assert first.switched_at == second.switched_at == 50


def test_shallow_nets_do_not_warm_up() -> None:
    assert isinstance(build_schedule(cifar("resnet56"), CIFAR_STEPS), MultiStepSchedule)
    assert isinstance(build_schedule(cifar("resnet1202"), CIFAR_STEPS), ErrorThresholdWarmup)


def test_windowed_error_is_averaged_over_chunks() -> None:
    """On a GPU the errors arrive summed over sync windows; the decision uses the same average."""
    schedule = ErrorThresholdWarmup(MultiStepSchedule(0.1, [10]), 0.01, threshold=80.0, window=50)
    schedule.observe_training(49, 85.0 * 50, 50)
    assert schedule.switched_at is None  # still warming up
    schedule.observe_training(99, 70.0 * 50, 50)
    assert schedule.switched_at == 100


def test_linear_scaling_rule_and_warmup() -> None:
    config = load_config(
        "imagenet-paper", {"model.name": "resnet50", "data.dataset": "imagenet", "data.batch_size": 1024}
    )
    steps = 1251
    schedule = build_schedule(config, steps)
    assert schedule.lr_at(0) == pytest.approx(0.1)  # start from the unscaled rate ...
    assert schedule.lr_at(5 * steps) == pytest.approx(0.4)  # ... reaching 0.1 * 1024 / 256 after 5 epochs
    assert 0.1 < schedule.lr_at(2 * steps) < 0.4
    plain = build_schedule(load_config("imagenet-paper", {"model.name": "resnet50", "data.dataset": "x"}), steps)
    assert isinstance(plain, PlateauSchedule)  # batch 256: no scaling, no warm-up


def test_plateau_divides_after_patience() -> None:
    schedule = PlateauSchedule(0.1, gamma=0.1, patience=2, threshold=0.1)
    for iteration, error in enumerate([50.0, 40.0, 39.95, 39.99, 40.0]):
        schedule.observe_validation(iteration, error)
    assert schedule.lr_at(10) == pytest.approx(0.01)
    restored = PlateauSchedule(0.1, patience=2)
    restored.load_state_dict(schedule.state_dict())
    assert restored.lr_at(10) == pytest.approx(0.01) and restored.reductions == [4]


def test_one_cycle_shape() -> None:
    schedule = OneCycleSchedule(0.2, total=1000, pct_start=0.25, div_factor=10, final_div=100)
    assert schedule.lr_at(0) == pytest.approx(0.02)
    assert schedule.lr_at(250) == pytest.approx(0.2)
    assert schedule.lr_at(999) == pytest.approx(0.0002)
    values = [schedule.lr_at(i) for i in range(1000)]
    assert values.index(max(values)) == 250 and all(math.isfinite(v) for v in values)
