"""Layer responses (Fig. 7) and gradient norms: hooks at exactly the right places, numbers against autograd."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

import resnet
from resnet.analysis import gradient_norms, measure_responses, response_layers, weight_layers
from resnet.cli import main
from resnet.errors import ConfigError
from resnet.models.blocks import BasicBlock, Bottleneck


@pytest.mark.parametrize("name", ["resnet8", "plain8", "resnet14", "plain14"])
def test_response_layers_of_cifar_nets(name):
    model = resnet.create_model(name)
    layers = response_layers(model)
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    assert len(layers) == 1 + 2 * len(blocks)  # the 3x3 stem, then two 3x3 layers per basic block
    assert layers[0][0] == "bn1"
    expected = [m for b in blocks for m in (b.bn1, b.bn2)]
    assert [module for _, module in layers[1:]] == expected


def test_response_layers_of_bottleneck_nets():
    model = resnet.create_model("resnet50")
    layers = response_layers(model)
    blocks = [m for m in model.modules() if isinstance(m, Bottleneck)]
    assert [module for _, module in layers] == [b.bn2 for b in blocks]  # 7x7 stem excluded, one 3x3 per block


def test_preactivation_nets_are_refused():
    with pytest.raises(ConfigError, match="pre-activation"):
        response_layers(resnet.create_model("resnet8", preact=True))


@pytest.mark.parametrize("name", ["resnet8", "plain8"])
def test_responses_are_the_bn_outputs_before_relu_and_addition(name):
    torch.manual_seed(0)
    model = resnet.create_model(name).eval()
    for module in model.modules():  # non-trivial BN statistics, so that the std differs per layer
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.2, 2.0)
            module.bias.data.uniform_(-1.0, 1.0)
    images = torch.randn(6, 3, 16, 16)
    batches = [(images[:4], None), (images[4:], None)]
    measured = measure_responses(model, batches)

    # Manual: run each block by hand and take the BN outputs before ReLU / addition.
    expected = []
    with torch.no_grad():
        x = model.bn1(model.conv1(images))
        expected.append(x.std(unbiased=False).item())
        x = torch.relu(x)
        for block in (m for m in model.modules() if isinstance(m, BasicBlock)):
            first = block.bn1(block.conv1(x))
            second = block.bn2(block.conv2(torch.relu(first)))
            expected += [first.std(unbiased=False).item(), second.std(unbiased=False).item()]
            x = torch.relu(second + (block.downsample(x) if block.downsample is not None else 0))
    assert measured.images == 6
    assert measured.std == pytest.approx(expected, rel=1e-6)
    # The hooks are gone and the model's output is unchanged by measuring.
    assert all(not m._forward_hooks for m in model.modules())


def test_gradient_norms_equal_manual_autograd():
    torch.manual_seed(0)
    model = resnet.create_model("plain8")
    images, labels = torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))
    result = gradient_norms(model, images, labels, label="plain8")

    reference = resnet.create_model("plain8")
    reference.load_state_dict(model.state_dict())
    reference.train()
    nn.functional.cross_entropy(reference(images), labels).backward()
    manual = [module.weight.grad.norm().item() for _, module in _convs_and_linear(reference)]
    assert result.norms == pytest.approx(manual, rel=1e-5)
    assert result.layers == [name for name, _ in weight_layers(model)]
    assert result.layers[0] == "conv1" and result.layers[-1] == "fc"
    assert all(p.grad is None for p in model.parameters())  # nothing left behind on the model


def _convs_and_linear(model):
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


@pytest.mark.slow
def test_analyses_from_a_tiny_run(tmp_path: Path):
    from resnet.train import load_config, train
    from synthetic import write_image_folder

    folder = write_image_folder(tmp_path / "tiny", classes=("a", "b"), splits={"train": 16, "test": 4}, size=(8, 8))
    summaries = []
    for name in ("plain8", "resnet8"):
        config = load_config("cifar-paper", {
            "model.name": name, "data.dataset": str(folder), "train.iterations": 3, "data.batch_size": 8,
            "data.val_size": 8, "data.pipeline": "tensor", "log.tensorboard": False, "log.progress": "none",
            "run_dir": str(tmp_path / name),
        })  # fmt: skip
        summaries.append(train(config))
    checkpoints = [s["last_checkpoint"] for s in summaries]
    out = tmp_path / "analysis"
    assert main(["analyze", "responses", "--checkpoint", *checkpoints, "--out", str(out)]) == 0
    numbers = json.loads((out / "responses.json").read_text())
    assert [n["label"] for n in numbers] == ["plain8", "resnet8"]
    assert all(len(n["std"]) == 7 and n["images"] == 8 for n in numbers)  # stem + 3 blocks x 2; the 8 test images
    assert (out / "responses.png").stat().st_size > 0

    code = main([
        "analyze", "gradients", "--model", "plain8", "resnet8", "--checkpoint", checkpoints[1],
        "--dataset", str(folder), "--batch-size", "8", "--out", str(out),
    ])  # fmt: skip
    assert code == 0
    grads = json.loads((out / "gradients.json").read_text())
    assert [g["label"] for g in grads] == ["resnet8 (trained)", "plain8 (initialisation)", "resnet8 (initialisation)"]
    assert (out / "gradients.png").stat().st_size > 0
    assert main(["analyze", "responses", "--checkpoint", str(tmp_path / "missing.pt"), "--out", str(out)]) == 2
    _load_trained_reads_the_meta(Path(checkpoints[1]), tmp_path)


def _load_trained_reads_the_meta(checkpoint: Path, tmp_path: Path) -> None:
    """The model comes from the checkpoint's meta (as resnet.load_model), also when its keys carry a torch.compile
    prefix; a checkpoint without meta (older versions) still loads from its configuration and weight shapes."""
    from resnet.analysis.reports import load_trained
    from resnet.runs.checkpoint import load_checkpoint, save_atomic

    reference = resnet.load_model(checkpoint).model
    payload = load_checkpoint(checkpoint)
    payload["model"] = {f"_orig_mod.{k}": v for k, v in payload["model"].items()}
    save_atomic(payload, tmp_path / "compiled.pt")
    payload["model"] = load_checkpoint(checkpoint)["model"]
    payload.pop("meta")
    save_atomic(payload, tmp_path / "old.pt")
    for path in (checkpoint, tmp_path / "compiled.pt", tmp_path / "old.pt"):
        model, config = load_trained(path)
        assert config.model.name == "resnet8" and not model.training
        for (name, a), b in zip(model.state_dict().items(), reference.state_dict().values(), strict=True):
            assert torch.equal(a, b), name


def _fake_run(path: Path, recipe: str, errors: list[float], minutes_per_epoch: float) -> Path:
    path.mkdir(parents=True)
    (path / "config.toml").write_text(f'recipe = "{recipe}"\n[model]\nname = "resnet20"\n[data]\ndataset = "c"\n')
    records = [{"epoch": 1.0, "iteration": 5, "train_loss": 2.0}]  # a training-only record: not a point
    for epoch, error in enumerate(errors, 1):
        wall = epoch * minutes_per_epoch * 60
        records.append({"epoch": float(epoch), "iteration": epoch * 10, "test_error": error, "wall_time": wall})
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_curves_report_time_and_epoch_to_each_target_accuracy(tmp_path: Path, capsys: pytest.CaptureFixture):
    slow = _fake_run(tmp_path / "paper", "cifar-paper", [40.0, 21.0, 14.5, 12.0], minutes_per_epoch=2.0)
    quick = _fake_run(tmp_path / "fast", "fast", [35.0, 19.0, 16.0], minutes_per_epoch=1.5)
    assert main(["analyze", "curves", str(slow), str(quick), "--target", "80", "--target", "86",
                 "--out", str(tmp_path / "out")]) == 0  # fmt: skip
    numbers = json.loads((tmp_path / "out" / "curves.json").read_text())
    paper, fast = numbers["runs"]
    assert paper["reached"]["80"] == {"epoch": 3.0, "minutes": 6.0}  # epoch 2's 79% is not 80%
    assert paper["reached"]["86"] == {"epoch": 4.0, "minutes": 8.0}
    assert fast["reached"]["80"] == {"epoch": 2.0, "minutes": 3.0}
    assert fast["reached"]["86"] is None
    assert (paper["best_test_error"], fast["final_test_error"], fast["epochs"]) == (12.0, 16.0, 3.0)
    assert (tmp_path / "out" / "curves.png").stat().st_size > 10_000
    table = capsys.readouterr().out
    assert "| paper | cifar-paper | 4 | 8.0 | 12.00 | 12.00 | 6.0 min (epoch 3) | 8.0 min (epoch 4) |" in table
    assert "not reached" in table


def test_curves_of_a_run_without_test_errors_is_one_clear_error(tmp_path: Path):
    from resnet.analysis import read_run

    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no evaluation with a test error yet"):
        read_run(tmp_path / "empty")
    with pytest.raises(ConfigError, match="does not exist"):
        read_run(tmp_path / "missing")
