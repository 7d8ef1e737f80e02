"""Faster R-CNN on our ResNet + torchvision's FPN: one training step and one inference."""

from __future__ import annotations

import pytest
import torch

from resnet.detection import fasterrcnn
from resnet.errors import ConfigError
from resnet.models.blocks import FrozenBatchNorm2d


def test_fasterrcnn_trains_one_step_and_predicts() -> None:
    torch.manual_seed(0)
    model = fasterrcnn("resnet18", num_classes=3, trainable_layers=3, min_size=64, max_size=96)
    body = model.backbone.body
    assert not any(isinstance(m, torch.nn.BatchNorm2d) and not isinstance(m, FrozenBatchNorm2d) for m in body.modules())
    assert not body.conv1.weight.requires_grad and not body.layer1[0].conv1.weight.requires_grad
    assert body.layer2[0].conv1.weight.requires_grad
    images = [torch.rand(3, 64, 96)]
    targets = [{"boxes": torch.tensor([[10.0, 12.0, 50.0, 56.0]]), "labels": torch.tensor([1])}]
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    before = body.layer4[0].conv1.weight.detach().clone()
    frozen_before = body.layer1[0].conv1.weight.detach().clone()
    model.train()
    losses = model(images, targets)
    assert {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"} <= losses.keys()
    total = sum(losses.values())
    assert torch.isfinite(total)
    optimizer.zero_grad()
    total.backward()
    optimizer.step()
    assert not torch.equal(before, body.layer4[0].conv1.weight)
    assert torch.equal(frozen_before, body.layer1[0].conv1.weight)
    model.eval()
    with torch.no_grad():
        (detections,) = model(images)
    assert set(detections) == {"boxes", "labels", "scores"} and detections["boxes"].shape[1] == 4


def test_cifar_nets_are_not_detection_backbones() -> None:
    with pytest.raises(ConfigError, match="ImageNet"):
        fasterrcnn("resnet20", num_classes=2)
