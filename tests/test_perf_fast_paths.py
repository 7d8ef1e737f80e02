"""Every fast path computes what the plain path computes: fused/foreach SGD, channels-last training, BN folding,
the prepared inference model and the trainer's folded evaluation."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torchvision.models.resnet import BasicBlock as BasicBlockTV
from torchvision.models.resnet import ResNet as ResNetTV

import resnet
from resnet.errors import ConfigError
from resnet.eval import evaluate_metrics
from resnet.inference.fast import folded_copy, inference_precision, prepare_for_inference
from resnet.models import ArchSpec, ResNet
from resnet.models.fuse import count_batchnorms, fuse_conv_bn
from resnet.train import load_config
from resnet.train.optim.optimizers import build_optimizer, sgd_implementation
from synthetic import trained_in_eval
from test_train_fake_data import make_fake_bundle


def _tiny_bottleneck(**options: object) -> nn.Module:
    """An ImageNet-style bottleneck net (7x7 stem, max-pool, four stages, projections) a few channels wide."""
    spec = ArchSpec(
        "tiny-bottleneck", "imagenet", 14, "bottleneck", (1, 1, 1, 1), (2, 4, 4, 8), 8, True, 10, (3, 64, 64)
    )
    return ResNet(spec, num_classes=10, shortcut="B", **options)


def _train_losses(impl: str, channels_last: bool, steps: int = 6) -> tuple[list[float], nn.Module]:
    torch.manual_seed(0)
    model = resnet.create_model("resnet8", num_classes=4, in_chans=1)
    config = load_config("fast", {"system.optimizer_impl": impl}, check=False)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, config, lr=0.1)
    data = make_fake_bundle(num_train=steps * 32, batch_size=32)
    losses = []
    for images, labels in data.train.epoch(0):
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        loss = nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses, model


def test_auto_optimizer_is_fused_on_cpu() -> None:
    params = [nn.Parameter(torch.zeros(3))]
    assert sgd_implementation(params) == {"fused": True}
    assert sgd_implementation(params, "for-loop") == {"foreach": False}
    assert sgd_implementation(params, "foreach") == {"foreach": True}
    optimizer = build_optimizer(nn.Linear(2, 2), load_config("fast", check=False), lr=0.1)
    assert optimizer.defaults["fused"] is True


@pytest.mark.parametrize("impl", ["fused", "foreach"])
def test_fast_optimizers_train_like_the_for_loop(impl: str) -> None:
    reference, plain = _train_losses("for-loop", channels_last=False)
    losses, fast = _train_losses(impl, channels_last=False)
    assert losses == pytest.approx(reference, rel=1e-5, abs=1e-6)
    for a, b in zip(plain.parameters(), fast.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_default_training_path_matches_the_plain_one() -> None:
    """Channels-last + fused SGD (the CPU defaults) vs NCHW + the for-loop: the same losses over a few steps."""
    reference, _ = _train_losses("for-loop", channels_last=False)
    losses, _ = _train_losses("auto", channels_last=True)
    assert losses[0] == pytest.approx(reference[0], rel=1e-5)  # the same forward pass
    assert losses == pytest.approx(reference, rel=1e-2)  # rounding differences grow a little with each update
    assert losses[-1] < losses[0]  # and it learns


@pytest.mark.parametrize(
    ("name", "options", "folded", "left"),
    [
        ("resnet8", {}, 7, 0),  # stem + 3 blocks x 2
        ("resnet8", {"shortcut": "C"}, 10, 0),  # + 3 projection shortcuts
        ("plain8", {}, 7, 0),
        ("resnet8", {"preact": True}, 3, 4),  # one per block; bn1s and the final BN precede no convolution
        ("bottleneck", {}, 16, 0),  # stem + 4 blocks x 3 + 3 projections (stage 1 keeps its width)
        # stem + 4 blocks x 2 (pre-activation projections have no BN); 3 bn1s (none after the stem) + the final BN
        ("bottleneck", {"preact": True, "stride_on": "1x1"}, 9, 4),
    ],
)
def test_folding_keeps_the_outputs(name: str, options: dict, folded: int, left: int) -> None:
    model = trained_in_eval(
        _tiny_bottleneck(**options) if name == "bottleneck" else resnet.create_model(name, **options)
    )
    before = copy.deepcopy(model.state_dict())
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    fused = fuse_conv_bn(model)
    assert fused.folded_batchnorms == folded and count_batchnorms(fused) == left
    with torch.no_grad():
        expected = model(images)
        torch.testing.assert_close(fused(images), expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())
    for key, value in model.state_dict().items():  # the original is untouched
        assert torch.equal(value, before[key])


def test_folding_torchvision_and_feature_models() -> None:
    tv = trained_in_eval(ResNetTV(BasicBlockTV, [1, 1, 1, 1], num_classes=10))
    images = torch.randn(2, 3, 32, 32)
    fused = fuse_conv_bn(tv)
    assert fused.folded_batchnorms == 12 and count_batchnorms(fused) == 0  # stem + 4 x 2 + 3 projections
    with torch.no_grad():
        torch.testing.assert_close(fused(images), tv(images), rtol=1e-4, atol=1e-4)
    backbone = trained_in_eval(resnet.create_model("resnet8", features_only=True))
    fast = prepare_for_inference(backbone, "cpu", precision="fp32")
    with torch.no_grad():
        for a, b in zip(fast(images), backbone(images), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_prepared_model_matches_and_cannot_train() -> None:
    model = trained_in_eval(resnet.create_model("resnet8", num_classes=10))
    fast = prepare_for_inference(model, "cpu", precision="fp32")
    assert fast.choices["channels_last"] and fast.choices["folded_batchnorms"] == 7
    assert fast.model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    images = torch.randn(8, 3, 32, 32)
    with torch.inference_mode():
        out = fast(images)
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, model(images), rtol=1e-4, atol=1e-4)
    with pytest.raises(RuntimeError, match="cannot be trained"):
        fast.train()
    assert model.training is False and model.conv1.weight.is_contiguous()  # the original is left as it was


def test_bf16_inference_keeps_the_predictions() -> None:
    torch.manual_seed(0)
    model = trained_in_eval(resnet.create_model("resnet8", num_classes=10))
    fast = prepare_for_inference(model, "cpu", precision="bf16")
    assert fast.choices["precision"] == "bf16" and fast.model.fc.weight.dtype == torch.bfloat16
    images = torch.randn(32, 3, 32, 32)
    with torch.inference_mode():
        expected, out = model(images), fast(images)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected, rtol=0.05, atol=0.05 * expected.abs().max().item())
    assert (out.argmax(1) == expected.argmax(1)).float().mean() >= 0.85


def test_inference_precision_auto_follows_the_cpu(monkeypatch) -> None:
    import resnet.runtime as devices

    monkeypatch.setattr(devices, "cpu_flags", lambda: {"avx2", "avx512_bf16"})
    assert inference_precision("auto", torch.device("cpu"))[0] == torch.bfloat16
    monkeypatch.setattr(devices, "cpu_flags", lambda: {"avx2"})
    dtype, reason = inference_precision("auto", torch.device("cpu"))
    assert dtype == torch.float32 and "no native bf16" in reason
    with pytest.raises(ConfigError, match="precision must be one of"):
        inference_precision("fp8", torch.device("cpu"))


def test_trainer_evaluation_on_the_folded_copy_is_the_same() -> None:
    data = make_fake_bundle(num_classes=4)
    model = trained_in_eval(resnet.create_model("resnet8", num_classes=4, in_chans=1), seed=3)
    model = model.to(memory_format=torch.channels_last)
    plain = evaluate_metrics(model, data.test)
    folded = evaluate_metrics(folded_copy(model, torch.device("cpu"), channels_last=True), data.test)
    (plain_error, plain_loss), (error, loss) = (plain.top1_error, plain.loss), (folded.top1_error, folded.loss)
    assert error == plain_error and loss == pytest.approx(plain_loss, rel=1e-5)
    assert model.training is False and count_batchnorms(model) == 7  # evaluation left the model alone
