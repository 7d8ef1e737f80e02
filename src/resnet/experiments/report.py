"""Numbers of finished runs, gathered per net (mean ± std over seeds), and the markdown that reports them."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from resnet.experiments.runs import PlannedRun
from resnet.models.naming import model_depth

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
    grouped: dict[str, list[PlannedRun]] = defaultdict(list)
    for run in runs:
        grouped[run.model].append(run)
    results = {}
    for model, group in grouped.items():
        values: dict[str, list[float]] = defaultdict(list)
        params, iterations, wall = 0, 0, 0.0
        for run in group:
            summary, last = run.summary(), _last_record(run)
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
        results[model] = NetResult(model, params, dict(values), [r.seed for r in group], iterations, wall)
    return results


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

    def sentence(self) -> str:
        if self.holds is None:
            return f"- **Not measured**: {self.statement} ({self.evidence})."
        verdict = "Reproduced" if self.holds else "Not reproduced at this budget"
        return f"- **{verdict}**: {self.statement} — {self.evidence}."


def compare(
    results: dict[str, NetResult], worse: str, better: str, column: str, statement: str, label: str
) -> Claim:
    """The claim that ``worse`` has a higher ``column`` than ``better`` (means over seeds)."""
    if worse not in results or better not in results:
        return Claim(statement, None, f"needs both {worse} and {better}")
    high, low = results[worse].mean(column), results[better].mean(column)
    if high is None or low is None:
        return Claim(statement, None, f"{label} not recorded")
    return Claim(
        statement,
        high > low,
        f"{label} {worse} {results[worse].cell(column)}% vs {better} {results[better].cell(column)}%",
    )
