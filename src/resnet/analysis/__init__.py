"""Analyses of trained and untrained nets: layer responses (Fig. 7) and per-layer gradient norms."""

from resnet.analysis.gradients import GradientNorms, gradient_norms, weight_layers
from resnet.analysis.reports import analyze_gradients, analyze_responses
from resnet.analysis.responses import Responses, measure_responses, response_layers

__all__ = [
    "GradientNorms",
    "Responses",
    "analyze_gradients",
    "analyze_responses",
    "gradient_norms",
    "measure_responses",
    "response_layers",
    "weight_layers",
]
