"""Training: the loop and its step, optimisation and schedules, distributed runs, resumable bit for bit.

>>> from resnet.train import load_config, train
>>> config = load_config("fast", {"model.name": "resnet20", "data.dataset": "fashion-mnist", "train.epochs": 1})
>>> summary = train(config)                      # writes runs/<model>-<dataset>-<time>/ and returns summary.json
"""

from resnet.config import Config, apply_overrides, config_from_dict, find_recipe, list_recipes, load_config
from resnet.eval import evaluate_metrics
from resnet.train.optim import Schedule, build_schedule
from resnet.train.trainer import Trainer, train
