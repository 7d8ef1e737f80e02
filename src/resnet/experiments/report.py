"""Numbers of finished runs, gathered per net (mean ± std over seeds), and the markdown that reports them."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from resnet.experiments.runs import PlannedRun, by_model
from resnet.models.specs import model_depth

# Per net: the last evaluation's running training error (mean over the last evaluation interval, augmented
# mini-batches as in the paper's curves), validation and test error, and the test error of the checkpoint that
# was best on validation (model selection never looks at test).
COLUMNS = ("train_error", "val_error", "test_error", "test_error_at_best_val")


@dataclass
class NetResult:
    model: str
    params: int
    values: dict[str, list[float]]  # column -> one value per seed
    seeds: list[int]
    iterations: int
    wall_time_s: float
    images: dict[str, int] = field(default_factory=dict)  # column -> images each error is measured on

    def mean(self, column: str) -> float | None:
        values = self.values.get(column) or []
        return statistics.fmean(values) if values else None

    def cell(self, column: str) -> str:
        values = self.values.get(column) or []
        if not values:
            return "—"
        if len(values) == 1:
            return f"{values[0]:.2f}"
        return f"{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f}"


def gather(runs: Sequence[PlannedRun]) -> dict[str, NetResult]:
    """Results of the finished runs, grouped by model (seeds pooled)."""
    results = {}
    for model, group in by_model(runs).items():
        values: dict[str, list[float]] = defaultdict(list)
        params, iterations, wall = 0, 0, 0.0
        images: dict[str, int] = {}
        for run in group:
            summary, last = run.summary(), _last_record(run)
            images = images or image_counts(run, summary)
            params, iterations = int(summary["params"]), int(summary["iterations"])
            wall += float(summary.get("wall_time_s") or 0.0)
            for column, value in (
                ("train_error", last.get("train_error")),
                ("val_error", last.get("val_error")),
                ("test_error", last.get("test_error")),
                ("test_error_at_best_val", summary.get("test_error_at_best_val")),
            ):
                if value is not None:
                    values[column].append(float(value))
        results[model] = NetResult(model, params, dict(values), [r.seed for r in group], iterations, wall, images)
    return results


def image_counts(run: PlannedRun, summary: dict[str, Any]) -> dict[str, int]:
    """How many images each error of a run is measured on: validation and test from its summary (``val_images``,
    ``test_images``; else from its configuration and the dataset's description, for runs written before), training
    from the evaluation interval (the running error over its augmented mini-batches)."""
    from resnet.config import config_from_dict
    from resnet.runs import read_config_file

    config = config_from_dict(read_config_file(run.path), "the run's config.toml")
    every = config.eval.every_iterations or 0
    counts = {"train_error": every * config.data.batch_size * config.optim.accum_steps}
    for column, key in (("val_error", "val_images"), ("test_error", "test_images")):
        if summary.get(key):
            counts[column] = int(summary[key])
    if "val_error" in counts and "test_error" in counts:
        counts["test_error_at_best_val"] = counts["test_error"]
        return {column: count for column, count in counts.items() if count > 0}
    try:
        from resnet.data import dataset_info, validation_size

        info = dataset_info(config.data.dataset, data_dir=config.data.data_dir, download=False)
        counts.setdefault("test_error", int(info["splits"].get("test") or 0))
        n_train = int(info["splits"]["train"])
        counts.setdefault("val_error", validation_size(n_train, config.data.val_size, registered_default=None))
    except Exception:
        pass
    if "test_error" in counts:
        counts["test_error_at_best_val"] = counts["test_error"]
    return {column: count for column, count in counts.items() if count > 0}


def _last_record(run: PlannedRun) -> dict[str, Any]:
    records = [r for r in run.records() if r.get("test_error") is not None]
    return records[-1] if records else {}


def results_table(results: dict[str, NetResult], paper: dict[str, float | None]) -> list[str]:
    """A markdown table, one row per net, with the paper's test error where the paper prints one."""
    lines = [
        "| net | params | train error (%) | val error (%) | test error (%) | test error at best val (%) | paper (%) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for model, result in sorted(results.items(), key=lambda item: (_family(item[0]), model_depth(item[0]))):
        quoted = paper.get(model)
        cells = " | ".join(result.cell(c) for c in COLUMNS)
        lines.append(f"| {model} | {result.params / 1e6:.3f}M | {cells} | {_quote(quoted)} |")
    return lines


def _quote(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _family(model: str) -> str:
    return "".join(c for c in model if not c.isdigit())


@dataclass(frozen=True)
class Claim:
    statement: str
    holds: bool | None  # None: not measurable with these runs
    evidence: str
    resolved: bool = True  # the difference exceeds its noise (see :func:`noise`)

    def sentence(self) -> str:
        if self.holds is None:
            return f"- **Not measured**: {self.statement} ({self.evidence})."
        if not self.resolved:
            return f"- **Not resolved at this budget**: {self.statement} — {self.evidence}."
        verdict = "Reproduced" if self.holds else "Contradicted at this budget"
        return f"- **{verdict}**: {self.statement} — {self.evidence}."


Z95 = 1.96  # two-sided 95%


def noise(a: NetResult, b: NetResult, column: str) -> float | None:
    """The 95% half-width of the difference of two nets' mean errors (in points): the binomial standard error of
    each error on the images it is measured on, and, with several seeds, the seed-to-seed spread of each mean."""
    variance = 0.0
    for result in (a, b):
        values, count = result.values.get(column) or [], result.images.get(column)
        if not values or not count:
            return None
        p = statistics.fmean(values) / 100.0
        variance += p * (1.0 - p) / (count * len(values)) * 1e4
        if len(values) > 1:
            variance += statistics.variance(values) / len(values)
    return Z95 * math.sqrt(variance)


LEARNED_MARGIN = 5.0  # points below chance a net's error must be before a claim about it is a verdict


def chance_error(classes: int) -> float:
    """The error of guessing among ``classes`` equally likely classes, in percent."""
    return 100.0 * (1.0 - 1.0 / classes)


def compare(
    results: dict[str, NetResult],
    worse: str,
    better: str,
    column: str,
    statement: str,
    label: str,
    chance: float | None = None,
) -> Claim:
    """The claim that ``worse`` has a higher ``column`` than ``better`` (means over seeds). With ``chance`` (the
    error of guessing), a net within :data:`LEARNED_MARGIN` points of it has learned nothing to compare: the claim
    is then not resolved, whatever the difference."""
    if worse not in results or better not in results:
        return Claim(statement, None, f"needs both {worse} and {better}")
    high, low = results[worse].mean(column), results[better].mean(column)
    if high is None or low is None:
        return Claim(statement, None, f"{label} not recorded")
    margin = noise(results[worse], results[better], column)
    evidence = f"{label} {worse} {results[worse].cell(column)}% vs {better} {results[better].cell(column)}%"
    guessing = [m for m, e in ((worse, high), (better, low)) if chance is not None and e > chance - LEARNED_MARGIN]
    if chance is not None and guessing:
        evidence += (
            f"; {' and '.join(guessing)} {'is' if len(guessing) == 1 else 'are'} not better than chance "
            f"({chance:.1f}%) by {LEARNED_MARGIN:g} points: nothing learned yet to compare"
        )
        return Claim(statement, high > low, evidence, resolved=False)
    if margin is None:
        return Claim(statement, high > low, f"{evidence}; its noise is unknown (no image counts)", resolved=False)
    seeds = len(results[worse].values.get(column) or [])
    evidence += (
        f", a difference of {high - low:+.2f} points against a noise of ±{margin:.2f} (95%: binomial on "
        f"{results[worse].images[column]:,} images" + (f", and the spread of {seeds} seeds)" if seeds > 1 else ")")
    )
    return Claim(statement, high > low, evidence, resolved=abs(high - low) > margin)
