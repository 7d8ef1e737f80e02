"""Bad inputs to the models room (resnet.models, and load_model as eval, predict, export, analyze and --init use
it): networks built from a name and options, and untrusted model files.

What it guarantees: bad model options and inputs are ``ConfigError``/``InputError`` (one line from the CLI); a
network's size is bounded from its spec before it is built; a checkpoint, safetensors export (and its sidecar) or
akamaster file with non-finite weights, inconsistent or oversized meta, or a pickle that would run code is refused
when it is read, by every command, in one line naming the file (never suggesting ``weights_only=False``); what a
checkpoint carries besides its weights is used (``analyze`` reads the run's own data), and the flags that say how
to evaluate it are checked by argparse first.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from bad_inputs import (
    TRAIN,
    CodeExecution,
    crafted_pickle,
    damage_sidecar,
    good_images,
    image_folder,
    one_error_line,
    run_cli,
    snapshot,
)
from resnet.errors import ConfigError, InputError
from resnet.models import create_model

# --- networks built from a name and options -------------------------------------------------------------------------


def test_uint8_images_and_small_images_are_clear_errors() -> None:
    with pytest.raises(InputError, match=r"expects floating-point images, got torch\.uint8"):
        create_model("resnet8")(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    with torch.device("meta"):  # the checks come first; no need for VGG's 140M real weights
        vgg = create_model("vgg19", num_classes=2)
        with pytest.raises(InputError, match="expects floating-point images"):
            vgg(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
        with pytest.raises(InputError, match=r"at least 32x32 pixels.*got 28x28"):
            vgg(torch.zeros(1, 3, 28, 28))


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("vgg19", {"dropout": "abc"}, "dropout must be a number in \\[0, 1\\), got 'abc'"),
        ("vgg19", {"dropout": True}, "dropout must be a number"),
        ("resnet20", {"stride_on": "1x1"}, "applies to bottleneck blocks only"),
        ("resnet34", {"stride_on": "1x1"}, "resnet34 has basic blocks"),
    ],
)
def test_bad_model_options_are_config_errors(name: str, options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        create_model(name, **options)


def test_stride_on_still_works_on_bottlenecks() -> None:
    with torch.device("meta"):
        model = create_model("resnet50", stride_on="1x1", num_classes=2)
    assert model.layer2[0].conv1.stride == (2, 2) and model.layer2[0].conv2.stride == (1, 1)


def test_bad_model_option_from_the_cli(capsys, tmp_path: Path) -> None:
    folder = image_folder(tmp_path / "folder", size=8, train=4, test=1)
    before = snapshot(folder)
    argv = [*TRAIN, "--dataset", str(folder), "--iterations", "1", "--run-dir", str(tmp_path / "run")]
    code, _, err = run_cli(capsys, *argv, "--set", 'model.options.stride_on="1x1"')
    assert code == 2 and "stride_on='1x1' applies to bottleneck blocks only" in one_error_line(err)
    assert snapshot(folder) == before and not (tmp_path / "run").exists()


def test_the_parameter_limit_is_computed_from_the_name_and_overridable(monkeypatch) -> None:
    from resnet.errors import ConfigError
    from resnet.models import create_model

    with pytest.raises(ConfigError, match=r"resnet50 with 3 input channels and 1,000,000,000 classes .* GiB"):
        create_model("resnet50", num_classes=10**9)
    with pytest.raises(ConfigError, match="RESNET_MAX_PARAMETERS"):
        create_model("plain600002")
    monkeypatch.setenv("RESNET_MAX_PARAMETERS", "50000")
    with pytest.raises(ConfigError, match=r"resnet8 .* about 74,810 parameters .* above the limit of 50,000"):
        create_model("resnet8")
    monkeypatch.setenv("RESNET_MAX_PARAMETERS", "80000")
    assert sum(p.numel() for p in create_model("resnet8").parameters()) < 80_000


# --- model files: non-finite weights, inconsistent meta, code in a pickle -------------------------------------------


def _edited_checkpoint(trained: Path, tmp_path: Path, edit) -> Path:
    """A copy of the run's last.pt with ``edit(payload)`` applied and a valid checksum (as a crafted file has)."""
    from resnet.runs.checkpoint import load_checkpoint, save_atomic

    payload = load_checkpoint(trained / "last.pt")
    edit(payload)
    path = tmp_path / "edited" / "last.pt"
    save_atomic(payload, path)
    return path


def _nan_weight(payload: dict) -> None:
    payload["model"]["fc.weight"][0, 0] = float("nan")


def _inf_buffer(payload: dict) -> None:
    payload["model"]["bn1.running_var"][0] = float("inf")


def _meta(field: str, value: object):
    def edit(payload: dict) -> None:
        target = payload["meta"]
        *parents, last = field.split(".")
        for name in parents:
            target = target[name]
        target[last] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (_nan_weight, "holds NaN or infinite weights (fc.weight)"),
        (_inf_buffer, "holds NaN or infinite weights (bn1.running_var)"),
        (_meta("preprocessing.std", [0.0, 0.0, 0.0]), "a standard deviation must be positive"),
        (_meta("preprocessing.std", [0.2, -0.1, 0.2]), "a standard deviation must be positive"),
        (_meta("class_names", ["a", "b"]), "names 2 classes but the model has 3 outputs"),
        (_meta("class_names", None), "has no class_names list"),
        (_meta("model.options", None), "has model.options that is not a JSON object"),
        (_meta("preprocessing.mean", [0.5, 0.5]), "has 2 preprocessing.mean values for 3-channel images"),
        (_meta("preprocessing.crop", [0, 8]), "preprocessing.crop = 0, not a positive whole number"),
        (_meta("preprocessing.mode", "L"), "has 3 preprocessing.mean values for 1-channel images"),
        (_meta("model.options.in_chans", 1), 'preprocessing.mode = "RGB" (3 channels) for a model of 1 input'),
    ],
)
def test_a_checkpoint_with_bad_weights_or_meta_is_refused_by_every_command(
    trained: Path, tmp_path: Path, capsys, edit, says: str
) -> None:
    checkpoint = _edited_checkpoint(trained, tmp_path, edit)
    image = next((trained.parent / "data" / "test" / "a").iterdir())
    for argv in (["eval", "--checkpoint", str(checkpoint)], ["predict", str(image), "--checkpoint", str(checkpoint)],
                 ["export", "--checkpoint", str(checkpoint), "--format", "torchscript"]):  # fmt: skip
        code, out, err = run_cli(capsys, *argv)
        assert code == 2 and says in one_error_line(err), (argv, err)
        assert "nan%" not in out
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == ["last.pt"]


def test_non_finite_safetensors_and_akamaster_weights_are_refused(trained: Path, tmp_path: Path, capsys) -> None:
    from safetensors.torch import load_file, save_file

    from resnet.errors import CheckpointError
    from resnet.models import create_model
    from test_models_akamaster import AkaResNet, save_akamaster

    code, _, err = run_cli(capsys, "export", "--checkpoint", str(trained / "last.pt"), "--format", "safetensors",
                           "--output", str(tmp_path / "model.safetensors"))  # fmt: skip
    assert code == 0, err
    state = load_file(str(tmp_path / "model.safetensors"))
    state["conv1.weight"][0, 0, 0, 0] = float("-inf")
    save_file(state, str(tmp_path / "model.safetensors"))
    code, _, err = run_cli(capsys, "eval", "--checkpoint", str(tmp_path / "model.safetensors"))
    assert code == 2 and "holds NaN or infinite weights (conv1.weight)" in one_error_line(err)
    with pytest.raises(CheckpointError, match="NaN or infinite weights"):  # the library's own reader, --init
        create_model("resnet8", num_classes=3, weights=tmp_path / "model.safetensors")
    reference = AkaResNet(3)
    with torch.no_grad():
        reference.linear.weight[1, 2] = float("nan")
    path = save_akamaster(reference, tmp_path / "resnet20.th")
    code, _, err = run_cli(capsys, "eval", "--checkpoint", str(path), "--dataset", "fake")
    assert code == 2 and "holds NaN or infinite weights (linear.weight)" in one_error_line(err)  # the file's name


def test_init_from_nan_weights_names_the_file_not_the_learning_rate(trained: Path, tmp_path: Path, capsys) -> None:
    bad = _edited_checkpoint(trained, tmp_path, _nan_weight)
    code, _, err = run_cli(capsys, *TRAIN, "--dataset", str(trained.parent / "data"), "--iterations", "1",
                           "--init", str(bad), "--run-dir", str(tmp_path / "run"))  # fmt: skip
    line = one_error_line(err)
    assert code == 2 and f"'{bad}' holds NaN or infinite weights (fc.weight)" in line and "--lr" not in line
    assert not (tmp_path / "run" / "last.pt").exists()


def test_a_malicious_checkpoint_is_named_for_what_it_holds(tmp_path: Path, capsys) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    path.write_bytes(crafted_pickle(marker))
    for argv in (["eval", "--checkpoint", str(path)], ["predict", str(path), "--checkpoint", str(path)]):
        code, _, err = run_cli(capsys, *argv)
        line = one_error_line(err)
        assert code == 2 and "will not unpickle" in line and "weights_only" not in line, line
    assert not marker.exists()
    assert CodeExecution and pickle  # the corpus' own marker class stays importable


# --- sizes in meta, bounded before anything is built ----------------------------------------------------------------


def _huge_input(payload: dict) -> None:
    payload["meta"]["model"]["options"]["in_chans"] = 2**40
    payload["meta"]["preprocessing"] = {}


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (_meta("model.name", "resnet600002"), "resnet600002 with 3 input channels and 3 classes would have about"),
        (_huge_input, "with 1,099,511,627,776 input channels"),
        (_meta("preprocessing.crop", [100000, 100000]), "preprocessing.crop = 100,000, above the limit of 8,192"),
        (_meta("preprocessing.resize", 10**6), "preprocessing.resize = 1,000,000, above the limit of 8,192"),
        (_meta("input_size", [3, 8, 2**31]), "input_size = 2,147,483,648, above the limit"),
    ],
)
def test_sizes_in_meta_are_bounded_before_anything_is_built(
    trained: Path, tmp_path: Path, capsys, edit, says: str
) -> None:
    checkpoint = _edited_checkpoint(trained, tmp_path, edit)
    code, _, err = run_cli(capsys, "eval", "--checkpoint", str(checkpoint))
    assert code == 2 and says in one_error_line(err)


# --- safetensors sidecars -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("std-zero", "preprocessing.std = [0.0, 0.0, 0.0]: a standard deviation must be positive"),
        ("std-one-zero", "preprocessing.std = [0.25, 0.0, 0.25]: a standard deviation must be positive"),
        ("std-negative", "a standard deviation must be positive"),
        ("mean-two-values", "has 2 preprocessing.mean values for 3-channel images"),
        ("invalid-json", "is not valid JSON ("),
        ("not-utf8", "is not text (byte 0 is not UTF-8)"),
        ("list", "holds a JSON list, not a JSON object with the model metadata"),
        ("no-model", 'has no "model" entry naming the network'),
        ("fewer-classes", "names 2 classes but the model has 3 outputs"),
        ("more-classes", "names 5 classes but the model has 3 outputs"),
        ("garbage-header", "is not a readable safetensors file"),
        ("truncated", "is not a readable safetensors file"),
    ],
)
def test_a_damaged_sidecar_is_one_line(capsys, exported: Path, run: Path, tmp_path: Path, damage, message) -> None:
    weights = tmp_path / "model.safetensors"
    shutil.copy(exported, weights)
    shutil.copy(exported.with_suffix(".json"), weights.with_suffix(".json"))
    damage_sidecar(weights, damage)
    before = snapshot(tmp_path)
    code, out, err = run_cli(capsys, "predict", str(good_images(run)[0]), "--checkpoint", str(weights))
    assert code == 2 and "nan%" not in out
    line = one_error_line(err)
    assert line.startswith("resnet predict: error: ") and message in line, line
    assert str(weights.with_suffix(".json") if "error: the sidecar " in line else weights) in line
    assert snapshot(tmp_path) == before


def test_an_intact_sidecar_still_predicts(capsys, exported: Path, run: Path) -> None:
    code, out, err = run_cli(capsys, "predict", str(good_images(run)[0]), "--checkpoint", str(exported))
    assert code == 0, err
    assert "%" in out and "nan" not in out


def test_deeply_nested_sidecar_json_is_one_line(trained: Path, tmp_path: Path, capsys) -> None:
    code, _, err = run_cli(capsys, "export", "--checkpoint", str(trained / "last.pt"), "--format", "safetensors",
                           "--output", str(tmp_path / "model.safetensors"))  # fmt: skip
    assert code == 0, err
    (tmp_path / "model.json").write_text("[" * 100000 + "]" * 100000)
    code, _, err = run_cli(capsys, "eval", "--checkpoint", str(tmp_path / "model.safetensors"))
    assert code == 2 and "is nested too deeply to be model metadata" in one_error_line(err)


# --- what a checkpoint carries besides its weights; the flags that read it ------------------------------------------


def test_analyze_gradients_uses_the_run_s_data(trained: Path, tmp_path: Path, capsys) -> None:
    from synthetic import write_image_folder

    out = tmp_path / "analysis"
    argv = ["analyze", "gradients", "--checkpoint", str(trained / "last.pt"), "--batch-size", "4", "--out", str(out)]
    code, _, err = run_cli(capsys, *argv, "--model", "plain8")  # no CIFAR-10 here: the run's 3 classes are read
    assert code == 0, err
    grads = json.loads((out / "gradients.json").read_text())
    assert [g["label"] for g in grads] == ["run (trained)", "plain8 (initialisation)"]
    four = write_image_folder(tmp_path / "four", ("a", "b", "c", "d"), splits={"train": 4, "test": 2}, size=(8, 8))
    for command in (argv, ["analyze", "responses", "--checkpoint", str(trained / "last.pt"), "--out", str(out)]):
        code, _, err = run_cli(capsys, *command, "--dataset", str(four), "--force")
        assert code == 2 and "has 4 classes, the checkpoint's model has 3 outputs" in one_error_line(err)
    code, _, err = run_cli(capsys, *argv[:-2], "--batch-size", "0", "--out", str(out))
    assert code == 2 and "argument --batch-size: must be a positive integer" in one_error_line(err)


@pytest.mark.parametrize("argv", [["--scales", "0"], ["--scales", "32", "-4"], ["--workers", "-1"]])
def test_eval_numbers_are_checked_by_argparse(trained: Path, capsys, argv: list[str]) -> None:
    code, _, err = run_cli(capsys, "eval", "--checkpoint", str(trained / "last.pt"), "--views", "multiscale", *argv)
    assert code == 2 and f"argument {argv[0]}: must be" in one_error_line(err)
