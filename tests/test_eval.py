"""Evaluation over single- and multi-view streams."""

from __future__ import annotations

import math

import torch

from resnet.eval import evaluate_metrics


def _two_class_probe() -> torch.nn.Module:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]]))
        model[1].bias.zero_()
    return model


def test_ten_crop_batches_average_the_softmax_scores() -> None:
    views = torch.zeros(1, 10, 1, 2, 2)
    views[0, :3, 0, 0, 0] = 5.0  # three views say class 0 strongly (p0 = 0.993) ...
    views[0, 3:, 0, 0, 1] = 1.0  # ... seven say class 1 weakly (p1 = 0.731): mean p1 = 0.514 picks class 1,
    metrics = evaluate_metrics(_two_class_probe(), [(views, torch.tensor([0]))])  # the mean logit would pick 0
    error, loss = metrics.top1_error, metrics.loss
    p0 = (3 * torch.tensor([5.0, 0.0]).softmax(0)[0] + 7 * torch.tensor([0.0, 1.0]).softmax(0)[0]) / 10
    assert error == 100.0
    assert math.isclose(loss, -math.log(float(p0)), rel_tol=1e-5)


def test_error_in_percent_and_mode_restored() -> None:
    model = _two_class_probe().train()
    images = torch.zeros(4, 1, 2, 2)
    images[:3, 0, 0, 0] = 1.0  # three images of class 0 ...
    images[3, 0, 0, 1] = 1.0  # ... and one of class 1, all labelled 0
    error = evaluate_metrics(
        model, [(images[:2], torch.zeros(2, dtype=torch.long)), (images[2:], torch.zeros(2, dtype=torch.long))]
    ).top1_error
    assert error == 25.0
    assert model.training, "evaluate restores the training mode"
    empty = evaluate_metrics(model, [])
    assert math.isnan(empty.top1_error) and math.isnan(empty.loss) and empty.images == 0
