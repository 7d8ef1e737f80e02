"""The degradation problem (Fig. 1, Fig. 6): plain and residual nets at several depths, one recipe, one report.

Every net trains with ``cifar-paper`` shortened by the budget, with the same seeds and therefore the same data
order. The nets are ordinary run directories under ``out``; ``fig6.png``, ``fig1.png`` and ``report.md`` are
written beside them from their ``metrics.jsonl``/``train_curve.jsonl``/``summary.json``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resnet.config import Config
from resnet.config.recipes import load_config
from resnet.data import canonical_dataset
from resnet.errors import ConfigError
from resnet.experiments.budgets import Budget, budget_named
from resnet.experiments.figures import plot_fig1, plot_fig6
from resnet.experiments.paper import DEGRADATION_CLAIM, paper_test_error
from resnet.experiments.report import Claim, NetResult, chance_error, compare, gather, results_table
from resnet.experiments.runs import DONE, ExperimentRunner, PlannedRun, hardware, lock_experiment, plan_runs
from resnet.files import output_folder, write_output
from resnet.models.specs import cifar_depth_fits, model_depth

RECIPE = "cifar-paper"
DATA_DESCRIPTIONS = {
    "cifar10": "CIFAR-10, the official binaries (45k train / 5k validation / 10k test)",
    "cifar10-jpeg": "CIFAR-10 as a lossy JPEG copy (quality 75; accuracies run a little below the official binaries), "
    "45k train / 5k validation / 10k test",
    "fashion-mnist": "Fashion-MNIST (not the paper's data), 55k train / 5k validation / 10k test",
}


# Keys an experiment sets from its own flags, so that every net shares them: `--set` may not change them.
FLAG_KEYS = {
    "model.name": "nets (--depths)",
    "seed": "seeds (--seeds)",
    "run_dir": "run directories (--out)",
    "data.dataset": "--dataset",
    "data.data_dir": "--data-dir",
    "train.iterations": "length (--budget, --iterations)",
    "train.epochs": "length (--budget, --iterations)",
    "eval.every_iterations": "evaluation interval (--budget)",
    "system.device": "--device",
}


@dataclass
class ExperimentSettings:
    """What every net of an experiment shares."""

    out: Path
    depths: Sequence[int] = (20, 56)
    dataset: str = "cifar10-jpeg"
    data_dir: str | None = None
    budget: Budget = field(default_factory=lambda: budget_named("small"))
    seeds: Sequence[int] = (0,)
    device: str | None = None
    progress: str = "plain"
    overrides: dict[str, Any] = field(default_factory=dict)  # any further configuration keys, for every net
    jobs: str | int = 1  # nets trained at once ("auto": see resnet.experiments.parallel.resolve_jobs)

    @contextlib.contextmanager
    def training(self, runs: list[PlannedRun], say: Callable[[str], None]) -> Iterator[ExperimentSettings]:
        """Train what is left of ``runs`` under the experiment's lock, which the block (writing the report) still
        holds. Yields these settings with ``jobs`` resolved for the nets left, so that every net's configuration
        (asked many times for the ETA and the checks) no longer reads the runs' states."""
        if self.out.exists() and not self.out.is_dir():
            raise ConfigError(f"--out '{self.out}' is a file; give a folder for the experiment's runs")
        self.out.mkdir(parents=True, exist_ok=True)
        with lock_experiment(self.out):
            settings = dataclasses.replace(self, jobs=self.workers(sum(run.status() != DONE for run in runs)))
            ExperimentRunner(runs, settings.config, say=say, jobs=int(settings.jobs)).run()
            yield settings

    def workers(self, pending: int) -> int:
        """How many nets train at once, for ``pending`` nets left."""
        from resnet.experiments.parallel import resolve_jobs

        on_gpu = self.device not in ("cpu", "mps") and _cuda_available()
        return resolve_jobs(self.jobs, max(1, pending), on_gpu, pending * (self.budget.iterations or 64000))

    def config(self, run: PlannedRun) -> Config:
        values: dict[str, Any] = {
            "model.name": run.model,
            "data.dataset": canonical_dataset(self.dataset),
            "seed": run.seed,
            "run_dir": str(run.path),
            "log.every_iterations": self.budget.log_every,
            "log.progress": self.progress,
        }
        if self.data_dir:
            values["data.data_dir"] = self.data_dir
        if Path(self.dataset).exists():
            # A CIFAR-like image folder: decoded once into tensors, so that the recipe's per-pixel mean applies;
            # validation as training carves it by default (a tenth, at most 5,000), not the recipe's 5,000.
            values["data.pipeline"] = "tensor"
            values["data.val_size"] = None
        if self.budget.iterations:
            values["train.iterations"] = self.budget.iterations
        if self.budget.eval_every:
            values["eval.every_iterations"] = self.budget.eval_every
        if self.device:
            values["system.device"] = self.device
        # resolved once by the runner's caller (an int); "auto" here only when config() is called on its own
        jobs = self.jobs if isinstance(self.jobs, int) else self.workers(sum(r.status() != DONE for r in self.runs()))
        if jobs > 1:
            from resnet.experiments.parallel import threads_per_job

            values["system.threads"] = threads_per_job(jobs)  # the cores shared out (an override wins)
        for key in self.overrides.keys() & FLAG_KEYS.keys():  # the documented order: --set, then the flags
            raise ConfigError(
                f"--set {key}=... would contradict the experiment's own {FLAG_KEYS[key]}; use that instead"
            )
        values.update(self.overrides)
        return load_config(RECIPE, values)

    def runs(self, families: Sequence[str] = ("plain", "resnet")) -> list[PlannedRun]:
        twice = sorted({d for d in self.depths if list(self.depths).count(d) > 1})
        if twice:  # one run directory per net: a second would be the first, found finished or running
            raise ConfigError(f"--depths names {', '.join(map(str, twice))} more than once; give each depth once")
        for depth in self.depths:
            if not cifar_depth_fits(depth, "basic"):
                raise ConfigError(f"CIFAR depths are 6n+2 (8, 14, 20, 32, 44, 56, 110, ...), got {depth}")
        models = [f"{family}{depth}" for depth in self.depths for family in families]
        return plan_runs(self.out, models, self.seeds)


def run_degradation(settings: ExperimentSettings, say: Callable[[str], None] = print) -> Path:
    """Train what is left of the experiment, then write the figures and ``report.md``; returns the report's path."""
    started = time.monotonic()
    runs = settings.runs()
    with settings.training(runs, say) as settings:
        report = write_degradation_report(settings, runs, time.monotonic() - started)
    say(f"report: {report}\nfigures: {settings.out / 'fig6.png'}, {settings.out / 'fig1.png'}")
    return report


def setting_lines(
    settings: ExperimentSettings, config: Config, results: dict[str, NetResult], runs: int, elapsed: float, seeds: str
) -> list[str]:
    """What both reports open with: the data, the schedule, the seeds (``seeds``: what they mean there), the
    hardware and the time."""
    from resnet.train.optim.schedules import milestone_iterations

    iterations = config.train.iterations or 0
    milestones = milestone_iterations(config, steps_per_epoch=max(1, iterations))
    every = f"every {config.eval.every_iterations} iterations" if config.eval.every_iterations else "every epoch"
    finished = sum(len(result.seeds) for result in results.values())  # a finished run is one seed of its net
    wall = sum(result.wall_time_s for result in results.values())
    return [
        f"- **Data**: {DATA_DESCRIPTIONS.get(settings.dataset, settings.dataset)}.",
        f"- **Schedule**: `{RECIPE}` ({settings.budget.label}): {iterations} iterations of batch "
        f"{config.data.batch_size}, SGD momentum {config.optim.momentum}, weight decay "
        f"{config.optim.weight_decay:g}, lr {config.optim.lr:g} divided by 10 at "
        f"{', '.join(str(m) for m in milestones)}; validation and test error {every}.",
        f"- **Seeds**: {', '.join(str(s) for s in settings.seeds)}{seeds}.",
        f"- **Hardware**: {hardware()}.",
        f"- **Wall time**: {wall / 60:.1f} min, the runs' wall-clock times summed ({finished} of {runs} nets "
        f"finished); this call {elapsed / 60:.1f} min.",
    ]


def degradation_claims(
    settings: ExperimentSettings, results: dict[str, Any], classes: int | None = None
) -> list[Claim]:
    """The paper's four claims; with ``classes``, a net no better than guessing makes its claims unresolved."""
    shallow, deep = min(settings.depths), max(settings.depths)
    if shallow == deep:
        return []
    plain_s, plain_d, res_s, res_d = f"plain{shallow}", f"plain{deep}", f"resnet{shallow}", f"resnet{deep}"
    chance = None if classes is None else chance_error(classes)
    return [
        compare(results, plain_d, plain_s, "train_error",
                f"the deeper plain net trains worse: {plain_d} has higher training error than {plain_s}",
                "final training error", chance),
        compare(results, plain_d, plain_s, "test_error",
                f"and tests worse: {plain_d} has higher test error than {plain_s}", "final test error", chance),
        compare(results, plain_d, res_d, "train_error",
                f"shortcuts fix it: {res_d} has lower training error than {plain_d}", "final training error", chance),
        compare(results, res_s, res_d, "test_error",
                f"with shortcuts depth helps: {res_d} has lower test error than {res_s}", "final test error", chance),
    ]  # fmt: skip


def class_count(runs: Sequence[PlannedRun]) -> int | None:
    """How many classes the finished runs were trained on (from a checkpoint's metadata), None if none says."""
    from resnet.runs import LAST_CHECKPOINT, read_checkpoint

    for run in runs:
        try:
            return len(read_checkpoint(run.path / LAST_CHECKPOINT).meta["class_names"])
        except Exception:  # a report is still written, without the chance rule
            continue
    return None


def write_degradation_report(settings: ExperimentSettings, runs: Sequence[PlannedRun], elapsed: float) -> Path:
    finished = [r for r in runs if r.status() == DONE]
    results = gather(finished)
    config = settings.config(runs[0])
    subtitle = f"{Path(settings.dataset).name}, {config.train.iterations} iterations, seeds {list(settings.seeds)}"
    report, fig6, fig1 = output_folder(settings.out, ["report.md", "fig6.png", "fig1.png"])
    claims = degradation_claims(settings, results, class_count(finished))
    lines = [
        "# Degradation experiment (He et al. 2015, Fig. 1 and Fig. 6)",
        "",
        f"The paper: {DEGRADATION_CLAIM}.",
        "",
        *setting_lines(settings, config, results, len(runs), elapsed, " (a seed gives every net the same data order)"),
        "",
        "## Results",
        "",
        "Errors in percent after the last iteration; training error is the running error on the augmented",
        "mini-batches of the last evaluation interval (the paper's thin curves). Models are selected on the",
        "validation split, never on test. The paper's column is Table 6 (full 64k-iteration schedule, official",
        "CIFAR-10); the paper prints no numbers for the plain nets (Fig. 6 only).",
        "",
        *results_table(results, {model: paper_test_error(model) for model in results}),
        "",
        "## Claims at this budget",
        "",
        *[claim.sentence() for claim in claims],
        "",
        "## Figures",
        "",
        "![Fig. 6: plain (left) and residual (right) nets; thin training error, bold test error](fig6.png)",
        "",
        f"![Fig. 1: plain-{min(settings.depths)} vs plain-{max(settings.depths)}](fig1.png)",
        "",
        "Each net's run directory (metrics.jsonl, train_curve.jsonl, summary.json, curves.png, checkpoints) is",
        f"beside this report: {', '.join(r.name for r in sorted(runs, key=lambda r: (model_depth(r.model), r.name)))}.",
        "",
    ]
    write_output(report, "\n".join(lines))  # the report first: a figure that cannot be written is a warning
    plot_fig6(finished, fig6, subtitle)
    plot_fig1(finished, fig1, subtitle)
    return report.path


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()
