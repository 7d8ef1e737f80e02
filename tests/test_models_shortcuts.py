"""Shortcut options A/B/C, plain twins, pre-activation ordering and stride placement, tested directly."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import resnet
from resnet.models import (
    Bottleneck,
    IdentityShortcut,
    PreActBasicBlock,
    ProjectionShortcut,
    ZeroPadShortcut,
)
from resnet.models.shortcuts import make_shortcut


def _blocks(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if hasattr(m, "zero_init_last")]


def _shape_changes(block: nn.Module) -> bool:
    first_conv = next(m for m in block.modules() if isinstance(m, nn.Conv2d))
    last_conv = [m for n, m in block.named_modules() if isinstance(m, nn.Conv2d) and "downsample" not in n][-1]
    stride = max(max(m.stride) for m in block.modules() if isinstance(m, nn.Conv2d))
    return stride != 1 or first_conv.in_channels != last_conv.out_channels


@given(
    in_channels=st.integers(1, 8),
    extra=st.integers(0, 8),
    stride=st.integers(1, 3),
    size=st.integers(1, 9),
)
@settings(max_examples=40, deadline=None)
def test_option_a_subsamples_and_pads_zeros(in_channels: int, extra: int, stride: int, size: int) -> None:
    shortcut = ZeroPadShortcut(in_channels, in_channels + extra, stride)
    x = torch.randn(2, in_channels, size, size)
    y = shortcut(x)
    assert y.shape == (2, in_channels + extra, -(-size // stride), -(-size // stride))
    torch.testing.assert_close(y[:, :in_channels], x[:, :, ::stride, ::stride], rtol=0, atol=0)
    assert torch.count_nonzero(y[:, in_channels:]) == 0
    assert not list(shortcut.parameters())


def test_option_a_adds_no_parameters() -> None:
    for depth in (20, 56):
        residual = resnet.create_model(f"resnet{depth}", shortcut="A")
        plain = resnet.create_model(f"plain{depth}")
        assert sum(p.numel() for p in residual.parameters()) == sum(p.numel() for p in plain.parameters())
        kinds = {type(b.downsample) for b in _blocks(residual)}
        assert kinds == {IdentityShortcut, ZeroPadShortcut}


def test_option_a_on_imagenet_bottlenecks() -> None:
    model = resnet.create_model("resnet50", shortcut="A").eval()
    b = resnet.create_model("resnet50", shortcut="B")
    assert sum(p.numel() for p in model.parameters()) < sum(p.numel() for p in b.parameters())
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


@pytest.mark.parametrize("name", ["resnet20", "resnet18", "resnet50"])
def test_option_b_projects_only_where_the_shape_changes(name: str) -> None:
    for block in _blocks(resnet.create_model(name, shortcut="B")):
        expected = ProjectionShortcut if _shape_changes(block) else IdentityShortcut
        assert type(block.downsample) is expected


@pytest.mark.parametrize("name", ["resnet20", "resnet34", "resnet50"])
def test_option_c_projects_on_every_block(name: str) -> None:
    blocks = _blocks(resnet.create_model(name, shortcut="C"))
    assert all(isinstance(b.downsample, ProjectionShortcut) for b in blocks)
    params = {opt: sum(p.numel() for p in resnet.create_model(name, shortcut=opt).parameters()) for opt in "ABC"}
    assert params["A"] <= params["B"] < params["C"]


def test_plain_twins_have_no_shortcut_and_no_addition() -> None:
    plain = resnet.create_model("plain20").eval()
    assert all(b.downsample is None for b in _blocks(plain))
    # With the same weights, the plain twin computes the residual net minus every addition.
    block = _blocks(plain)[0]
    x = torch.randn(2, 16, 8, 8)
    expected = torch.relu(block.bn2(block.conv2(torch.relu(block.bn1(block.conv1(x))))))
    torch.testing.assert_close(block(x), expected)


def test_residual_block_adds_the_shortcut() -> None:
    block = _blocks(resnet.create_model("resnet20").eval())[0]
    x = torch.randn(2, 16, 8, 8)
    branch = block.bn2(block.conv2(torch.relu(block.bn1(block.conv1(x)))))
    torch.testing.assert_close(block(x), torch.relu(branch + x))


def test_make_shortcut_rejects_unknown_options() -> None:
    with pytest.raises(ValueError, match="unknown shortcut"):
        make_shortcut("D", 16, 16, 1)
    with pytest.raises(ValueError, match="only add channels"):
        ZeroPadShortcut(32, 16, 1)


def test_preactivation_ordering() -> None:
    torch.manual_seed(0)
    block = PreActBasicBlock(16, 16, 1, IdentityShortcut()).eval()
    for bn in (block.bn1, block.bn2):  # non-trivial BN statistics so the order matters
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.bias.data.uniform_(-1, 1)
    x = torch.randn(2, 16, 8, 8)
    expected = block.conv2(torch.relu(block.bn2(block.conv1(torch.relu(block.bn1(x)))))) + x
    torch.testing.assert_close(block(x), expected)
    assert (block(x) < 0).any(), "no ReLU after the addition in a pre-activation block"


def test_preactivation_projection_takes_the_preactivated_input() -> None:
    block = PreActBasicBlock(16, 32, 2, make_shortcut("B", 16, 32, 2, norm=False), preact="both").eval()
    x = torch.randn(2, 16, 8, 8)
    preact = torch.relu(block.bn1(x))
    expected = block.conv2(torch.relu(block.bn2(block.conv1(preact)))) + block.downsample(preact)
    torch.testing.assert_close(block(x), expected)


def test_preact_network_ends_with_bn_relu() -> None:
    model = resnet.create_model("resnet20", preact=True).eval()
    assert isinstance(model.post_norm[0], nn.BatchNorm2d)
    assert (model.forward_features(torch.randn(2, 3, 32, 32)) >= 0).all()
    assert isinstance(_blocks(model)[0], PreActBasicBlock)
    assert resnet.create_model("resnet50", preact=True)(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


@pytest.mark.parametrize(("stride_on", "conv1_stride", "conv2_stride"), [("3x3", 1, 2), ("1x1", 2, 1)])
def test_bottleneck_stride_placement(stride_on: str, conv1_stride: int, conv2_stride: int) -> None:
    model = resnet.create_model("resnet50", stride_on=stride_on)
    block = model.layer2[0]
    assert isinstance(block, Bottleneck)
    assert (block.conv1.stride[0], block.conv2.stride[0]) == (conv1_stride, conv2_stride)
    assert model.layer2[1].conv1.stride[0] == model.layer2[1].conv2.stride[0] == 1


def test_zero_init_residual_makes_blocks_start_as_identity() -> None:
    model = resnet.create_model("resnet18", zero_init_residual=True)
    assert all(torch.count_nonzero(b.bn2.weight) == 0 for b in _blocks(model))
    block = model.layer1[0].eval()
    x = torch.rand(2, 64, 8, 8)  # non-negative, as after the stem's ReLU
    torch.testing.assert_close(block(x), x)
    default = resnet.create_model("resnet18")
    assert all(torch.all(b.bn2.weight == 1) for b in _blocks(default))
