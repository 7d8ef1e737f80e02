"""Evaluation: error rates over single- and multi-view streams."""

from resnet.eval.evaluate import evaluate, evaluation_mode

__all__ = ["evaluate", "evaluation_mode"]
