"""What ``--resume`` may change, in one place.

A resumed run continues the saved configuration. Only settings that cannot change its results (where it runs,
how it reports, where the same data is found) or that extend it (a longer run) may differ; anything else is
refused with one line listing what can change, instead of being silently ignored.

Extending the length (``--iterations``/``--epochs`` larger than saved) continues a finished or running schedule:
multistep milestones stay at the iterations where they were placed for the original length (they are frozen,
not rescaled), and a linear warm-up keeps its length, so the iterations already done keep their learning rate
and the extension runs at the final one. Cosine and one-cycle schedules span the whole run, so extending them
would rewrite the learning rate of iterations already done: refused.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
from pathlib import Path
from typing import Any

from resnet.config import Config, apply_overrides, config_from_dict, flatten
from resnet.errors import CheckpointError, ConfigError
from resnet.runs import LAST_CHECKPOINT, RunDir, load_checkpoint
from resnet.train.optim.schedules import milestone_iterations, total_iterations

# dotted key -> how the user sets it; everything else is fixed for the life of a run
RESUMABLE_KEYS: dict[str, str] = {
    "train.iterations": "--iterations (longer only)",
    "train.epochs": "--epochs (longer only)",
    "data.data_dir": "--data-dir (the same data, verified by content hash)",
    "data.dataset": "--dataset (the same data moved elsewhere, verified by content hash)",
    "data.num_workers": "data.num_workers",
    "system.device": "--device",
    "system.compile": "--compile / --no-compile",
    "system.retune": "--retune (a resumed run keeps the precision and layout it started with)",
    "distributed.timeout": "--dist-timeout",
    "distributed.setup_timeout": "distributed.setup_timeout",
    "system.threads": "system.threads",
    "log.progress": "--progress",
    "log.every_iterations": "log.every_iterations",
    "checkpoint.every_minutes": "checkpoint.every_minutes",
    "checkpoint.every_iterations": "checkpoint.every_iterations",
}
IGNORED_KEYS = ("run_dir", "recipe")  # the run directory is the run; the recipe name is informational
LENGTH_KEYS = ("train.iterations", "train.epochs")
EXTENSIBLE_SCHEDULES = ("multistep", "constant", "plateau")


def merge_resume_config(saved: Config, given: Config, explicit: list[str] | None = None) -> Config:
    """The saved configuration with the allowed changes of ``given`` applied; any other change is refused.

    ``explicit`` lists the keys the user set (the command line); without it, every field of ``given`` that
    differs from the defaults counts as set (a library caller may pass the full configuration or a sparse one).
    """
    saved_flat, given_flat = flatten(saved.to_dict()), flatten(given.to_dict())
    if explicit is None:
        defaults = flatten(Config().to_dict())
        explicit = [k for k, v in given_flat.items() if v != defaults.get(k)]
    changes = {
        key: given_flat[key]
        for key in explicit
        if key in given_flat and key not in IGNORED_KEYS and given_flat[key] != saved_flat.get(key)
    }
    if "recipe" in explicit and given.recipe not in ("", saved.recipe):  # re-running the start command is fine
        changes["recipe"] = given.recipe
    if any(key in changes for key in LENGTH_KEYS):  # one run length wins, as on the command line
        for key in LENGTH_KEYS:
            changes[key] = given_flat[key]
        if all(saved_flat[k] == changes[k] for k in LENGTH_KEYS):
            for key in LENGTH_KEYS:
                changes.pop(key)
    refused = sorted(key for key in changes if key not in RESUMABLE_KEYS)
    if refused:
        shown = ", ".join(f"{k} (saved {saved_flat.get(k)!r}, given {changes[k]!r})" for k in refused[:3])
        allowed = ", ".join(RESUMABLE_KEYS.values())
        raise ConfigError(
            f"--resume cannot change {shown}; a resumed run may change only: {allowed}; "
            "start a new run (another --run-dir) to change anything else"
        )
    changes["run_dir"] = given.run_dir or saved.run_dir  # the directory being resumed, wherever it was first created
    return apply_overrides(saved, changes, "the resumed configuration")


def continue_from(
    run_dir: RunDir, given: Config, ctx: Any, explicit: list[str] | None = None
) -> tuple[dict[str, Any], Config, Config]:
    """The run's ``last.pt`` (read by the main process), its saved configuration, and that configuration with the
    allowed changes of ``given`` applied; a checkpoint of another run is refused."""
    checkpoint = ctx.on_main(load_checkpoint, run_dir.file(LAST_CHECKPOINT))
    ctx.on_main(run_dir.check_checkpoint, checkpoint)
    saved = config_from_dict(checkpoint["config"], "the checkpoint's configuration")
    merged = merge_resume_config(saved, given, explicit)
    merged.run_dir = str(run_dir.path)
    recorded = ((checkpoint.get("meta") or {}).get("dataset") or {}).get("location") if checkpoint else None
    unset = merged.data.data_dir is None and not os.environ.get("RESNET_DATA")
    if unset and recorded and Path(recorded).is_dir() and not Path(merged.data.dataset).exists():
        merged.data.data_dir = str(Path(recorded).parent)  # a registered name: where the run found it (hash-checked)
    return checkpoint, saved, merged


def extend_schedule(
    saved: Config, merged: Config, steps_per_epoch: int, done: int, run_dir: str | os.PathLike[str] = "RUN"
) -> Config:
    """Apply a run-length change to a resumed run: check it, and freeze what must not move (see module doc)."""
    old_total = total_iterations(saved, steps_per_epoch)
    new_total = total_iterations(merged, steps_per_epoch)
    if new_total == old_total:
        return merged
    if new_total < max(old_total, done):
        raise ConfigError(
            f"--resume can only extend the run: it is {old_total} iterations long and has done {done}; the new "
            f"length is {new_total} iterations"
        )
    kind = saved.schedule.kind
    if kind not in EXTENSIBLE_SCHEDULES:
        raise ConfigError(
            f"a {kind} schedule spans the whole run, so extending it would change the learning rate of the "
            f"{done} iterations already done; to train longer, start a new run from its weights: resnet train "
            f"--init {shlex.quote(os.path.join(run_dir, 'last.pt'))} --run-dir NEW_DIR with the options and length "
            "you want"
        )
    schedule = dataclasses.replace(merged.schedule, warmup=dataclasses.replace(merged.schedule.warmup))
    if kind == "multistep":
        schedule.milestones = [float(m) for m in milestone_iterations(saved, steps_per_epoch)]
        schedule.reference_iterations, schedule.reference_epochs = old_total, None
        schedule.rescale_milestones = False
    warmup = schedule.warmup
    if warmup.kind == "linear":
        length = warmup.iterations or round(warmup.epochs * steps_per_epoch)
        warmup.iterations, warmup.epochs = min(length, old_total // 2), 0.0
    return dataclasses.replace(merged, schedule=schedule)


def check_same_data(checkpoint: dict[str, Any], data: Any) -> None:
    """Refuse to continue on data other than the run's own (compared by the content fingerprint)."""
    saved = checkpoint.get("data_fingerprint")
    current = getattr(data, "fingerprint", "")
    if saved and current and saved != current:
        location = getattr(data, "location", "the data directory")
        raise CheckpointError(
            f"the data found at {location} differs from the data this run was trained on (content hash "
            f"{current[:12]}, the run's is {saved[:12]}); point --data-dir (or RESNET_DATA) at the run's data"
        )
