"""Writing export files safely: never over a checkpoint or a file this export did not create, never half-written.

An export goes to temporary files beside its targets, is verified there, and only then renamed into place; an
existing target (the weights, or the ``NAME.json`` sidecar of a safetensors export) is replaced only with
``force=True``, and the checkpoint being exported never.
"""

from __future__ import annotations

import contextlib
import zipfile
from collections.abc import Iterator
from pathlib import Path

from resnet.export.onnx import ExportError
from resnet.files import CreatedMeanwhile, Output, check_output, commit, created_meanwhile, same_file, staged_file


class OutputExistsError(ExportError, FileExistsError):
    """An export target that exists and may not be replaced."""


def export_targets(fmt: str, output: Path) -> list[Path]:
    """Every file an export to ``output`` writes: the file, and for safetensors its JSON sidecar."""
    return [output, output.with_suffix(".json")] if fmt == "safetensors" else [output]


def _describe(path: Path) -> str:
    """What an existing file looks like, for the refusal."""
    if path.suffix in (".pt", ".pth", ".ckpt") and zipfile.is_zipfile(path):
        return "a PyTorch checkpoint"
    if path.name in ("run.json", "summary.json", "metrics.jsonl", "config.toml"):
        return "a file of a run directory"
    return "a file"


def check_targets(targets: list[Path], *, source: Path | None, force: bool) -> list[Output]:
    """Refuse targets that are the checkpoint being exported (always), a link or a directory, or exist (unless
    ``force``): :func:`resnet.files.check_output` with export's stricter rule (any existing file needs ``force``)."""
    protected = [] if source is None else [source]
    if source is not None and source.suffix == ".safetensors":
        protected.append(source.with_suffix(".json"))  # an exported source's sidecar is part of it
    outputs = []
    for target in targets:
        if any(same_file(target, kept) for kept in protected):
            what = "checkpoint" if same_file(target, protected[0]) else "sidecar of the weights"
            raise OutputExistsError(
                f"{target} is the {what} being exported, which an export never replaces; choose another --output "
                "(or leave it out: the default names the file after the format, e.g. best.onnx)"
            )
        output = check_output(target, force=True, option="--output")  # links and directories: never
        if output.existed and not force:
            sidecar = (
                " (the JSON sidecar the safetensors export writes beside the weights)"
                if (target.suffix == ".json" and target != targets[0])
                else ""
            )
            raise OutputExistsError(
                f"{target}{sidecar} exists and is {_describe(target)} this export did not create; pass --force to "
                "replace it, or choose another --output"
            )
        outputs.append(output)
    return outputs


@contextlib.contextmanager
def staged(outputs: list[Output]) -> Iterator[Path]:
    """Yield a temporary path for ``outputs[0]`` (the others are its ``.json`` sidecar: ``tmp.with_suffix``); on
    success rename every temporary file onto its target (never over a file created meanwhile), on any error remove
    them, leaving the targets as they were.
    """
    main, sidecars = outputs[0], outputs[1:]
    try:
        with staged_file(main.path, exclusive=not main.existed, suffix=main.path.suffix) as tmp:
            pairs = [(tmp.with_suffix(o.path.suffix), o) for o in sidecars]
            try:
                try:
                    yield tmp
                except Exception as error:  # an exporter's error names the file the user asked for, not ours
                    if str(tmp) not in str(error) and str(tmp.with_suffix(".json")) not in str(error):
                        raise
                    text = str(error).replace(str(tmp.with_suffix(".json")), str(main.path.with_suffix(".json")))
                    raise ExportError(text.replace(str(tmp), str(main.path)).splitlines()[0]) from error
                for staged_path, output in pairs:  # the sidecar first: the weights appear complete, or not at all
                    commit(staged_path, output.path, exclusive=not output.existed)
            finally:
                for staged_path, _ in pairs:
                    with contextlib.suppress(OSError):
                        staged_path.unlink()
    except CreatedMeanwhile as error:
        raise OutputExistsError(str(created_meanwhile(Path(error.filename)))) from None
