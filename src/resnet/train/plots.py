"""``curves.png``: error against iterations, thin for training and bold for test, as in the paper's figures."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from resnet.files import Output, as_output, save_figure


def _series(records: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    points = [(r["iteration"], r[key]) for r in records if r.get(key) is not None]
    return [p[0] for p in points], [p[1] for p in points]


def plot_run_curves(
    records: Sequence[dict[str, Any]],
    path: str | Path | Output,
    title: str = "",
    train_curve: Sequence[dict[str, Any]] = (),
) -> Path:
    """Write the error curves of one run; works headless (Agg backend, no display needed)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.5), dpi=120)
    axes = figure.subplots()
    color = "tab:blue"
    # The dense running training error when it was logged, else the per-evaluation one.
    iterations, train = _series(train_curve if len(train_curve) >= 2 else records, "train_error")
    if iterations:
        axes.plot(iterations, train, color=color, linewidth=0.8, label="train error")
    for key, style, line_color in (("test_error", "-", color), ("val_error", "--", "tab:gray")):
        xs, ys = _series(records, key)
        if xs:
            axes.plot(
                xs,
                ys,
                style,
                color=line_color,
                linewidth=2.2,
                marker="o" if len(xs) < 3 else None,
                label=key.replace("_", " "),
            )
    axes.set_xlabel("iterations")
    axes.set_ylabel("error (%)")
    if title:
        axes.set_title(title)
    axes.grid(True, alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend()
    figure.tight_layout()
    save_figure(figure, path)
    return as_output(path).path
