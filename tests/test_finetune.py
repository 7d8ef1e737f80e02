"""Fine-tuning from torchvision weights: --init, classifier replacement, strict key checks, freeze, backbone lr."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

import resnet
from resnet.errors import CheckpointError, ConfigError
from resnet.models.blocks import FrozenBatchNorm2d
from resnet.models.weights import load_weights
from resnet.train import Trainer, load_config, train
from test_train_fake_data import make_fake_bundle


@pytest.fixture(scope="module")
def torchvision_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A torchvision ResNet-18 state dict as saved by DDP (``module.`` prefix), built here: no network."""
    torch.manual_seed(0)
    state = torchvision.models.resnet18(weights=None).state_dict()
    path = tmp_path_factory.mktemp("tv") / "resnet18-ddp.pth"
    torch.save({f"module.{k}": v for k, v in state.items()}, path)
    return path


def finetune_config(run_dir: Path, **overrides: object):
    settings = {
        "model.name": "resnet18",
        "data.dataset": "fake",
        "data.batch_size": 32,
        "train.iterations": 1,
        "run_dir": str(run_dir),
        "log.progress": "plain",
        "log.tensorboard": False,
        **overrides,
    }
    return load_config("fast", settings)


def test_create_model_with_torchvision_weights_replaces_the_classifier(torchvision_weights: Path) -> None:
    theirs = torch.load(torchvision_weights, weights_only=True)
    model = resnet.create_model("resnet18", num_classes=4, weights=torchvision_weights)
    own = model.state_dict()
    for key, value in theirs.items():
        key = key.removeprefix("module.")
        if not key.startswith("fc."):
            assert torch.equal(own[key], value), key
    assert own["fc.weight"].shape == (4, 512)
    same = resnet.create_model("resnet18", weights=torchvision_weights)  # 1000 classes: everything loads
    assert torch.equal(same.state_dict()["fc.weight"], theirs["module.fc.weight"])


def test_any_other_mismatch_lists_missing_and_unexpected_keys(torchvision_weights: Path) -> None:
    with pytest.raises(CheckpointError, match=r"missing \(96 keys\): layer1\.2\.bn1\.\*, layer1\.2\.bn2\.\*"):
        resnet.create_model("resnet34", weights=torchvision_weights)
    state = {k.removeprefix("module."): v for k, v in torch.load(torchvision_weights, weights_only=True).items()}
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=r"unexpected \(1 keys\): extra\.\*"):
        load_weights(resnet.create_model("resnet18"), state)


def test_init_from_torchvision_then_one_training_step(
    torchvision_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = finetune_config(tmp_path / "run", **{"model.init": str(torchvision_weights)})
    trainer = Trainer(config, data=make_fake_bundle(num_classes=4, size=16))
    summary = trainer.run()
    out = capsys.readouterr().err  # progress lines go to stderr
    assert "classifier replaced: 1000 -> 4 classes" in out
    assert "stem convolution: 3-channel weights summed for 1-channel input" in out  # the fake data is grayscale
    assert summary["iterations"] == 1
    theirs = torch.load(torchvision_weights, weights_only=True)
    trained = trainer.model.state_dict()
    # one SGD step moved the weights a little from torchvision's, not from a fresh initialisation
    delta = (trained["layer4.1.conv2.weight"] - theirs["module.layer4.1.conv2.weight"]).abs().max()
    assert 0 < delta < 0.05
    # the checkpoint is an ordinary one: it loads on its own, and is itself a valid --init source
    model, classes = resnet.load_model(tmp_path / "run" / "last.pt")
    assert classes == ["0", "1", "2", "3"] and model.conv1.in_channels == 1
    again = resnet.create_model("resnet18", num_classes=4, in_chans=1, weights=tmp_path / "run" / "last.pt")
    assert torch.equal(again.state_dict()["fc.weight"], trained["fc.weight"])


def test_freeze_and_backbone_lr_factor(tmp_path: Path) -> None:
    config = finetune_config(
        tmp_path / "run",
        **{"model.name": "resnet8", "train.freeze": "stem,layer1", "optim.backbone_lr_factor": 0.1},
    )
    assert config.train.freeze == ["stem", "layer1"]
    trainer = Trainer(config, data=make_fake_bundle(num_classes=4, size=12))
    trainer.setup()
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    assert isinstance(trainer.model.bn1, FrozenBatchNorm2d) and isinstance(
        trainer.model.layer1[0].bn1, FrozenBatchNorm2d
    )
    scales = {group["lr_scale"] for group in trainer.optimizer.param_groups}
    assert scales == {1.0, 0.1}
    head = [g for g in trainer.optimizer.param_groups if g["lr_scale"] == 1.0]
    assert {id(p) for g in head for p in g["params"]} == {id(trainer.model.fc.weight), id(trainer.model.fc.bias)}
    trainer.run()
    after = trainer.model.state_dict()
    for key in before:
        frozen = key.startswith(("conv1.", "bn1.", "layer1."))
        if frozen or key.endswith("num_batches_tracked"):
            assert torch.equal(before[key], after[key]) or key.endswith("num_batches_tracked"), key
        elif key.startswith("layer3.") and key.endswith("conv1.weight"):
            assert not torch.equal(before[key], after[key]), key
    with pytest.raises(ConfigError, match="unknown stage"):
        train(
            finetune_config(tmp_path / "r2", **{"model.name": "resnet8", "train.freeze": ["layer9"]}),
            data=make_fake_bundle(),
        )


def test_init_from_safetensors(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    source = resnet.create_model("resnet8", num_classes=3)
    save_file(source.state_dict(), str(tmp_path / "w.safetensors"))
    model = resnet.create_model("resnet8", num_classes=3, weights=tmp_path / "w.safetensors")
    assert all(
        torch.equal(a, b) for a, b in zip(model.state_dict().values(), source.state_dict().values(), strict=True)
    )
