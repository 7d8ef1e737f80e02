"""What a run leaves behind, and the one way to read it: checkpoints, ``meta``, the run directory and its lock.

Training writes through this package; evaluation, inference, export, analysis and experiments read through it.
It imports nothing from :mod:`resnet.train`.
"""

from resnet.runs.checkpoint import FORMAT_VERSION, load_checkpoint, save_atomic
from resnet.runs.lock import RunDirLockedError, RunLock
from resnet.runs.meta import build_meta, read_meta, require_preprocessing
from resnet.runs.reading import SavedRun, read_checkpoint, read_config_file, read_summary
from resnet.runs.run_dir import (
    BEST_CHECKPOINT,
    BEST_EMA_CHECKPOINT,
    CONFIG_FILE,
    CURVES_FILE,
    LAST_CHECKPOINT,
    METRICS_FILE,
    RUN_FILE,
    SUMMARY_FILE,
    TRAIN_CURVE_FILE,
    RunDir,
    default_run_dir,
    read_metrics,
)
