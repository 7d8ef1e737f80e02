"""The paper's experiments on tiny nets: plan, resume, figures and report, and the paper's numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from resnet.cli import main
from resnet.errors import ConfigError
from resnet.experiments import ExperimentSettings, budget_named, run_cifar_table, run_degradation
from resnet.experiments.paper import TABLE6_TEST_ERROR, paper_test_error
from resnet.experiments.runs import DONE, LEFT, STARTED, ExperimentRunner
from resnet.train import train
from synthetic import write_image_folder

TINY = {
    "data.batch_size": 8,
    "data.val_size": 8,
    "data.pipeline": "tensor",
    "system.threads": 1,
    "log.tensorboard": False,
    "log.progress": "none",
}


@pytest.fixture
def tiny_folder(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "tiny", classes=("a", "b"), splits={"train": 16, "test": 4}, size=(8, 8))


def tiny_settings(out: Path, dataset: Path, **kw) -> ExperimentSettings:
    options = dict(out=out, depths=(8, 14), dataset=str(dataset), budget=budget_named("small", 4), overrides=dict(TINY))
    options.update(kw)
    return ExperimentSettings(**options)


class Recorder:
    """Calls the real trainer and records what was asked; ``stop_after`` simulates an interruption."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.calls: list[tuple[str, bool]] = []
        self.stop_after = stop_after

    def __call__(self, config, resume=False):
        if self.stop_after is not None and len(self.calls) >= self.stop_after:
            raise KeyboardInterrupt
        self.calls.append((config.model.name, resume))
        return train(config, resume=resume)


def test_paper_values_match_table6():
    assert TABLE6_TEST_ERROR == {20: 8.75, 32: 7.51, 44: 7.17, 56: 6.97, 110: 6.43, 1202: 7.93}
    assert paper_test_error("resnet56") == 6.97
    assert paper_test_error("plain56") is None


def test_budgets():
    small = budget_named("small")
    assert small.iterations == 1200 and small.eval_every == 150
    assert budget_named("paper").iterations is None  # the recipe's 64k
    medium = budget_named("medium")
    assert medium.iterations == 6400 and medium.eval_every == 400
    shortened = budget_named("small", 300)
    assert shortened.iterations == 300 and shortened.eval_every == 300 // 8
    with pytest.raises(ConfigError):
        budget_named("huge")
    with pytest.raises(ConfigError):
        budget_named("small", 0)


def test_quarter_budget_is_a_quarter_of_the_paper_schedule(tmp_path):
    from resnet.train.optim.schedules import milestone_iterations

    budget = budget_named("quarter")
    assert budget.label == "quarter budget" and budget.log_every == 20
    settings = ExperimentSettings(out=tmp_path, budget=budget)
    config = settings.config(settings.runs()[0])
    assert config.train.iterations == 16000 and config.eval.every_iterations == 1000
    assert milestone_iterations(config, steps_per_epoch=16000) == [8000, 12000]  # the paper's 32k/48k of 64k


def test_medium_budget_is_a_tenth_of_the_paper_schedule(tmp_path):
    from resnet.train.optim.schedules import milestone_iterations

    settings = ExperimentSettings(out=tmp_path, budget=budget_named("medium"))
    config = settings.config(settings.runs()[0])
    assert config.train.iterations == 6400 and config.eval.every_iterations == 400
    assert milestone_iterations(config, steps_per_epoch=6400) == [3200, 4800]


def test_cli_offers_every_budget():
    import argparse

    from resnet.cli.experiment import register
    from resnet.experiments import BUDGETS

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    for command in ("degradation", "cifar-table"):
        for name in BUDGETS:
            assert parser.parse_args(["experiment", command, "--budget", name]).budget == name
        with pytest.raises(SystemExit):
            parser.parse_args(["experiment", command, "--budget", "huge"])


def test_same_recipe_seed_and_schedule_for_every_net(tmp_path, tiny_folder):
    settings = tiny_settings(tmp_path / "exp", tiny_folder, seeds=(0, 1))
    runs = settings.runs()
    assert [r.name for r in runs] == [
        "plain8-seed0", "resnet8-seed0", "plain14-seed0", "resnet14-seed0",
        "plain8-seed1", "resnet8-seed1", "plain14-seed1", "resnet14-seed1",
    ]  # fmt: skip
    configs = [settings.config(r) for r in runs]
    for config, run in zip(configs, runs, strict=True):
        assert config.recipe == "cifar-paper" and config.seed == run.seed and config.train.iterations == 4
        assert config.optim.lr == 0.1 and config.optim.weight_decay == 1e-4
    with pytest.raises(ConfigError, match="6n\\+2"):
        tiny_settings(tmp_path / "bad", tiny_folder, depths=(10,)).runs()


@pytest.mark.slow
def test_interrupted_experiment_trains_only_what_is_left(tmp_path, tiny_folder):
    settings = tiny_settings(tmp_path / "exp", tiny_folder)
    runs = settings.runs()
    first = Recorder(stop_after=1)
    with pytest.raises(KeyboardInterrupt):
        ExperimentRunner(runs, settings.config, say=lambda _: None, train_fn=first).run()
    assert [r.status() for r in runs] == [DONE, LEFT, LEFT, LEFT]
    kept = (runs[0].path / "summary.json").read_bytes()

    # A run with a checkpoint but no summary (killed mid-run) resumes; finished ones are kept untouched.
    Recorder()(settings.config(runs[1]))
    (runs[1].path / "summary.json").unlink()
    assert runs[1].status() == STARTED
    lines = []
    second = Recorder()
    ExperimentRunner(runs, settings.config, say=lines.append, train_fn=second).run()
    assert second.calls == [("resnet8", True), ("plain14", False), ("resnet14", False)]
    assert (runs[0].path / "summary.json").read_bytes() == kept
    assert all(r.status() == DONE for r in runs)
    assert any("done 1/4" in line and "resuming resnet8-seed0" in line and "ETA" in line for line in lines)


def test_another_setting_in_the_same_folder_is_refused(tmp_path, tiny_folder):
    settings = tiny_settings(tmp_path / "exp", tiny_folder, depths=(8,))
    run_degradation(settings, say=lambda _: None)
    longer = tiny_settings(tmp_path / "exp", tiny_folder, depths=(8,), budget=budget_named("small", 6))
    with pytest.raises(ConfigError, match=r"train\.iterations"):
        run_degradation(longer, say=lambda _: None)


@pytest.mark.slow
def test_report_and_figures_of_a_tiny_run(tmp_path, tiny_folder):
    out = tmp_path / "exp"
    code = main([
        "experiment", "degradation", "--dataset", str(tiny_folder), "--depths", "8", "14", "--iterations", "4",
        "--out", str(out), *[f"--set={k}={json.dumps(v)}" for k, v in TINY.items()],
    ])  # fmt: skip
    assert code == 0
    for name in ("fig6.png", "fig1.png", "report.md"):
        assert (out / name).stat().st_size > 0
    report = (out / "report.md").read_text()
    for model in ("plain8", "resnet8", "plain14", "resnet14"):
        assert f"| {model} |" in report
        summary = json.loads((out / f"{model}-seed0" / "summary.json").read_text())
        assert summary["iterations"] == 4
    assert "## Claims at this budget" in report and "plain14 has higher training error than plain8" in report
    assert "divided by 10 at 2, 3" in report  # 32k/48k of 64k kept in place in a 4-iteration run

    # Table 6's analogue over the same runs plus a depth the degradation run lacks: only the missing ResNet trains,
    # the finished ones are named as reused, and the paper's column is filled in.
    said: list[str] = []
    before = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*-seed0/summary.json")}
    table = run_cifar_table(tiny_settings(out, tiny_folder, depths=(8, 14, 20)), say=said.append, with_plain=False)
    text = table.read_text()
    assert "| 8 |" in text and "| 14 |" in text and "| 20 |" in text
    assert (out / "resnet20-seed0" / "summary.json").is_file() and not (out / "plain20-seed0").exists()
    assert any("reusing 2 finished run(s)" in line and "resnet8-seed0, resnet14-seed0" in line for line in said)
    after = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*-seed0/summary.json")}
    assert after.pop("resnet20-seed0") and after == before


def test_cifar_table_quotes_the_paper(tmp_path, tiny_folder):
    from resnet.experiments.cifar_table import table_lines
    from resnet.experiments.report import NetResult

    results = {"resnet56": NetResult("resnet56", 853018, {"test_error": [7.0, 7.4]}, [0, 1], 10, 1.0)}
    lines = table_lines(results, (20, 56, 110))
    row56 = next(line for line in lines if line.startswith("| 56 |"))
    assert "0.853M" in row56 and "0.85M" in row56 and "7.20 ± 0.28" in row56 and "6.97" in row56
    row110 = next(line for line in lines if line.startswith("| 110 |"))
    assert "6.43 (best; 6.61 ± 0.16)" in row110


def test_verdicts_follow_the_noise_rule():
    from resnet.experiments.report import NetResult, compare

    def net(model: str, errors: list[float], images: int) -> NetResult:
        return NetResult(model, 1, {"test_error": errors}, list(range(len(errors))), 10, 1.0, {"test_error": images})

    # a 1-point difference on 300 test images, one seed: within the binomial noise (about ±6 points)
    small = {"plain56": net("plain56", [31.0], 300), "plain20": net("plain20", [30.0], 300)}
    claim = compare(small, "plain56", "plain20", "test_error", "plain56 tests worse", "final test error")
    assert not claim.resolved and claim.sentence().startswith("- **Not resolved at this budget**")
    # the same difference on 100,000 images is resolved; the opposite order is a contradiction, not a reproduction
    large = {"plain56": net("plain56", [31.0], 100_000), "plain20": net("plain20", [30.0], 100_000)}
    assert compare(large, "plain56", "plain20", "test_error", "s", "e").sentence().startswith("- **Reproduced**")
    flipped = compare(large, "plain20", "plain56", "test_error", "s", "e")
    assert flipped.resolved and not flipped.holds and "Contradicted" in flipped.sentence()
    # seeds that disagree widen the noise: 2 points apart on average, 3 points of spread between seeds
    spread = {"a": net("a", [28.0, 34.0], 100_000), "b": net("b", [29.0, 29.0], 100_000)}
    assert not compare(spread, "a", "b", "test_error", "s", "e").resolved


def test_a_net_at_chance_makes_no_verdict():
    from resnet.experiments.report import NetResult, chance_error, compare

    def net(model: str, error: float) -> NetResult:
        return NetResult(model, 1, {"train_error": [error]}, [0], 40, 1.0, {"train_error": 100_000})

    # 40 iterations: resnet56 still guessing (91.3% on 10 classes) is "better" than plain56 at 95%, by far
    results = {"plain56": net("plain56", 95.0), "resnet56": net("resnet56", 91.3), "resnet20": net("resnet20", 60.0)}
    claim = compare(results, "plain56", "resnet56", "train_error", "shortcuts fix it", "e", chance_error(10))
    assert not claim.resolved and "plain56 and resnet56 are not better than chance (90.0%)" in claim.sentence()
    assert compare(results, "plain56", "resnet56", "train_error", "s", "e").resolved  # the rule needs the chance
    learned = {"plain56": net("plain56", 80.0), "resnet20": net("resnet20", 60.0)}
    assert compare(learned, "plain56", "resnet20", "train_error", "s", "e", chance_error(10)).holds


def test_the_budget_is_named_as_run():
    assert budget_named("medium").label == "medium budget"
    assert budget_named("small", 40).label == "small budget shortened to 40 iterations"


@pytest.mark.slow
def test_an_experiment_on_a_user_folder_uses_the_training_split_rule(tmp_path, capsys):
    """1,300 images: the recipe's 5,000-image validation split cannot apply; training's default (a tenth) does."""
    folder = write_image_folder(tmp_path / "own", classes=("a", "b"), splits={"train": 600, "test": 50}, size=(8, 8))
    out = tmp_path / "exp"
    code = main(["experiment", "degradation", "--dataset", str(folder), "--depths", "8", "--iterations", "2",
                 "--out", str(out), "--set", "log.tensorboard=false"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    summary = json.loads((out / "resnet8-seed0" / "summary.json").read_text())
    assert summary["val_images"] == 120 and summary["test_images"] == 100  # a tenth of 1,200 training images


def test_unknown_model_is_named_before_any_data_is_read(tmp_path, capsys):
    where = str(tmp_path / "nowhere")
    code = main(["train", "--model", "resnet21", "--dataset", where, "--run-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "unknown model 'resnet21'" in err and "nowhere" not in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("assignment", "flag"),
    [("train.iterations=8", "--iterations"), ("system.device=cpu", "--device"), ("seed=3", "--seeds")],
)
def test_set_cannot_contradict_the_experiment_s_own_flags(capsys, tmp_path, tiny_folder, assignment, flag) -> None:
    code = main([
        "experiment", "degradation", "--dataset", str(tiny_folder), "--depths", "8", "--iterations", "4",
        "--out", str(tmp_path / "exp"), "--set", assignment,
    ])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert f"--set {assignment.split('=')[0]}=... would contradict" in err and flag in err
    assert not (tmp_path / "exp" / "plain8-seed0").exists()
