"""Stochastic depth and classifier dropout as create_model options."""

from __future__ import annotations

import pytest
import torch

from resnet.errors import ConfigError
from resnet.models import create_model
from resnet.models.blocks import BasicBlock, Bottleneck, DropPath, PreActBasicBlock, PreActBottleneck, drop_path_rates
from resnet.models.shortcuts import IdentityShortcut


def test_drop_path_is_the_identity_in_eval_and_scales_survivors_in_train() -> None:
    x = torch.randn(4000, 3, 2, 2) + 5
    module = DropPath(0.25)
    assert torch.equal(module.eval()(x), x)
    torch.manual_seed(0)
    out = module.train()(x)
    kept = (out != 0).flatten(1)
    assert (kept.all(1) | ~kept.any(1)).all()  # whole samples are dropped or kept
    survivors = kept.all(1)
    torch.testing.assert_close(out[survivors], x[survivors] / 0.75)
    assert survivors.float().mean().item() == pytest.approx(0.75, abs=0.03)


def test_rates_grow_linearly_with_depth_and_nets_stay_compatible() -> None:
    assert drop_path_rates(0.1, 3) == [0.0, 0.05, 0.1]
    model = create_model("resnet20", drop_path_rate=0.1, drop_rate=0.2)
    rates = [m.rate for m in model.modules() if isinstance(m, DropPath)]
    assert len(rates) == 8 and rates == pytest.approx(drop_path_rates(0.1, 9)[1:])  # block 0 has rate 0: identity
    assert isinstance(model.dropout, torch.nn.Dropout) and model.dropout.p == 0.2
    plain = create_model("resnet20")
    assert model.state_dict().keys() == plain.state_dict().keys()  # no new keys: torchvision weights still load
    x = torch.randn(2, 3, 32, 32)
    model.load_state_dict(plain.state_dict())
    torch.testing.assert_close(model.eval()(x), plain.eval()(x))  # identity in eval mode
    torch.manual_seed(1)
    train_a = model.train()(x)
    torch.manual_seed(1)
    assert torch.equal(train_a, model(x))  # reproducible from the seed
    features = create_model("resnet18", features_only=True, drop_path_rate=0.1, drop_rate=0.5)
    assert any(isinstance(m, DropPath) for m in features.modules())


@pytest.mark.parametrize("block", [BasicBlock, Bottleneck, PreActBasicBlock, PreActBottleneck])
def test_every_block_type_drops_its_branch_only(block: type[torch.nn.Module]) -> None:
    channels = 16 * block.expansion
    torch.manual_seed(0)
    dropping = block(channels, 16, 1, IdentityShortcut(), drop_path=0.5)
    plain = block(channels, 16, 1, IdentityShortcut())
    plain.load_state_dict(dropping.state_dict())
    x = torch.randn(64, channels, 6, 6)
    torch.testing.assert_close(dropping.eval()(x), plain.eval()(x))
    dropping.train()
    dropping.drop_path.rate = 1.0 - 1e-7  # every branch dropped: the block is its shortcut (and ReLU, post-act)
    expected = x if block in (PreActBasicBlock, PreActBottleneck) else torch.relu(x)
    torch.testing.assert_close(dropping(x), expected)


def test_plain_nets_reject_drop_path() -> None:
    with pytest.raises(ConfigError, match="plain network plain20 has none"):
        create_model("plain20", drop_path_rate=0.1)
    assert isinstance(create_model("plain20", drop_rate=0.1).dropout, torch.nn.Dropout)
    with pytest.raises(ConfigError, match="probability"):
        create_model("resnet20", drop_rate=1.0)
