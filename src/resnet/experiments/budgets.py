"""How long each net of an experiment trains: the named budgets, declared once (the CLI's choices and help come
from here, without importing torch)."""

from __future__ import annotations

from dataclasses import dataclass

from resnet.errors import ConfigError


@dataclass(frozen=True)
class Budget:
    """How long each net trains: the recipe's schedule shortened to ``iterations``, milestones kept in place."""

    name: str
    iterations: int | None  # None: the recipe's own length (64k iterations for cifar-paper)
    eval_every: int | None  # iterations between evaluations; None: every epoch
    log_every: int  # iterations between points of the dense training-error curve
    description: str

    @property
    def label(self) -> str:
        """The budget as run: ``medium budget``, or ``small budget shortened to 40 iterations``."""
        standard = BUDGETS.get(self.name)
        if standard is None or standard.iterations == self.iterations:
            return f"{self.name} budget"
        return f"{self.name} budget shortened to {self.iterations} iterations"


BUDGETS: dict[str, Budget] = {
    "small": Budget(
        "small",
        iterations=1200,
        eval_every=150,
        log_every=20,
        description="1.2k iterations (lr /10 at 600 and 900), evaluated every 150: the quick version, about 1.5 h "
        "for plain/ResNet-20/56 on a 2-core CPU",
    ),
    "medium": Budget(
        "medium",
        iterations=6400,
        eval_every=400,
        log_every=20,
        description="6.4k iterations, a tenth of the paper (lr /10 at 3.2k and 4.8k), evaluated every 400: 2-4 h "
        "for plain/ResNet-20/56 on a 2-core CPU",
    ),
    "quarter": Budget(
        "quarter",
        iterations=16000,
        eval_every=1000,
        log_every=20,
        description="16k iterations, a quarter of the paper (lr /10 at 8k and 12k), evaluated every 1k: about half "
        "a day for plain/ResNet-20/56 on a 2-core CPU",
    ),
    "paper": Budget(
        "paper",
        iterations=None,
        eval_every=None,
        log_every=100,
        description="64k iterations, the paper's schedule of section 4.2 (lr /10 at 32k and 48k), evaluated every "
        "epoch: for a GPU",
    ),
}


def budget_named(name: str, iterations: int | None = None) -> Budget:
    """A named budget, optionally with another length (evaluations keep their number per run)."""
    if name not in BUDGETS:
        raise ConfigError(f"unknown budget '{name}'; choose one of {', '.join(BUDGETS)}")
    budget = BUDGETS[name]
    if iterations is None:
        return budget
    if iterations <= 0:
        raise ConfigError(f"--iterations must be a positive number, got {iterations}")
    evaluations = 8 if budget.eval_every is None else max(1, (budget.iterations or iterations) // budget.eval_every)
    return Budget(
        budget.name,
        iterations=iterations,
        eval_every=max(1, iterations // evaluations),
        log_every=max(1, min(budget.log_every, iterations // 20 or 1)),
        description=f"{budget.name} budget shortened to {iterations} iterations",
    )
