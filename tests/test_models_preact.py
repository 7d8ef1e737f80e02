"""The pre-activation family (He et al. 2016) and the CIFAR bottleneck nets against an independent construction.

The reference nets below are written from the authors' description and code (fb.resnet.torch ``preresnet.lua``,
``resnet-1k-layers``), in their style: a unit is ``Sequential(common BN-ReLU?, Sum(branch, shortcut))``. Our
network is then given the reference's weights, module by module in construction order (each pair must have the
same type and shapes, so a missing or extra layer fails), and must compute the same function.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import resnet
from resnet.errors import ConfigError
from synthetic import trained_like

LAYERS = (nn.Conv2d, nn.BatchNorm2d, nn.Linear)


class Sum(nn.Module):
    """ConcatTable(branch, shortcut) followed by CAddTable."""

    def __init__(self, branch: nn.Module, shortcut: nn.Module) -> None:
        super().__init__()
        self.branch, self.shortcut = branch, shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.branch(x) + self.shortcut(x)


class ZeroPad(nn.Module):
    """Option A: subsample, then append as many zero channels as needed."""

    def __init__(self, stride: int, n_out: int) -> None:
        super().__init__()
        self.stride, self.n_out = stride, n_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        zeros = x.new_zeros(x.shape[0], self.n_out - x.shape[1], *x.shape[2:])
        return torch.cat([x, zeros], 1)


def bn_relu(channels: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(channels), nn.ReLU()]


def shortcut(kind: str, n_in: int, n_out: int, stride: int, bn: bool) -> nn.Module:
    if kind == "C" or (kind == "B" and (n_in != n_out or stride != 1)):
        conv = nn.Conv2d(n_in, n_out, 1, stride, bias=False)
        return nn.Sequential(conv, nn.BatchNorm2d(n_out)) if bn else conv
    if n_in != n_out or stride != 1:
        return ZeroPad(stride, n_out)
    return nn.Identity()


def preact_unit(block: str, n_in: int, n: int, stride: int, kind: str, where: str, stride_on: str) -> nn.Module:
    """``where``: "both_preact" (one BN-ReLU before both paths), "no_preact" (none), "" (on the branch only)."""
    n_out = n * (4 if block == "bottleneck" else 1)
    common = bn_relu(n_in) if where == "both_preact" else []
    branch: list[nn.Module] = [] if where else bn_relu(n_in)
    if block == "basic":
        branch += [nn.Conv2d(n_in, n, 3, stride, 1, bias=False), *bn_relu(n), nn.Conv2d(n, n, 3, 1, 1, bias=False)]
    else:
        s1, s3 = (stride, 1) if stride_on == "1x1" else (1, stride)
        branch += [nn.Conv2d(n_in, n, 1, s1, bias=False), *bn_relu(n), nn.Conv2d(n, n, 3, s3, 1, bias=False)]
        branch += [*bn_relu(n), nn.Conv2d(n, n_out, 1, bias=False)]
    return nn.Sequential(*common, Sum(nn.Sequential(*branch), shortcut(kind, n_in, n_out, stride, bn=False)))


def original_unit(block: str, n_in: int, n: int, stride: int, kind: str, stride_on: str) -> nn.Module:
    """The 2015 unit: conv-BN-ReLU ... conv-BN, add, ReLU (projections with BN)."""
    n_out = n * (4 if block == "bottleneck" else 1)
    if block == "basic":
        layers = [nn.Conv2d(n_in, n, 3, stride, 1, bias=False), *bn_relu(n), nn.Conv2d(n, n, 3, 1, 1, bias=False)]
    else:
        s1, s3 = (stride, 1) if stride_on == "1x1" else (1, stride)
        layers = [nn.Conv2d(n_in, n, 1, s1, bias=False), *bn_relu(n), nn.Conv2d(n, n, 3, s3, 1, bias=False)]
        layers += [*bn_relu(n), nn.Conv2d(n, n_out, 1, bias=False)]
    branch = nn.Sequential(*layers, nn.BatchNorm2d(n_out))
    return nn.Sequential(Sum(branch, shortcut(kind, n_in, n_out, stride, bn=True)), nn.ReLU())


def reference_net(
    family: str, block: str, counts: tuple[int, ...], kind: str, preact: bool, stride_on: str = "3x3"
) -> nn.Module:
    """preresnet.lua / resnet-1k-layers (``preact``) or resnet.lua (original units), CIFAR or ImageNet."""
    expansion = 4 if block == "bottleneck" else 1
    widths = (16, 32, 64) if family == "cifar" else (64, 128, 256, 512)
    if family == "cifar":
        layers: list[nn.Module] = [nn.Conv2d(3, 16, 3, 1, 1, bias=False)]
        if not preact:
            layers += bn_relu(16)
        channels = 16
    else:
        layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), *bn_relu(64), nn.MaxPool2d(3, 2, 1)]
        channels = 64
    for stage, (count, width) in enumerate(zip(counts, widths, strict=True)):
        for i in range(count):
            stride = 2 if stage > 0 and i == 0 else 1
            if preact:
                where = ("no_preact" if family == "imagenet" and stage == 0 else "both_preact") if i == 0 else ""
                layers.append(preact_unit(block, channels, width, stride, kind, where, stride_on))
            else:
                layers.append(original_unit(block, channels, width, stride, kind, stride_on))
            channels = width * expansion
    if preact:
        layers += bn_relu(channels)
    classes = 10 if family == "cifar" else 1000
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, classes)]
    return nn.Sequential(*layers)


def copy_in_order(source: nn.Module, target: nn.Module) -> None:
    """The reference's weights into ours, layer by layer in construction order (types and shapes must agree)."""
    theirs = [m for m in source.modules() if isinstance(m, LAYERS)]
    ours = [m for m in target.modules() if isinstance(m, LAYERS)]
    assert len(theirs) == len(ours), f"{len(theirs)} layers in the reference, {len(ours)} in ours"
    for a, b in zip(theirs, ours, strict=True):
        assert type(a) is type(b)
        assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}
        b.load_state_dict(a.state_dict())


def params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def assert_same_function(reference: nn.Module, ours: nn.Module, size: int) -> float:
    """Equal outputs in eval and in train mode (batch statistics); returns the max abs difference."""
    x = torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(1))
    worst = 0.0
    for train in (False, True):
        reference.train(train)
        ours.train(train)
        with torch.no_grad():
            expected, got = reference(x), ours(x)
        scale = max(1.0, float(expected.abs().max()))
        worst = max(worst, float((got - expected).abs().max()) / scale)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5 * scale)
    return worst


# The authors' construction's counts (fb.resnet.torch preresnet.lua), as quoted in issue 17.
AUTHORS_PARAMS = {("resnet20", "B"): 272_282, ("resnet18", "B"): 11_687_720, ("resnet50", "B"): 25_549_352}
FAMILY = {
    "resnet20": ("cifar", "basic", (3, 3, 3)),
    "resnet18": ("imagenet", "basic", (2, 2, 2, 2)),
    "resnet50": ("imagenet", "bottleneck", (3, 4, 6, 3)),
}


@pytest.mark.parametrize("kind", ["A", "B", "C"])
@pytest.mark.parametrize("name", ["resnet20", "resnet18", "resnet50"])
def test_preact_parameter_counts_equal_the_authors_construction(name: str, kind: str) -> None:
    family, block, counts = FAMILY[name]
    if family == "imagenet" and block == "bottleneck" and kind == "A":
        pytest.skip("preresnet.lua's option A doubles the channels, which a 64 -> 256 bottleneck cannot")
    with torch.device("meta"):
        expected = params(reference_net(family, block, counts, kind, preact=True))
    assert resnet.model_info(name, preact=True, shortcut=kind)["params"] == expected
    if (name, kind) in AUTHORS_PARAMS:
        assert expected == AUTHORS_PARAMS[(name, kind)]


@pytest.mark.parametrize("kind", ["A", "B", "C"])
def test_preact_cifar_resnet20_computes_the_authors_function(kind: str) -> None:
    reference = trained_like(reference_net("cifar", "basic", (3, 3, 3), kind, preact=True), weights=True)
    ours = resnet.create_model("resnet20", preact=True, shortcut=kind)
    copy_in_order(reference, ours)
    assert assert_same_function(reference, ours, 32) < 1e-5


@pytest.mark.parametrize(("name", "kind"), [("resnet18", "B"), ("resnet18", "A"), ("resnet50", "B")])
def test_preact_imagenet_computes_the_authors_function(name: str, kind: str) -> None:
    family, block, counts = FAMILY[name]
    reference = trained_like(reference_net(family, block, counts, kind, preact=True), weights=True)
    ours = resnet.create_model(name, preact=True, shortcut=kind)
    copy_in_order(reference, ours)
    assert assert_same_function(reference, ours, 64) < 1e-5
    assert not hasattr(ours.layer1[0].bn1, "weight"), "no second BN-ReLU after the stem"


def test_first_cifar_unit_preactivates_its_identity_shortcut_too() -> None:
    model = trained_like(resnet.create_model("resnet8", preact=True), weights=True).eval()
    unit = model.layer1[0]
    x = torch.randn(2, 16, 8, 8)
    preact = torch.relu(unit.bn1(x))
    with torch.no_grad():
        expected = unit.conv2(torch.relu(unit.bn2(unit.conv1(preact)))) + preact
        torch.testing.assert_close(unit(x), expected)


@pytest.mark.parametrize(("name", "n"), [("resnet164", 18), ("resnet20-bottleneck", 2), ("resnet11", 1)])
def test_cifar_bottleneck_preact_computes_resnet_1k_layers(name: str, n: int) -> None:
    net = reference_net("cifar", "bottleneck", (n, n, n), "B", preact=True, stride_on="1x1")
    reference = trained_like(net, weights=True)
    ours = resnet.create_model(name, preact=True)
    assert resnet.model_info(name)["stage_depths"] == (n, n, n)
    copy_in_order(reference, ours)
    assert assert_same_function(reference, ours, 32) < 1e-5


@pytest.mark.parametrize("kind", ["A", "B", "C"])
def test_cifar_bottleneck_original_units(kind: str) -> None:
    net = reference_net("cifar", "bottleneck", (2, 2, 2), kind, preact=False, stride_on="1x1")
    reference = trained_like(net, weights=True)
    ours = resnet.create_model("resnet20-bottleneck", shortcut=kind)
    copy_in_order(reference, ours)
    assert assert_same_function(reference, ours, 32) < 1e-5


@pytest.mark.slow
@pytest.mark.parametrize(("name", "expected"), [("resnet164", 1.7e6), ("resnet1001", 10.2e6)])
def test_he_2016_cifar_nets_are_bottlenecks_of_the_papers_size(name: str, expected: float) -> None:
    for preact in (True, False):
        info = resnet.model_info(name, preact=preact)
        assert info["block"] == "bottleneck" and info["shortcut"] == "B" and info["stride_on"] == "1x1"
        assert info["params"] == pytest.approx(expected, rel=0.03)
    plain = resnet.model_info(name.replace("resnet", "plain"))
    assert plain["block"] == "bottleneck" and plain["shortcut"] is None
    assert {name, name.replace("resnet", "plain")} <= set(resnet.list_models("cifar"))


@pytest.mark.parametrize(
    ("name", "block", "stages"),
    [
        ("resnet164-basic", "basic", (27, 27, 27)),  # the 6n+2 net the name meant before
        ("resnet56-bottleneck", "bottleneck", (6, 6, 6)),
        ("resnet29", "bottleneck", (3, 3, 3)),  # 9n+2, not 6n+2
        ("resnet56", "basic", (9, 9, 9)),  # both: basic (the 2015 paper's)
        ("plain50-basic", "basic", (8, 8, 8)),  # a CIFAR net, not ImageNet's plain50
    ],
)
def test_cifar_names_choose_the_block(name: str, block: str, stages: tuple[int, ...]) -> None:
    info = resnet.model_info(name)
    assert (info["family"], info["block"], info["stage_depths"], info["name"]) == ("cifar", block, stages, name)
    assert resnet.model_info("resnet20-basic")["name"] == "resnet20"


@pytest.mark.parametrize("name", ["resnet30-bottleneck", "resnet12", "resnet15-basic"])
def test_impossible_cifar_depths_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="9n\\+2"):
        resnet.create_model(name)
