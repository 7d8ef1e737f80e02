"""Evaluation: top-1/top-5 error over single-view, 10-crop and multi-scale fully-convolutional testing."""

from resnet.eval.evaluate import (
    EvaluationStopped,
    Metrics,
    evaluate_metrics,
    evaluation_mode,
    topk_errors,
    topk_wrong,
)
from resnet.eval.fully_conv import FullyConvolutional, fully_convolutional


def __getattr__(name: str):  # run_eval pulls in the data package: imported on first use
    if name == "run_eval":
        from resnet.eval.run import run_eval

        return run_eval
    raise AttributeError(name)
