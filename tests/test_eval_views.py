"""Top-k, 10-crop and fully-convolutional multi-scale testing."""

from __future__ import annotations

import math

import torch

import resnet
from resnet.data import views
from resnet.eval import evaluate_metrics, topk_errors
from resnet.eval.data import EvalData, RescaledStream, TenCropStream, default_scales
from resnet.eval.evaluate import batch_scores, topk_wrong
from resnet.eval.run import averaged_score_maps


def test_topk_on_known_logits() -> None:
    logits = torch.tensor(
        [
            [9.0, 8, 7, 6, 5, 4, 3],  # label 0: top-1 right
            [9.0, 8, 7, 6, 5, 4, 3],  # label 4: 5th best -> top-1 wrong, top-5 right
            [9.0, 8, 7, 6, 5, 4, 3],  # label 5: 6th best -> both wrong
            [0.0, 0, 0, 0, 0, 0, 1],  # label 6: top-1 right
        ]
    )
    labels = torch.tensor([0, 4, 5, 6])
    assert topk_wrong(logits, labels, (1, 2, 5)).tolist() == [2, 2, 1]
    assert topk_errors(logits, labels) == [50.0, 25.0]
    # fewer classes than k: nothing can be outside the top k
    assert topk_errors(torch.tensor([[0.0, 1.0, 2.0]]), torch.tensor([0]), (1, 5)) == [100.0, 0.0]


def test_metrics_report_top5_and_loss() -> None:
    model = torch.nn.Flatten()  # the "image" is its own logits
    logits = torch.randn(50, 12, generator=torch.Generator().manual_seed(0))
    labels = torch.randint(0, 12, (50,), generator=torch.Generator().manual_seed(1))
    metrics = evaluate_metrics(model, [(logits[:20], labels[:20]), (logits[20:], labels[20:])])
    top1, top5 = topk_errors(logits, labels)
    assert metrics.images == 50 and math.isclose(metrics.top1_error, top1) and math.isclose(metrics.top5_error, top5)
    assert math.isclose(metrics.loss, float(torch.nn.functional.cross_entropy(logits, labels)), rel_tol=1e-6)


def test_ten_crop_equals_the_mean_of_the_ten_single_views() -> None:
    torch.manual_seed(0)
    model = resnet.create_model("resnet8", num_classes=5).eval()
    images, labels = torch.randn(3, 3, 16, 16), torch.tensor([0, 1, 2])
    (batch, _), = list(TenCropStream([(images, labels)], pad=4))  # fmt: skip
    assert batch.shape == (3, 10, 3, 16, 16)
    with torch.no_grad():
        scores, are_probabilities = batch_scores(model, batch)
        for i in range(3):
            padded = torch.nn.functional.pad(images[i], (4, 4, 4, 4))
            single = views.ten_crop(padded, 16)  # corners, center, then the same of the flipped image
            assert torch.equal(single[0], padded[:, :16, :16]) and torch.equal(single[5], padded.flip(-1)[:, :16, :16])
            expected = torch.stack([model(view[None]).softmax(1)[0] for view in single]).mean(0)
            torch.testing.assert_close(scores[i], expected, rtol=0, atol=1e-6)
    assert are_probabilities


def test_fully_convolutional_equals_the_model_at_training_resolution() -> None:
    torch.manual_seed(0)
    for name, size in (("resnet8", 32), ("resnet18", 64)):
        model = resnet.create_model(name, num_classes=7).eval()
        fcn = resnet.fully_convolutional(model)
        x = torch.randn(2, 3, size, size)
        with torch.no_grad():
            score_map = fcn(x)
            assert score_map.shape[:2] == (2, 7) and score_map.shape[2] > 1  # one score per position
            torch.testing.assert_close(score_map.mean((2, 3)), model(x), rtol=0, atol=1e-5)
            assert fcn(torch.randn(1, 3, 2 * size, 3 * size)).shape[2:] == (
                2 * score_map.shape[2],
                3 * score_map.shape[3],
            )
    # weights are shared, not copied
    with torch.no_grad():
        model.fc.bias.add_(1.0)
        torch.testing.assert_close(fcn.pooled(x), model(x), rtol=0, atol=1e-5)
    assert sum(p.numel() for p in fcn.parameters()) == sum(p.numel() for p in model.parameters())


def test_multiscale_scores_average_scales_and_flips() -> None:
    torch.manual_seed(0)
    model = resnet.create_model("resnet8", num_classes=4).eval()
    x, y = torch.randn(3, 3, 16, 16), torch.tensor([0, 1, 2])
    data = EvalData([RescaledStream([(x, y)], side) for side in (16, 24)], 3, "t", [16, 24])
    probs, labels = averaged_score_maps(resnet.fully_convolutional(model).eval(), data)
    with torch.no_grad():
        expected = torch.stack(
            [
                model(t).softmax(1)
                for side in (16, 24)
                for t in (views.resize_shorter(x, side), views.resize_shorter(x, side).flip(-1))
            ]
        ).mean(0)
    torch.testing.assert_close(probs, expected, rtol=0, atol=1e-6)
    assert torch.equal(labels, y)
    assert default_scales(224) == [224, 256, 384, 480, 640] and default_scales(32) == [32, 40, 48]
