"""The paper's experiments as lists of ordinary training runs, with figures and a report.

>>> from pathlib import Path
>>> from resnet.experiments import ExperimentSettings, run_degradation
>>> run_degradation(ExperimentSettings(out=Path("experiments/degradation"), depths=(20, 56)))  # doctest: +SKIP
"""

from typing import TYPE_CHECKING

from resnet.lazy import lazy_package

if TYPE_CHECKING:  # the names, for type checkers; at run time each loads on first use (budgets without torch)
    from resnet.experiments.budgets import BUDGETS, Budget, budget_named
    from resnet.experiments.cifar_table import run_cifar_table
    from resnet.experiments.degradation import ExperimentSettings, run_degradation
    from resnet.experiments.runs import PlannedRun

__getattr__, __all__ = lazy_package(__name__, __file__)
