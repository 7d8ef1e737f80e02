"""The paper's CIFAR figures from run directories: Fig. 6 (plain | residual) and Fig. 1 (training | test error).

Thin lines are the running training error (``train_curve.jsonl``), bold lines the test error at each evaluation
(``metrics.jsonl``), error in percent against iterations, one colour per depth. With several seeds the curves are
the mean over seeds at each logged iteration.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from resnet.experiments.runs import PlannedRun, by_model
from resnet.files import Output, save_figure
from resnet.models.specs import model_depth
from resnet.runs.run_dir import METRICS_FILE, TRAIN_CURVE_FILE, read_metrics

DEPTH_COLOURS = ("tab:orange", "tab:blue", "tab:red", "tab:green", "tab:purple", "tab:brown", "black")


def mean_curve(runs: Sequence[PlannedRun], key: str, file: str) -> tuple[list[int], list[float]]:
    """The mean of ``key`` over the runs at every iteration that all of them logged."""
    by_iteration: dict[int, list[float]] = defaultdict(list)
    for run in runs:
        for record in read_metrics(run.path, file):
            if record.get(key) is not None:
                by_iteration[int(record["iteration"])].append(float(record[key]))
    points = sorted((i, sum(v) / len(v)) for i, v in by_iteration.items() if len(v) == len(runs))
    return [p[0] for p in points], [p[1] for p in points]


def _panel(axes: Any, groups: dict[str, list[PlannedRun]], title: str, which: Sequence[str]) -> None:
    for index, (model, runs) in enumerate(sorted(groups.items(), key=lambda item: model_depth(item[0]))):
        colour = DEPTH_COLOURS[index % len(DEPTH_COLOURS)]
        label = f"{model[: -len(str(model_depth(model)))]}-{model_depth(model)}"
        if "train" in which:
            xs, ys = mean_curve(runs, "train_error", TRAIN_CURVE_FILE)
            axes.plot(xs, ys, color=colour, linewidth=0.8, alpha=0.9, label=f"{label} train")
        if "test" in which:
            xs, ys = mean_curve(runs, "test_error", METRICS_FILE)
            axes.plot(xs, ys, color=colour, linewidth=2.4, marker="o" if len(xs) < 3 else None, label=f"{label} test")
    axes.set_title(title)
    axes.set_xlabel("iterations")
    axes.set_ylabel("error (%)")
    axes.grid(True, alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=8)


def plot_fig6(runs: Sequence[PlannedRun], path: Path | Output, subtitle: str = "") -> None:
    """Fig. 6's layout: plain nets left, residual nets right (thin: training error, bold: test error)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(12, 4.6), dpi=120)
    left, right = figure.subplots(1, 2, sharey=True)
    groups = by_model(runs)
    _panel(left, {m: r for m, r in groups.items() if m.startswith("plain")}, "plain networks", ("train", "test"))
    _panel(right, {m: r for m, r in groups.items() if m.startswith("resnet")}, "ResNets", ("train", "test"))
    if subtitle:
        figure.suptitle(subtitle, fontsize=9)
    save_figure(figure, path)


def plot_fig1(runs: Sequence[PlannedRun], path: Path | Output, subtitle: str = "") -> None:
    """Fig. 1: the shallowest and the deepest plain net, training error left and test error right."""
    from matplotlib.figure import Figure

    plain = {m: r for m, r in by_model(runs).items() if m.startswith("plain")}
    if len(plain) > 2:
        depths = sorted(plain, key=model_depth)
        plain = {depths[0]: plain[depths[0]], depths[-1]: plain[depths[-1]]}
    figure = Figure(figsize=(11, 4.2), dpi=120)
    left, right = figure.subplots(1, 2)
    _panel(left, plain, "training error", ("train",))
    _panel(right, plain, "test error", ("test",))
    if subtitle:
        figure.suptitle(subtitle, fontsize=9)
    save_figure(figure, path)
