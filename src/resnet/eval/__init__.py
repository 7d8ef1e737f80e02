"""Evaluation: top-1/top-5 error over single-view, 10-crop and multi-scale fully-convolutional testing."""

from __future__ import annotations

from typing import TYPE_CHECKING

from resnet.lazy import lazy_package

# What `resnet eval` offers, declared once: its --help is built from them without loading torch.
VIEWS = ("center", "ten-crop", "multiscale")  # and the aliases of resnet.data.config.VIEW_ALIASES
SPLITS = ("val", "test")

if TYPE_CHECKING:  # the names, for type checkers; at run time each loads on first use (run_eval pulls in data)
    from resnet.eval.evaluate import (
        EvaluationStopped,
        FullyConvolutional,
        Metrics,
        evaluate_metrics,
        evaluation_mode,
        fully_convolutional,
        topk_errors,
        topk_wrong,
    )
    from resnet.eval.run import run_eval

__getattr__, __all__ = lazy_package(__name__, __file__, also=("SPLITS", "VIEWS"))
