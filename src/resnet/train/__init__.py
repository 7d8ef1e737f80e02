"""Training: the loop and its step, optimisation and schedules, distributed runs, resumable bit for bit.

>>> from resnet.train import load_config, train
>>> config = load_config("fast", {"model.name": "resnet20", "data.dataset": "fashion-mnist", "train.epochs": 1})
>>> summary = train(config)                      # writes runs/<model>-<dataset>-<time>/ and returns summary.json
"""

from resnet.config import load_config
from resnet.train.optim import build_schedule
from resnet.train.trainer import Trainer, train
