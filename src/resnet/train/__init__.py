"""Training: typed configs from recipes, schedules of the iteration, resumable runs.

>>> from resnet.train import load_config, train
>>> config = load_config("fast", {"model.name": "resnet20", "data.dataset": "fashion-mnist", "train.epochs": 1})
>>> summary = train(config)                      # writes runs/<model>-<dataset>-<time>/ and returns summary.json
"""

from resnet.eval import evaluate
from resnet.train.config import Config, apply_overrides, config_from_dict
from resnet.train.recipes import find_recipe, list_recipes, load_config
from resnet.train.schedules import Schedule, build_schedule
from resnet.train.trainer import Trainer, train

__all__ = [
    "Config",
    "Schedule",
    "Trainer",
    "apply_overrides",
    "build_schedule",
    "config_from_dict",
    "evaluate",
    "find_recipe",
    "list_recipes",
    "load_config",
    "train",
]
