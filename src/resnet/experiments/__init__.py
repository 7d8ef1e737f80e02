"""The paper's experiments as lists of ordinary training runs, with figures and a report.

>>> from pathlib import Path
>>> from resnet.experiments import ExperimentSettings, run_degradation
>>> run_degradation(ExperimentSettings(out=Path("experiments/degradation"), depths=(20, 56)))  # doctest: +SKIP
"""

from resnet.experiments.cifar_table import run_cifar_table
from resnet.experiments.degradation import ExperimentSettings, run_degradation
from resnet.experiments.runs import BUDGETS, Budget, PlannedRun, budget_named
