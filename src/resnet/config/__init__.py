"""A run's configuration: typed sections, recipes (TOML files in ``recipes/``), overrides and their checks.

>>> from resnet.config import load_config
>>> config = load_config("cifar-paper", {"model.name": "resnet20", "data.dataset": "cifar10"})

Every reader of a run (train, runs, experiments, analysis, the CLI) shares these types; nothing here trains.
"""

from resnet.config.parse import (
    all_keys,
    apply_overrides,
    config_from_dict,
    flatten,
    merge_dicts,
    nest,
    parse_assignment,
    parse_value,
    tomllib,
)
from resnet.config.recipes import dump_toml, find_recipe, list_recipes, load_config, read_recipe
from resnet.config.schema import (
    CHOICES,
    CheckpointConfig,
    Config,
    DataConfig,
    DistributedConfig,
    EmaConfig,
    EvalConfig,
    LengthConfig,
    LogConfig,
    MixConfig,
    ModelConfig,
    OptimConfig,
    ScheduleConfig,
    SystemConfig,
    WarmupConfig,
)
from resnet.config.validate import validate
