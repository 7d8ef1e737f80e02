"""Runs side by side: test error against epochs and against wall-clock minutes (time to accuracy).

Recipes are compared the way a user meets them: at equal epochs (which recipe learns more per pass over the data)
and at equal time (which one is better after N minutes of this machine). Everything comes from the run
directories' ``metrics.jsonl`` and ``config.toml``, so any finished or running runs can be compared.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from resnet.errors import ConfigError
from resnet.files import Output, output_folder, save_figure, write_output
from resnet.runs import read_config_file, read_metrics

DEFAULT_TARGETS = (80.0, 85.0, 90.0)  # test accuracies (%) whose time and epoch of arrival the table reports


@dataclass
class RunCurve:
    """The evaluations of one run that have a test error, in order."""

    label: str
    recipe: str
    model: str
    dataset: str
    epochs: list[float]
    minutes: list[float]  # wall clock since the start of the run (training and evaluation), resumes included
    test_error: list[float]
    images_per_sec: list[float] = field(default_factory=list)

    @property
    def best_test_error(self) -> float:
        return min(self.test_error)

    def first_reaching(self, accuracy: float) -> tuple[float, float] | None:
        """(epoch, minutes) of the first evaluation at or above ``accuracy`` % test accuracy; None if never."""
        for epoch, minutes, error in zip(self.epochs, self.minutes, self.test_error, strict=True):
            if 100.0 - error >= accuracy:
                return epoch, minutes
        return None

    def summary(self, targets: Sequence[float]) -> dict[str, Any]:
        reached = {}
        for target in targets:
            hit = self.first_reaching(target)
            reached[f"{target:g}"] = None if hit is None else {"epoch": hit[0], "minutes": round(hit[1], 2)}
        return {
            "label": self.label,
            "recipe": self.recipe,
            "model": self.model,
            "dataset": self.dataset,
            "epochs": self.epochs[-1],
            "minutes": round(self.minutes[-1], 2),
            "final_test_error": self.test_error[-1],
            "best_test_error": self.best_test_error,
            "reached": reached,
        }


def read_run(run_dir: str | Path, label: str | None = None) -> RunCurve:
    """The test-error curve of a run directory (a clear error when it has none yet)."""
    path = Path(run_dir)
    if not path.is_dir():
        raise ConfigError(f"run directory '{path}' does not exist; give the --run-dir of a `resnet train` run")
    records = [r for r in read_metrics(path) if r.get("test_error") is not None]
    if not records:
        raise ConfigError(
            f"'{path}' has no evaluation with a test error yet (metrics.jsonl); train with eval.test='every' "
            "to compare runs along the way"
        )
    config = read_config_file(path)
    return RunCurve(
        label=label or path.name,
        recipe=str(config.get("recipe", "?")),
        model=str(config.get("model", {}).get("name", "?")),
        dataset=str(config.get("data", {}).get("dataset", "?")),
        epochs=[float(r["epoch"]) for r in records],
        minutes=[float(r.get("wall_time", r.get("train_time", 0.0))) / 60.0 for r in records],
        test_error=[float(r["test_error"]) for r in records],
        images_per_sec=[float(r["images_per_sec"]) for r in records if "images_per_sec" in r],
    )


def plot_runs_side_by_side(curves: Sequence[RunCurve], path: Path | Output, title: str = "") -> None:
    """Two panels: test error against epochs, and against wall-clock minutes."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4.2), dpi=120)
    by_epoch, by_time = figure.subplots(1, 2, sharey=True)
    for curve in curves:
        name = f"{curve.label} ({curve.recipe})" if curve.recipe not in curve.label else curve.label
        if len(curve.test_error) == 1:  # eval.test = "end": one point, said in the legend rather than left a dot
            name += ", test error at the end only"
        by_epoch.plot(curve.epochs, curve.test_error, marker="o", markersize=3, label=name)
        by_time.plot(curve.minutes, curve.test_error, marker="o", markersize=3, label=name)
    by_epoch.set_xlabel("epoch")
    by_time.set_xlabel("wall-clock minutes (training + evaluation)")
    by_epoch.set_ylabel("test error (%)")
    for axes in (by_epoch, by_time):
        axes.grid(alpha=0.3)
    low = min(c.best_test_error for c in curves)
    by_epoch.set_ylim(max(0.0, low - 2.0), min(100.0, max(max(c.test_error) for c in curves) + 2.0))
    by_time.legend(fontsize=8)
    if title:
        figure.suptitle(title, fontsize=10)
    save_figure(figure, path)


def compare_runs(
    run_dirs: Sequence[str | Path],
    out: str | Path,
    *,
    labels: Sequence[str] | None = None,
    targets: Sequence[float] = DEFAULT_TARGETS,
    title: str = "",
    force: bool = False,
) -> list[RunCurve]:
    """``curves.png`` and ``curves.json`` (per run: final/best test error, minutes, epoch and minute at which each
    target accuracy was first reached) in ``out``."""
    if labels is not None and len(labels) != len(run_dirs):
        raise ConfigError(f"{len(labels)} labels for {len(run_dirs)} runs; give one label per run or none")
    curves = [read_run(d, labels[i] if labels else None) for i, d in enumerate(run_dirs)]
    numbers_file, figure = output_folder(out, ["curves.json", "curves.png"], force=force)  # never a run's curves.png
    numbers = {"targets": list(targets), "runs": [c.summary(targets) for c in curves]}
    numbers["curves"] = [asdict(c) for c in curves]
    write_output(numbers_file, json.dumps(numbers, indent=1) + "\n")
    plot_runs_side_by_side(curves, figure, title)
    return curves


def format_table(curves: Sequence[RunCurve], targets: Sequence[float] = DEFAULT_TARGETS) -> str:
    """A markdown table: one row per run, the time and epoch at which each target accuracy was reached."""
    head = ["run", "recipe", "epochs", "minutes", "final test err", "best test err"]
    head += [f"to {t:g}% acc" for t in targets]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for curve in curves:
        cells = [
            curve.label,
            curve.recipe,
            f"{curve.epochs[-1]:g}",
            f"{curve.minutes[-1]:.1f}",
            f"{curve.test_error[-1]:.2f}",
            f"{curve.best_test_error:.2f}",
        ]
        for target in targets:
            hit = curve.first_reaching(target)
            cells.append("not reached" if hit is None else f"{hit[1]:.1f} min (epoch {hit[0]:g})")
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)
