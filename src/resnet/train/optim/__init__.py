"""Optimisation: the optimizers (SGD as the paper, AdamW, LAMB, RMSprop) and the learning-rate schedules."""

from resnet.train.optim.optimizers import build_optimizer, seed_everything
from resnet.train.optim.schedules import Schedule, build_schedule, describe_lr, total_iterations
