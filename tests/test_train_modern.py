"""Modern training options: optimizers against reference formulas, EMA, Mixup/CutMix/erasing, accumulation,
checkpoint keeping, and exact resume with every option on."""

from __future__ import annotations

import math
import os
import signal
from contextlib import nullcontext
from pathlib import Path

import pytest
import torch
from torch import nn

from resnet.config import Config, MixConfig, OptimConfig
from resnet.errors import ConfigError, TrainingInterrupted
from resnet.runs.checkpoint import load_checkpoint
from resnet.runs.run_dir import read_metrics
from resnet.train import load_config, train
from resnet.train.ema import ModelEma, ema_decay
from resnet.train.keeping import average_state_dicts
from resnet.train.mixing import BatchMixer, BinaryCrossEntropy, SoftTargetCrossEntropy, random_erasing, smooth_one_hot
from resnet.train.optim.optimizers import Lamb, build_optimizer
from resnet.train.step import train_step
from test_train_fake_data import make_fake_bundle
from test_train_loop import tiny_config


def toy_problem(seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    return nn.Linear(5, 3), torch.randn(16, 5), torch.randint(0, 3, (16,))


def reference_adamw(param, grad, state, lr, betas, eps, wd):
    """Loshchilov & Hutter's AdamW, written out."""
    state["t"] += 1
    t = state["t"]
    param = param * (1 - lr * wd)
    state["m"] = betas[0] * state["m"] + (1 - betas[0]) * grad
    state["v"] = betas[1] * state["v"] + (1 - betas[1]) * grad * grad
    m_hat, v_hat = state["m"] / (1 - betas[0] ** t), state["v"] / (1 - betas[1] ** t)
    return param - lr * m_hat / (v_hat.sqrt() + eps)


def reference_lamb(param, grad, state, lr, betas, eps, wd):
    """You et al. 2019, Algorithm 2 (bias-corrected, trust ratio 1 where a norm is zero)."""
    state["t"] += 1
    t = state["t"]
    state["m"] = betas[0] * state["m"] + (1 - betas[0]) * grad
    state["v"] = betas[1] * state["v"] + (1 - betas[1]) * grad * grad
    update = (state["m"] / (1 - betas[0] ** t)) / ((state["v"] / (1 - betas[1] ** t)).sqrt() + eps) + wd * param
    w_norm, u_norm = param.norm(), update.norm()
    ratio = w_norm / u_norm if w_norm > 0 and u_norm > 0 else 1.0
    return param - lr * ratio * update


@pytest.mark.parametrize("name", ["adamw", "lamb"])
def test_optimizer_steps_equal_the_reference_formula(name: str) -> None:
    model, x, y = toy_problem()
    lr, betas, eps, wd = 0.05, (0.9, 0.99), 1e-6, 0.1
    params = [p.detach().double().clone() for p in model.parameters()]
    states = [{"t": 0, "m": torch.zeros_like(p), "v": torch.zeros_like(p)} for p in params]
    if name == "adamw":
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=betas, eps=eps, weight_decay=wd)
        reference = reference_adamw
    else:
        optimizer = Lamb(model.parameters(), lr=lr, betas=betas, eps=eps, weight_decay=wd)
        reference = reference_lamb
    for _ in range(5):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        grads = [p.grad.detach().double() for p in model.parameters()]
        optimizer.step()
        params = [reference(p, g, s, lr, betas, eps, wd) for p, g, s in zip(params, grads, states, strict=True)]
        for actual, expected in zip(model.parameters(), params, strict=True):
            torch.testing.assert_close(actual.detach().double(), expected, rtol=1e-5, atol=1e-6)


def test_build_optimizer_names_and_no_decay_groups() -> None:
    model, _, _ = toy_problem()
    for name, cls in (
        ("sgd", torch.optim.SGD),
        ("adamw", torch.optim.AdamW),
        ("lamb", Lamb),
        ("rmsprop", torch.optim.RMSprop),
    ):
        config = load_config(None, {"optim.name": name, "optim.decay_norm_and_bias": False}, check=False)
        optimizer = build_optimizer(model, config, 0.1)
        assert isinstance(optimizer, cls)
        assert [g["weight_decay"] for g in optimizer.param_groups] == [config.optim.weight_decay, 0.0]
        assert optimizer.param_groups[1]["params"] == [model.bias]
    with pytest.raises(ConfigError, match=r"optim\.name"):
        load_config(None, {"optim.name": "adam"}, check=False)


def test_ema_equals_a_manual_update() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    ema = ModelEma(model, decay=0.8, warmup=True, every=2)
    expected = {k: v.double().clone() for k, v in model.state_dict().items()}
    done = 0
    for iteration in range(1, 9):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model(torch.randn(8, 3))  # moves the BN statistics, which are averaged too
        ema.maybe_update(model, iteration)
        if iteration % 2:
            continue
        for key, value in model.state_dict().items():
            if done == 0 or not value.is_floating_point():
                expected[key] = value.double().clone()
            else:
                decay = ema_decay(0.8, done - 1, True)
                expected[key] = decay * expected[key] + (1 - decay) * value.double()
        done += 1
    assert ema_decay(0.8, 0, True) == pytest.approx(0.1) and ema_decay(0.8, 100, True) == 0.8
    assert int(ema.n_averaged) == ema.updates == 4
    for key, value in ema.module.state_dict().items():
        torch.testing.assert_close(value.double(), expected[key], rtol=1e-6, atol=1e-6)
    restored = ModelEma(model, decay=0.8, warmup=True)
    restored.load_state_dict(ema.state_dict())
    assert int(restored.n_averaged) == 4


def batch(n: int = 8, size: int = 16, classes: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g), torch.randint(0, classes, (n,), generator=g)


def make_mixer(seed: int, label_smoothing: float = 0.0, soft_targets: bool = False, **mix: float) -> BatchMixer:
    """The batch transform of a run with these mix settings (5 classes)."""
    config = Config(seed=seed, mix=MixConfig(**mix), optim=OptimConfig(label_smoothing=label_smoothing))
    return BatchMixer(config, 5, soft_targets=soft_targets)


@pytest.mark.parametrize("mode", ["mixup", "cutmix"])
def test_mixed_targets_sum_to_one_and_match_the_mixed_area(mode: str) -> None:
    alphas = {"mixup_alpha": 0.4} if mode == "mixup" else {"cutmix_alpha": 1.0}
    mixer = make_mixer(3, 0.1, **alphas)
    images, labels = batch()
    for index in range(6):
        mixed, targets = mixer(images, labels, index)
        assert mixed.shape == images.shape and mixed.dtype == images.dtype and targets.shape == (8, 5)
        torch.testing.assert_close(targets.sum(1), torch.ones(8))
        drawn, lam, _ = mixer.draw(index)
        assert drawn == mode
        partner = images.roll(1, 0)
        if mode == "cutmix":  # the share of pixels still from the image itself is the weight of its label
            own = (mixed == images).all(1).float().mean((1, 2))
            from_partner = (mixed == partner).all(1).float().mean((1, 2))
            torch.testing.assert_close(from_partner, 1 - own)
            lam = float(own[0])
            assert torch.allclose(own, own[0])
        else:
            torch.testing.assert_close(mixed, lam * images + (1 - lam) * partner)
        smooth = smooth_one_hot(labels, 5, 0.1)
        torch.testing.assert_close(targets, lam * smooth + (1 - lam) * smooth.roll(1, 0))
        again, again_targets = mixer(images, labels, index)  # reproducible from (seed, index)
        assert torch.equal(again, mixed) and torch.equal(again_targets, targets)


def test_switch_probability_and_mix_probability() -> None:
    mixer = make_mixer(0, mixup_alpha=0.2, cutmix_alpha=1.0, switch_prob=0.25, prob=0.8)
    modes = [mixer.draw(i)[0] for i in range(2000)]
    assert modes.count("none") / 2000 == pytest.approx(0.2, abs=0.03)
    assert modes.count("cutmix") / 2000 == pytest.approx(0.8 * 0.25, abs=0.03)


def test_random_erasing_is_batched_seeded_and_zero_filled() -> None:
    images, _ = batch(64, 32)
    erased = random_erasing(images, 0.5, torch.Generator().manual_seed(1))
    assert erased.shape == images.shape and erased.dtype == images.dtype
    changed = (erased != images).flatten(1).any(1)
    assert 0.3 < changed.float().mean() < 0.7
    zeros = (erased == 0).all(1)  # one rectangle per erased image, through every channel
    for i in torch.nonzero(changed).flatten().tolist():
        rows, cols = zeros[i].any(1).nonzero(), zeros[i].any(0).nonzero()
        area = zeros[i].sum().item()
        assert area == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert 0.02 * 1024 * 0.5 <= area <= 0.33 * 1024 * 1.5
    assert torch.equal(erased, random_erasing(images, 0.5, torch.Generator().manual_seed(1)))


def test_losses_on_soft_targets() -> None:
    logits, labels = torch.randn(6, 4), torch.randint(0, 4, (6,))
    ce = SoftTargetCrossEntropy(0.1)
    torch.testing.assert_close(ce(logits, labels), nn.functional.cross_entropy(logits, labels, label_smoothing=0.1))
    torch.testing.assert_close(ce(logits, smooth_one_hot(labels, 4, 0.1)), ce(logits, labels))
    bce = BinaryCrossEntropy(4, 0.0, target_threshold=0.2)
    expected = nn.functional.binary_cross_entropy_with_logits(logits, nn.functional.one_hot(labels, 4).float())
    torch.testing.assert_close(bce(logits, labels), expected)


def test_accumulating_k_batches_equals_one_k_times_batch() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 14 * 14, 5))  # no BatchNorm
    twin = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 14 * 14, 5))
    twin.load_state_dict(net.state_dict())
    images, labels = batch(24, 16)
    mixer = make_mixer(0, 0.1, soft_targets=True)  # soft targets, no randomness
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    results = []
    for model, batches in (
        (net, [(images[i : i + 8], labels[i : i + 8]) for i in (0, 8, 16)]),
        (twin, [(images, labels)]),
    ):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
        for _ in range(3):
            results.append(
                train_step(
                    model, SoftTargetCrossEntropy(), batches, optimizer, scaler, autocast=nullcontext, transform=mixer
                )
            )
    for a, b in zip(net.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    loss_accumulated, _, seen_accumulated = results[0]
    loss_whole, _, seen_whole = results[3]
    assert seen_accumulated == seen_whole == 24
    torch.testing.assert_close(loss_accumulated.float(), loss_whole.float(), atol=1e-5, rtol=0)


def test_accumulation_scales_the_lr_on_the_effective_batch() -> None:
    from resnet.train.optim.schedules import scaled_lr

    config = load_config(
        None,
        {"optim.lr": 0.1, "optim.reference_batch_size": 256, "data.batch_size": 64, "optim.accum_steps": 8},
        check=False,
    )
    assert scaled_lr(config) == pytest.approx(0.2)
    assert scaled_lr(config, world_size=2) == pytest.approx(0.4)


def test_average_of_state_dicts() -> None:
    states = [
        {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(3)},
        {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor(5)},
    ]
    averaged = average_state_dicts(states)
    assert torch.equal(averaged["w"], torch.tensor([2.0, 4.0])) and int(averaged["n"]) == 5


EVERYTHING = {
    "model.name": "resnet8",
    "optim.name": "lamb",
    "optim.lr": 0.005,
    "optim.weight_decay": 0.02,
    "optim.accum_steps": 2,
    "optim.loss": "bce",
    "mix.mixup_alpha": 0.2,
    "mix.cutmix_alpha": 1.0,
    "data.random_erasing": 0.25,
    "ema.enabled": True,
    "ema.decay": 0.9,
    "ema.every_iterations": 2,
    "checkpoint.keep_best": 2,
    "checkpoint.average_last": 2,
    "checkpoint.every_iterations": 3,
    "checkpoint.every_minutes": 0,
    "model.options": {"drop_path_rate": 0.2, "drop_rate": 0.1},
}


class StopAt:
    def __init__(self, iteration: int) -> None:
        self.iteration = iteration

    def on_iteration_end(self, trainer, iteration: int) -> None:
        if iteration == self.iteration:
            raise KeyboardInterrupt


def test_exact_resume_with_every_option_on(tmp_path: Path) -> None:
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    summary = train(tiny_config(reference, **EVERYTHING), data=make_fake_bundle())
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(interrupted, **EVERYTHING), data=make_fake_bundle(), callbacks=[StopAt(8)])
    assert load_checkpoint(interrupted / "last.pt")["iteration"] == 6  # mid-epoch: 4 updates of 2 batches an epoch
    resumed = train(tiny_config(interrupted, **EVERYTHING), data=make_fake_bundle(), resume=True)
    expected, actual = load_checkpoint(reference / "last.pt"), load_checkpoint(interrupted / "last.pt")
    assert expected["iteration"] == actual["iteration"] == 12
    for part in ("model", "ema"):
        for name, tensor in expected[part].items():
            assert torch.equal(tensor, actual[part][name]), (part, name)
    for key, state in expected["optimizer"]["state"].items():
        for name in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(state[name], actual["optimizer"]["state"][key][name])
    assert expected["kept"] == actual["kept"]

    def comparable(records: list[dict]) -> list[dict]:
        return [{k: v for k, v in r.items() if k not in ("images_per_sec", "wall_time", "train_time")} for r in records]

    assert comparable(read_metrics(reference)) == comparable(read_metrics(interrupted))
    assert all("ema_val_error" in r and "ema_test_error" in r for r in read_metrics(reference))
    assert all(r["ema_test_top5_error"] == r["ema_test_top5_error"] for r in read_metrics(reference))  # not NaN
    for key in ("ema_test_error", "best_weights", "averaged_test_error", "averaged_iterations"):
        assert summary[key] == resumed[key], key
    assert summary["averaged_iterations"] == [8, 12]
    assert sorted(p.name for p in interrupted.glob("best-*.pt")) == sorted(p.name for p in reference.glob("best-*.pt"))
    assert len(list(reference.glob("best-*.pt"))) == 2 and len(list(reference.glob("snapshot-*.pt"))) == 2
    averaged = load_checkpoint(reference / "averaged.pt")["model"]
    snapshots = [load_checkpoint(p)["model"] for p in sorted(reference.glob("snapshot-*.pt"))]
    torch.testing.assert_close(averaged["fc.weight"], (snapshots[0]["fc.weight"] + snapshots[1]["fc.weight"]) / 2)
    assert math.isfinite(summary["test_error"])


class LikeALoader:
    """An evaluation stream that draws from the global RNG as each pass begins, as a DataLoader does (its base
    seed); ``signal_at``: sends SIGINT to this process as that pass begins, and counts the batches asked of it from
    then on (a stop waits one batch, not the pass nor the evaluation's other passes)."""

    def __init__(self, stream, signal_at: int | None = None) -> None:
        self.stream, self.signal_at, self.passes, self.asked_after = stream, signal_at, 0, 0

    def __iter__(self):
        self.passes += 1
        torch.empty((), dtype=torch.int64).random_()
        for batch in self.stream:
            if self.passes == self.signal_at and self.asked_after == 0:
                os.kill(os.getpid(), signal.SIGINT)
            self.asked_after += self.signal_at is not None and self.passes >= self.signal_at
            yield batch


def loader_like_bundle(split: str = "val", signal_at: int | None = None):
    data = make_fake_bundle()
    data.val, data.test = LikeALoader(data.val), LikeALoader(data.test)
    getattr(data, split).signal_at = signal_at
    return data


@pytest.mark.parametrize(
    ("split", "call", "at"),
    [("test", 4, 8), ("val", 5, 12)],  # the EMA's test pass of the 2nd evaluation; the final one's first pass
)
def test_a_stop_during_an_evaluation_abandons_it_and_the_resume_is_exact(
    tmp_path: Path, split: str, call: int, at: int
) -> None:
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    summary = train(tiny_config(reference, **EVERYTHING), data=loader_like_bundle())
    data = loader_like_bundle(split, signal_at=call)
    abandoned = rf"at iteration {at} \(its evaluation is left to the resumed run\); checkpoint written"
    with pytest.raises(TrainingInterrupted, match=abandoned):
        train(tiny_config(interrupted, **EVERYTHING), data=data)
    assert getattr(data, split).asked_after == 1  # the batch in hand when the signal came, not scored
    checkpoint = load_checkpoint(interrupted / "last.pt")
    assert checkpoint["iteration"] == at and checkpoint["evaluation_due"]
    assert [r["iteration"] for r in read_metrics(interrupted)] == [4, 8][: at // 4 - 1]  # nothing of the abandoned
    resumed = train(tiny_config(interrupted, **EVERYTHING), data=loader_like_bundle(), resume=True)
    expected, actual = load_checkpoint(reference / "last.pt"), load_checkpoint(interrupted / "last.pt")
    assert expected["iteration"] == actual["iteration"] == 12 and not actual["evaluation_due"]
    for part in ("model", "ema"):
        for name, tensor in expected[part].items():
            assert torch.equal(tensor, actual[part][name]), (part, name)
    assert expected["kept"] == actual["kept"] and torch.equal(expected["rng"]["torch"], actual["rng"]["torch"])

    def comparable(records: list[dict]) -> list[dict]:
        return [{k: v for k, v in r.items() if k not in ("images_per_sec", "wall_time", "train_time")} for r in records]

    assert comparable(read_metrics(reference)) == comparable(read_metrics(interrupted))
    assert [r["iteration"] for r in read_metrics(interrupted)] == [4, 8, 12]
    for key in ("test_error", "best_val_error", "ema_test_error", "best_weights", "averaged_test_error"):
        assert summary[key] == resumed[key], key


def test_modern_option_errors() -> None:
    for key, value, match in (
        ("optim.accum_steps", 0, "at least 1"),
        ("mix.switch_prob", 1.5, "probability"),
        ("ema.decay", 1.0, "probability"),
        ("optim.betas", [0.9], "two numbers"),
        ("checkpoint.keep_best", -1, r"0 \(off\)"),
    ):
        with pytest.raises(ConfigError, match=match):
            tiny_config(Path("unused"), **{key: value})


def test_modern_recipes_carry_their_published_settings() -> None:
    base = {"model.name": "resnet50", "data.dataset": "imagenet"}
    v2 = load_config("torchvision-v2", base)
    assert (v2.optim.name, v2.optim.lr, v2.optim.reference_batch_size, v2.optim.weight_decay) == (
        "sgd",
        0.5,
        1024,
        2e-5,
    )
    assert (v2.data.crop_size, v2.data.eval_resize, v2.data.eval_crop_size) == (176, 232, 224)
    assert (v2.data.policy, v2.data.random_erasing, v2.data.repeats, v2.optim.label_smoothing) == (
        "trivialaugment",
        0.1,
        4,
        0.1,
    )
    assert (v2.mix.mixup_alpha, v2.mix.cutmix_alpha, v2.ema.enabled, v2.train.epochs) == (0.2, 1.0, True, 600)
    assert (v2.schedule.kind, v2.schedule.warmup.kind, v2.schedule.warmup.epochs) == ("cosine", "linear", 5)
    a3 = load_config("rsb-a3", base)
    assert (a3.optim.name, a3.optim.loss, a3.optim.lr, a3.optim.weight_decay, a3.train.epochs) == (
        "lamb",
        "bce",
        8e-3,
        0.02,
        100,
    )
    assert (a3.data.crop_size, a3.data.eval_crop_size, a3.data.policy, a3.data.randaugment_magnitude) == (
        160,
        224,
        "randaugment",
        6,
    )
    assert (a3.mix.mixup_alpha, a3.mix.cutmix_alpha) == (0.1, 1.0)
    cifar = load_config("cifar-modern", {"model.name": "resnet20", "data.dataset": "cifar10"})
    assert cifar.data.val_size == 5000 and cifar.ema.enabled and cifar.optim.label_smoothing == 0.1


def test_exact_resume_with_the_data_options_on_the_tensor_pipeline(tmp_path: Path) -> None:
    from synthetic import write_idx_files

    write_idx_files(tmp_path / "data" / "mnist", train=120, test=16)
    options = {
        **EVERYTHING,
        "data.dataset": "mnist",
        "data.data_dir": str(tmp_path / "data"),
        "data.download": False,
        "data.val_size": 16,
        "data.batch_size": 16,
        "data.subset": 96,
        "eval.test": "end",
        "checkpoint.every_iterations": 2,
        "data.policy": "trivialaugment",
        "data.repeats": 2,
        "train.epochs": 2,
        "checkpoint.keep_best": 0,
        "checkpoint.average_last": 0,
    }
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    train(tiny_config(reference, **options))
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(interrupted, **options), callbacks=[StopAt(3)])
    assert load_checkpoint(interrupted / "last.pt")["iteration"] == 2  # mid-epoch: 3 updates of 2 batches an epoch
    train(tiny_config(interrupted, **options), resume=True)
    expected, actual = load_checkpoint(reference / "last.pt"), load_checkpoint(interrupted / "last.pt")
    assert expected["iteration"] == actual["iteration"] == 6
    for part in ("model", "ema"):
        for name, tensor in expected[part].items():
            assert torch.equal(tensor, actual[part][name]), (part, name)
