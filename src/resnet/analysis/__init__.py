"""Analyses of trained and untrained nets: layer responses (Fig. 7), per-layer gradient norms, and runs compared
by their curves (time to accuracy)."""

from resnet.analysis.curves import RunCurve, compare_runs, read_run
from resnet.analysis.gradients import GradientNorms, gradient_norms, weight_layers
from resnet.analysis.reports import analyze_gradients, analyze_responses
from resnet.analysis.responses import Responses, measure_responses, response_layers
