"""The analogue of Table 6: CIFAR-10 test error of ResNets at several depths, beside the paper's column.

The same runs as the degradation experiment (same recipe, budgets, seeds and run-directory names), so the two
share finished runs when given the same ``--out``. Each ResNet's plain twin is trained too, for the column the
paper only shows as curves.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

from resnet.experiments.degradation import ExperimentSettings, setting_lines
from resnet.experiments.paper import TABLE6_PARAMS_M, TABLE6_RESNET110_MEAN_STD, TABLE6_TEST_ERROR
from resnet.experiments.report import NetResult, gather
from resnet.experiments.runs import DONE, PlannedRun
from resnet.files import output_folder, write_output

TABLE_FILE = "cifar_table.md"


def run_cifar_table(settings: ExperimentSettings, say: Callable[[str], None] = print, with_plain: bool = True) -> Path:
    """Train what is left, then write ``cifar_table.md``; returns its path."""
    started = time.monotonic()
    runs = settings.runs(("plain", "resnet") if with_plain else ("resnet",))
    with settings.training(runs, say) as settings:
        path = write_cifar_table(settings, runs, time.monotonic() - started)
    say(f"table: {path}")
    return path


def _paper_cell(depth: int) -> str:
    if depth not in TABLE6_TEST_ERROR:
        return "—"
    if depth == 110:
        mean, std = TABLE6_RESNET110_MEAN_STD
        return f"{TABLE6_TEST_ERROR[depth]:.2f} (best; {mean:.2f} ± {std:.2f})"
    return f"{TABLE6_TEST_ERROR[depth]:.2f}"


def table_lines(results: dict[str, NetResult], depths: Sequence[int]) -> list[str]:
    lines = [
        "| depth | params | paper params | ResNet test error (%) | at best val (%) | paper (%) | plain twin (%) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for depth in sorted(depths):
        resnet, plain = results.get(f"resnet{depth}"), results.get(f"plain{depth}")
        params = f"{resnet.params / 1e6:.3f}M" if resnet else "—"
        paper_params = f"{TABLE6_PARAMS_M[depth]}M" if depth in TABLE6_PARAMS_M else "—"
        lines.append(
            f"| {depth} | {params} | {paper_params} | {resnet.cell('test_error') if resnet else '—'} | "
            f"{resnet.cell('test_error_at_best_val') if resnet else '—'} | {_paper_cell(depth)} | "
            f"{plain.cell('test_error') if plain else '—'} |"
        )
    return lines


def write_cifar_table(settings: ExperimentSettings, runs: Sequence[PlannedRun], elapsed: float) -> Path:
    results = gather([r for r in runs if r.status() == DONE])
    seeds = "; errors are mean ± std over seeds when more than one"
    lines = [
        "# CIFAR-10 table (analogue of Table 6, He et al. 2015)",
        "",
        *setting_lines(settings, settings.config(runs[0]), results, len(runs), elapsed, seeds),
        "",
        "Test error after the last iteration, and of the checkpoint best on the 5k validation split. The paper's",
        "column is Table 6 (64k iterations, official CIFAR-10; ResNet-110 best of 5 runs, mean ± std beside it).",
        "",
        *table_lines(results, settings.depths),
        "",
    ]
    (table,) = output_folder(settings.out, [TABLE_FILE])
    return write_output(table, "\n".join(lines))
