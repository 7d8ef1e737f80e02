"""Numbers against the paper: parameter counts (Table 6), MACs (Table 1), and the family's structure."""

from __future__ import annotations

import pytest
import torch

import resnet
from resnet.errors import ConfigError

# Table 6 of the paper: CIFAR-10 networks (option A shortcuts).
CIFAR_PARAMS = {20: 0.27e6, 32: 0.46e6, 44: 0.66e6, 56: 0.85e6, 110: 1.7e6, 1202: 19.4e6}

# Table 1 of the paper (FLOPs there are multiply-adds) and torchvision's published counts for v1.5.
IMAGENET_MACS = {
    "resnet18": 1.82e9,
    "resnet34": 3.67e9,
    "resnet50": 4.09e9,
    "resnet101": 7.8e9,
    "resnet152": 11.5e9,
    "vgg19": 19.6e9,
}


@pytest.mark.slow
@pytest.mark.parametrize(("depth", "expected"), sorted(CIFAR_PARAMS.items()))
def test_cifar_params_match_table6(depth: int, expected: float) -> None:
    params = resnet.model_info(f"resnet{depth}")["params"]
    assert params == pytest.approx(expected, rel=0.03)
    assert resnet.model_info(f"plain{depth}")["params"] == params


@pytest.mark.parametrize(("name", "expected"), sorted(IMAGENET_MACS.items()))
def test_imagenet_macs_match_table1(name: str, expected: float) -> None:
    info = resnet.model_info(name)
    assert info["input_size"] == (3, 224, 224)
    assert info["macs"] == pytest.approx(expected, rel=0.03)


def test_resnet50_stride_on_1x1_is_the_papers_3_8_gflops() -> None:
    macs = resnet.model_info("resnet50", stride_on="1x1")["macs"]
    assert macs == pytest.approx(3.86e9, rel=0.03)
    assert macs < resnet.model_info("resnet50")["macs"]


def test_macs_are_counted_from_the_model_not_stored() -> None:
    at_32 = resnet.model_info("resnet20")["macs"]
    at_64 = resnet.model_info("resnet20", input_size=(3, 64, 64))["macs"]
    assert at_64 == pytest.approx(4 * at_32, rel=0.01)  # convolutions scale with the pixels, the fc does not
    assert resnet.model_info("resnet20", num_classes=100)["macs"] == at_32 + 64 * 90


def test_list_models_covers_the_paper() -> None:
    names = set(resnet.list_models())
    for depth in CIFAR_PARAMS:
        assert {f"resnet{depth}", f"plain{depth}"} <= names
    for depth in (18, 34, 50, 101, 152):
        assert {f"resnet{depth}", f"plain{depth}"} <= names
    assert "vgg19" in names
    he_2016 = (164, 1001)  # the bottleneck nets of "Identity Mappings" (tests/test_models_preact.py)
    depths = (*CIFAR_PARAMS, *he_2016)
    assert set(resnet.list_models("cifar")) == {f"{k}{d}" for k in ("resnet", "plain") for d in depths}


@pytest.mark.parametrize(
    ("name", "family", "block", "stages"),
    [
        ("resnet20", "cifar", "basic", (3, 3, 3)),
        ("resnet110", "cifar", "basic", (18, 18, 18)),
        ("resnet34", "imagenet", "basic", (3, 4, 6, 3)),
        ("resnet152", "imagenet", "bottleneck", (3, 8, 36, 3)),
    ],
)
def test_model_info_structure(name: str, family: str, block: str, stages: tuple[int, ...]) -> None:
    info = resnet.model_info(name)
    assert (info["family"], info["block"], info["stage_depths"]) == (family, block, stages)
    assert info["num_classes"] == (10 if family == "cifar" else 1000)


def test_depth_counts_weighted_layers() -> None:
    # The paper's depth counts convolutions and the fc layer, not shortcut projections.
    for name in ("resnet20", "resnet56", "resnet18", "resnet50", "resnet152", "plain34"):
        model = resnet.create_model(name)
        blocks = [m for m in model.modules() if hasattr(m, "zero_init_last")]
        convs_in_branches = sum(
            isinstance(m, torch.nn.Conv2d) for b in blocks for n, m in b.named_modules() if "downsample" not in n
        )
        assert convs_in_branches + 2 == resnet.model_info(name)["depth"], name


def test_any_cifar_depth_6n_plus_2() -> None:
    model = resnet.create_model("resnet8")
    assert resnet.model_info("resnet8")["stage_depths"] == (1, 1, 1)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize(
    ("name", "suggestion"), [("resnet51", "resnet50"), ("renset20", "resnet20"), ("vgg-19", "vgg19")]
)
def test_unknown_names_suggest_close_matches(name: str, suggestion: str) -> None:
    with pytest.raises(ConfigError, match=suggestion):
        resnet.create_model(name)
