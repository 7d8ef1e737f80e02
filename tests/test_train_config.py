"""Recipes, overrides and the `resnet train` command line, without training."""

from __future__ import annotations

from pathlib import Path

import pytest

from resnet.cli import build_parser
from resnet.cli.train import overrides_from_args
from resnet.config import Config, apply_overrides, config_from_dict, parse_assignment
from resnet.config.recipes import dump_toml, find_recipe, list_recipes, load_config, tomllib
from resnet.errors import ConfigError

BASE = {"model.name": "resnet20", "data.dataset": "cifar10"}
RECIPE_FILES = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "recipes").glob("*.toml"))


def test_the_recipe_folder_is_what_is_listed() -> None:
    assert len(RECIPE_FILES) >= 7 and list_recipes() == RECIPE_FILES


@pytest.mark.parametrize("name", RECIPE_FILES)
def test_every_recipe_loads(name: str) -> None:
    config = load_config(name, BASE)
    assert config.recipe == name and config.optim.lr > 0
    assert name in list_recipes()


def test_train_help_lists_every_recipe(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert all(name in help_text for name in RECIPE_FILES)


def test_cifar_paper_recipe_matches_the_paper() -> None:
    config = load_config("cifar-paper", BASE)
    assert (config.data.batch_size, config.optim.momentum, config.optim.weight_decay) == (128, 0.9, 1e-4)
    assert config.train.iterations == 64000 and config.schedule.milestones == [32000, 48000]
    assert config.data.val_size == 5000
    assert config.schedule.warmup.kind == "error-threshold" and config.schedule.warmup.min_depth == 110


def test_overrides_by_dotted_keys() -> None:
    config = load_config("cifar-paper", {**BASE, "optim.lr": 0.05, "train.epochs": 2, "model.options.shortcut": "B"})
    assert config.optim.lr == 0.05
    assert config.train.epochs == 2 and config.train.iterations is None  # one length wins
    assert config.model.options == {"shortcut": "B"}
    assert config.schedule.reference_iterations == 64000  # milestones keep their recipe's frame


@pytest.mark.parametrize(
    ("key", "suggestion"),
    [("optim.lrr", "optim.lr"), ("optim.batch_size", "data.batch_size"), ("schedul.kind", "schedule.kind")],
)
def test_unknown_keys_are_rejected_with_a_suggestion(key: str, suggestion: str) -> None:
    with pytest.raises(ConfigError, match=f"unknown configuration key '{key}'.*did you mean '{suggestion}'"):
        load_config("fast", {**BASE, key: 1})


def test_bad_values_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"'optim.lr'.*must be float"):
        load_config("fast", {**BASE, "optim.lr": "fast"})
    with pytest.raises(ConfigError, match=r"'schedule.kind'.*did you mean 'cosine'"):
        load_config("fast", {**BASE, "schedule.kind": "cosin"})
    with pytest.raises(ConfigError, match="no model given"):
        load_config("fast", {"data.dataset": "cifar10"})


def test_unknown_key_in_a_recipe_file(tmp_path: Path) -> None:
    recipe = tmp_path / "mine.toml"
    recipe.write_text('extends = "fast"\n[optim]\nmomentun = 0.8\n')
    with pytest.raises(ConfigError, match=r"optim.momentun.*mine.*did you mean 'optim.momentum'"):
        load_config(str(recipe), BASE)


def test_user_recipe_extends_a_named_one(tmp_path: Path) -> None:
    recipe = tmp_path / "mine.toml"
    recipe.write_text('extends = "cifar-paper"\n[optim]\nlr = 0.02\n')
    config = load_config(str(recipe), BASE)
    assert config.optim.lr == 0.02 and config.train.iterations == 64000


def test_unknown_recipe_suggests_a_name() -> None:
    with pytest.raises(ConfigError, match="did you mean 'cifar-paper'"):
        find_recipe("cifar-papr")


def test_recipes_are_found_from_any_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert find_recipe("fast").name == "fast.toml"


def test_resolved_config_round_trips_through_toml() -> None:
    config = load_config("imagenet-step", {**BASE, "model.options.shortcut": "B", "seed": 3})
    text = dump_toml(config.to_dict())
    again = config_from_dict(tomllib.loads(text))
    assert again == config


def test_set_values_parse_as_toml() -> None:
    assert parse_assignment("optim.lr=0.05") == ("optim.lr", 0.05)
    assert parse_assignment("schedule.milestones=[10, 20]") == ("schedule.milestones", [10, 20])
    assert parse_assignment("data.augment=none") == ("data.augment", "none")
    assert parse_assignment("optim.nesterov=true") == ("optim.nesterov", True)
    with pytest.raises(ConfigError, match="key=value"):
        parse_assignment("optim.lr")


def test_command_line_flags_and_set() -> None:
    args = build_parser().parse_args(
        [
            "train",
            "--model",
            "resnet20",
            "--dataset",
            "fashion-mnist",
            "--epochs",
            "3",
            "--lr",
            "0.3",
            "--channels-last",
            "--set",
            "optim.label_smoothing=0.2",
            "--set",
            "data.augment=none",
        ]
    )
    overrides = overrides_from_args(args)
    config = load_config("fast", overrides)
    assert config.train.epochs == 3 and config.optim.lr == 0.3 and config.system.channels_last == "on"
    assert config.optim.label_smoothing == 0.2 and config.data.augment == "none"


def test_cli_reports_config_errors_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from resnet.cli import main

    code = main(["train", "--model", "resnet20", "--dataset", "x", "--set", "optim.moment=0.5"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "did you mean 'optim.momentum'" in err


def test_section_cannot_be_set_as_a_value() -> None:
    with pytest.raises(ConfigError, match="is a section"):
        apply_overrides(Config(), {"optim": 1})


def test_cli_flags_map_to_configuration_keys() -> None:
    from resnet.cli import build_parser
    from resnet.cli.train import overrides_from_args

    args = build_parser().parse_args(
        ["train", "--model", "resnet20", "--dataset", "imgs/", "--on-bad-image", "skip", "--no-channels-last",
         "--set", "data.crop_size=64", "--set", "data.pipeline=loader"]
    )  # fmt: skip
    config = load_config("fast", overrides_from_args(args))
    assert config.data.on_bad_image == "skip" and config.data.crop_size == 64 and config.data.pipeline == "loader"
    assert config.system.channels_last == "off" and config.data.dataset == "imgs/"
