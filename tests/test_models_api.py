"""The library API: options and their errors, inputs, backbone use, serialisation and compilers."""

from __future__ import annotations

import io
import math
import pickle

import pytest
import torch
from torch import nn

import resnet
from resnet.errors import ConfigError


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"shortcut": "D"}, "shortcut must be one of A, B, C"),
        ({"stride_on": "2x2"}, "stride_on must be"),
        ({"preact": "yes"}, "preact must be True or False"),
        ({"in_chans": 0}, "in_chans must be a positive integer"),
        ({"num_classes": -3}, "num_classes must be a positive integer"),
        ({"widht": 2}, "has no option"),
    ],
)
def test_bad_options_raise_clear_errors(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resnet.create_model("resnet20", **options)


def test_plain_networks_reject_shortcuts_and_zero_init() -> None:
    with pytest.raises(ConfigError, match="use resnet20"):
        resnet.create_model("plain20", shortcut="B")
    with pytest.raises(ConfigError, match="zero_init_residual"):
        resnet.create_model("plain20", zero_init_residual=True)


def test_default_shortcut_and_classes_per_family() -> None:
    assert resnet.model_info("resnet20")["shortcut"] == "A"
    assert resnet.model_info("resnet18")["shortcut"] == "B"
    assert resnet.model_info("plain18")["shortcut"] is None
    assert resnet.create_model("resnet20").fc.out_features == 10
    assert resnet.create_model("resnet18").fc.out_features == 1000
    assert resnet.create_model("resnet18", num_classes=7).fc.out_features == 7


@pytest.mark.parametrize("bad", [torch.randn(3, 32, 32), torch.randn(2, 1, 32, 32), torch.randn(2, 3, 32)])
def test_wrong_inputs_raise_value_error(bad: torch.Tensor) -> None:
    with pytest.raises(ValueError, match=r"expects a batch of images shaped \(N, 3, H, W\)"):
        resnet.create_model("resnet20")(bad)


def test_in_chans() -> None:
    model = resnet.create_model("resnet20", in_chans=1).eval()
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert resnet.model_info("resnet20", in_chans=1)["input_size"] == (1, 32, 32)


@pytest.mark.parametrize(("name", "size"), [("resnet20", 28), ("resnet20", 45), ("resnet18", 97), ("vgg19", 32)])
def test_fully_convolutional_any_input_size(name: str, size: int) -> None:
    model = resnet.create_model(name).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, size, size)).shape == (1, model.num_classes)


def test_forward_features_is_the_trunk_before_pooling() -> None:
    model = resnet.create_model("resnet50").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape == (2, 2048, 2, 2)
        torch.testing.assert_close(model.forward_head(features), model(x))
    assert resnet.create_model("resnet20").forward_features(torch.randn(1, 3, 32, 32)).shape == (1, 64, 8, 8)


@pytest.mark.parametrize(
    ("name", "channels", "reductions"),
    [
        ("resnet18", [64, 128, 256, 512], [4, 8, 16, 32]),
        ("resnet50", [256, 512, 1024, 2048], [4, 8, 16, 32]),
        ("resnet20", [16, 32, 64], [1, 2, 4]),
    ],
)
def test_features_only_returns_stage_outputs(name: str, channels: list[int], reductions: list[int]) -> None:
    backbone = resnet.create_model(name, features_only=True).eval()
    assert [f.channels for f in backbone.feature_info] == channels
    assert [f.reduction for f in backbone.feature_info] == reductions
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        outputs = backbone(x)
    assert [tuple(o.shape[1:]) for o in outputs] == [
        (c, 64 // r, 64 // r) for c, r in zip(channels, reductions, strict=True)
    ]
    # A trained classifier's trunk loads into the backbone and gives the same features.
    classifier = resnet.create_model(name).eval()
    missing, unexpected = backbone.load_state_dict(classifier.state_dict(), strict=False)
    assert not missing and set(unexpected) == {"fc.weight", "fc.bias"}
    with torch.no_grad():
        torch.testing.assert_close(backbone(x)[-1], classifier.forward_features(x))


def test_he_initialisation() -> None:
    model = resnet.create_model("resnet110")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)][1:]
    weights = torch.cat([c.weight.flatten() for c in convs if c.out_channels == 64])
    fan_out = 64 * 3 * 3
    assert weights.mean().abs() < 1e-3
    assert weights.std().item() == pytest.approx(math.sqrt(2 / fan_out), rel=0.02)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(torch.all(b.weight == 1) and torch.all(b.bias == 0) for b in bns)


@pytest.mark.parametrize("options", [{}, {"preact": True}, {"shortcut": "B"}, {"shortcut": "C"}])
def test_pickle_and_torchscript(options: dict) -> None:
    model = resnet.create_model("resnet8", **options).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        restored = pickle.loads(pickle.dumps(model))
        torch.testing.assert_close(restored(x), expected)
        scripted = torch.jit.script(model)
        torch.testing.assert_close(scripted(x), expected)
        buffer = io.BytesIO()
        torch.jit.save(scripted, buffer)
        buffer.seek(0)
        torch.testing.assert_close(torch.jit.load(buffer)(x), expected)


@pytest.mark.parametrize("name", ["resnet8", "plain8"])
def test_torchscript_features_only(name: str) -> None:
    backbone = resnet.create_model(name, features_only=True).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert [o.shape for o in torch.jit.script(backbone)(x)] == [o.shape for o in backbone(x)]


def test_torch_compile_full_graph() -> None:
    torch._dynamo.reset()
    model = resnet.create_model("resnet8").eval()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")  # fullgraph: any graph break fails
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x))


@pytest.mark.parametrize("name", ["resnet8", "resnet18"])
def test_torch_export(name: str) -> None:
    model = resnet.create_model(name, **({"preact": True} if name == "resnet8" else {})).eval()
    x = torch.randn(2, 3, 32, 32)
    exported = torch.export.export(model, (x,))
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x), model(x))


def test_vgg19_rejects_resnet_options_and_features_only() -> None:
    with pytest.raises(ConfigError, match="has no option"):
        resnet.create_model("vgg19", shortcut="B")
    with pytest.raises(ConfigError, match="features_only"):
        resnet.create_model("vgg19", features_only=True)


def test_reset_classifier() -> None:
    model = resnet.create_model("resnet18").eval()
    model.reset_classifier(5)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 5)
