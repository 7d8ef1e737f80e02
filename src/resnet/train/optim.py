"""The optimizer of the recipes (SGD with momentum, optionally without weight decay on norms and biases)."""

from __future__ import annotations

import random

import numpy as np
import torch
from torch import nn

from resnet.train.config import Config


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_optimizer(model: nn.Module, config: Config, lr: float) -> torch.optim.Optimizer:
    optim = config.optim
    decay, no_decay = [], []
    for parameter in model.parameters():
        if not parameter.requires_grad:
            continue
        skip = not optim.decay_norm_and_bias and parameter.ndim <= 1
        (no_decay if skip else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": optim.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return torch.optim.SGD(groups, lr=lr, momentum=optim.momentum, nesterov=optim.nesterov)
