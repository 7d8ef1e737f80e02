"""akamaster/pytorch_resnet_cifar10 checkpoints load, converted, into our nets and compute akamaster's function.

The reference net below follows akamaster's published ``resnet.py`` (a ``LambdaLayer`` option-A shortcut that pads
``planes // 4`` zero channels on both sides), and its files are laid out as their published ones
(``pretrained_models/resnet20-12fca82f.th``): ``{"state_dict": DataParallel's "module."-prefixed keys, "best_prec1":
a 0-dim tensor}`` in the legacy (non-zip) format, float32 tensors only and no ``num_batches_tracked`` (they were
saved by a PyTorch older than 0.4.1): 97 tensors for ResNet-20.
"""

from __future__ import annotations

import copy
import json
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

import resnet
from resnet.cli import main
from resnet.models.akamaster import CIFAR10_CLASSES, MEAN, STD
from resnet.models.weights import WeightsConverted
from synthetic import trained_like


class LambdaLayer(nn.Module):
    def __init__(self, lambd) -> None:
        super().__init__()
        self.lambd = lambd

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lambd(x)


class AkaBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1, option: str = "A") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Sequential()
        if stride != 1 or in_planes != planes:
            if option == "A":
                self.shortcut = LambdaLayer(
                    lambda x: F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4), "constant", 0)
                )
            else:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(planes)
                )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        return F.relu(out)


class AkaResNet(nn.Module):
    def __init__(self, n: int, num_classes: int = 10, option: str = "A") -> None:
        super().__init__()
        self.in_planes = 16
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._make_layer(16, n, 1, option)
        self.layer2 = self._make_layer(32, n, 2, option)
        self.layer3 = self._make_layer(64, n, 2, option)
        self.linear = nn.Linear(64, num_classes)

    def _make_layer(self, planes: int, num_blocks: int, stride: int, option: str) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (num_blocks - 1):
            layers.append(AkaBlock(self.in_planes, planes, s, option))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.avg_pool2d(out, out.size()[3])
        return self.linear(out.view(out.size(0), -1))


def save_akamaster(model: nn.Module, path: Path, best_prec1: float | None = None) -> Path:
    """``model`` saved as akamaster's published files are (see the module docstring); their ``best_prec1`` is a 0-dim
    tensor unless a float is given (as newer versions of their trainer save)."""
    state = {f"module.{k}": v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    prec = torch.tensor(91.73) if best_prec1 is None else best_prec1
    torch.save({"state_dict": state, "best_prec1": prec}, path, _use_new_zipfile_serialization=False)
    return path


def test_the_files_are_laid_out_as_the_published_ones(tmp_path: Path) -> None:
    path = save_akamaster(AkaResNet(3), tmp_path / "resnet20-12fca82f.th")
    assert not zipfile.is_zipfile(path)  # the legacy format of the PyTorch that wrote them
    payload = torch.load(path, weights_only=True)
    assert set(payload) == {"state_dict", "best_prec1"}
    state = payload["state_dict"]
    assert len(state) == 97 and all(k.startswith("module.") for k in state)
    assert {v.dtype for v in state.values()} == {torch.float32}
    assert "module.layer1.0.bn1.running_var" in state and not any("num_batches_tracked" in k for k in state)


@pytest.fixture(scope="module", params=[3, 9], ids=["resnet20", "resnet56"])
def akamaster_file(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, nn.Module]:
    torch.manual_seed(request.param)
    reference = trained_like(AkaResNet(request.param))
    path = save_akamaster(reference, tmp_path_factory.mktemp("aka") / f"resnet{6 * request.param + 2}-aka.th")
    return path, reference


def max_difference(reference: nn.Module, ours: nn.Module, train: bool) -> float:
    """Max abs difference of the outputs, on copies (train mode updates the BN statistics)."""
    x = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    reference, ours = copy.deepcopy(reference).train(train), copy.deepcopy(ours).train(train)
    with torch.no_grad():
        return float((reference(x) - ours(x)).abs().max())


def test_create_model_loads_and_converts(akamaster_file: tuple[Path, nn.Module]) -> None:
    path, reference = akamaster_file
    name = path.name.split("-")[0]
    with pytest.warns(WeightsConverted) as record:
        ours = resnet.create_model(name, weights=path)
    assert len(record) == 1
    message = str(record[0].message)
    assert "\n" not in message and "akamaster/pytorch_resnet_cifar10" in message and "permuted" in message
    assert f"({name}, option A)" in message and "91.73" in message
    for train in (False, True):
        assert max_difference(reference, ours, train) < 1e-5


def test_eval_and_predict_read_the_file(akamaster_file: tuple[Path, nn.Module]) -> None:
    path, reference = akamaster_file
    with pytest.warns(WeightsConverted):
        loaded = resnet.load_model(path)
    assert loaded.class_names == list(CIFAR10_CLASSES)
    assert loaded.meta["model"]["name"] == path.name.split("-")[0]
    assert loaded.meta["model"]["options"]["shortcut"] == "A"
    assert loaded.payload["config"]["data"]["dataset"] == "cifar10"  # `resnet eval` defaults to CIFAR-10
    assert max_difference(reference, loaded.model, train=False) < 1e-5


def test_init_converts_too(akamaster_file: tuple[Path, nn.Module]) -> None:
    from types import SimpleNamespace

    from resnet.train.finetune import prepare_finetuning

    path, reference = akamaster_file
    ours = resnet.create_model(path.name.split("-")[0])
    config = SimpleNamespace(model=SimpleNamespace(init=str(path)), train=SimpleNamespace(freeze=[]))
    with pytest.warns(WeightsConverted):
        prepare_finetuning(ours, config, resume=False)
    assert max_difference(reference, ours, train=False) < 1e-5


def test_torch_hub_loads_them(akamaster_file: tuple[Path, nn.Module]) -> None:
    path, reference = akamaster_file
    repo = Path(__file__).resolve().parents[1]
    with pytest.warns(WeightsConverted):
        ours = torch.hub.load(str(repo), path.name.split("-")[0], source="local", weights=str(path))
    assert max_difference(reference, ours, train=False) < 1e-5


def test_option_b_files_are_renamed_only(tmp_path: Path) -> None:
    torch.manual_seed(0)
    reference = trained_like(AkaResNet(3, option="B"))
    path = save_akamaster(reference, tmp_path / "resnet20-b.th", best_prec1=91.73)  # a float, as newer trainers save
    with pytest.warns(WeightsConverted, match="option B"):
        ours = resnet.create_model("resnet20", shortcut="B", weights=path)
    assert max_difference(reference, ours, train=False) < 1e-5


def test_other_files_are_not_converted(tmp_path: Path) -> None:
    state = resnet.create_model("resnet20").state_dict()
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "ours.th")
    with warnings.catch_warnings():
        warnings.simplefilter("error", WeightsConverted)
        resnet.create_model("resnet20", weights=tmp_path / "ours.th")


def akamaster_preprocess(image: Image.Image) -> torch.Tensor:
    """Their test transform: ToTensor, then Normalize with ImageNet's mean and std."""
    x = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)
    return (x - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)


def test_cli_eval_and_predict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from synthetic import write_image_folder

    torch.manual_seed(0)
    reference = trained_like(AkaResNet(3)).eval()
    path = save_akamaster(reference, tmp_path / "resnet20-12fca82f.th")
    folder = write_image_folder(tmp_path / "images", CIFAR10_CLASSES, splits={"train": 1, "test": 2}, size=(32, 32))
    files = sorted((folder / "test").rglob("*.jpg"))
    labels = torch.tensor([CIFAR10_CLASSES.index(f.parent.name) for f in files])
    with torch.no_grad():
        logits = reference(torch.stack([akamaster_preprocess(Image.open(f)) for f in files]))
    expected_error = 100 * float((logits.argmax(1) != labels).float().mean())

    assert main(["eval", "--checkpoint", str(path), "--dataset", str(folder), "--device", "cpu", "--no-fast",
                 "--json", str(tmp_path / "eval.json")]) == 0  # fmt: skip
    captured = capsys.readouterr()
    err = captured.err
    assert err.count("converted an akamaster/pytorch_resnet_cifar10 checkpoint") == 1
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["top1_error"] == pytest.approx(expected_error)
    assert len(result["notes"]) == 1 and "official CIFAR-10 test set" in result["notes"][0]
    assert "note: " + result["notes"][0] in captured.out

    assert main(["predict", str(files[0]), str(files[1]), "--checkpoint", str(path), "--json", "--no-fast"]) == 0
    out = json.loads(capsys.readouterr().out)
    results = out["results"] if isinstance(out, dict) else out
    predicted = [r["predictions"][0]["class"] for r in results]
    assert predicted == [CIFAR10_CLASSES[i] for i in logits[:2].argmax(1).tolist()]
    top = logits[:2].softmax(1).max(1).values.tolist()
    assert [r["predictions"][0]["probability"] for r in results] == pytest.approx(top, abs=1e-5)


def test_their_accuracy_is_put_in_context_on_the_lossy_jpeg_copy() -> None:
    from resnet.eval.run import third_party_notes
    from resnet.inference.loading import akamaster_meta

    meta = akamaster_meta(AkaResNet(3).state_dict())
    assert len(third_party_notes(meta, "cifar10")) == 1
    assert "JPEG (lossy) copy" in third_party_notes(meta, "cifar10-jpeg")[1]
    assert third_party_notes({"model": {}}, "cifar10-jpeg") == []  # our own runs: nothing to explain


def test_other_files_keep_their_own_errors_in_load_model(tmp_path: Path) -> None:
    from resnet.errors import CheckpointError

    (tmp_path / "garbage.th").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be read"):
        resnet.load_model(tmp_path / "garbage.th")
    torch.save({"state_dict": resnet.create_model("resnet8").state_dict()}, tmp_path / "plain.th")
    with pytest.raises(CheckpointError, match="not a training checkpoint"):
        resnet.load_model(tmp_path / "plain.th")
