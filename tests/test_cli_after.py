"""`resnet eval`, `predict` and `export` on checkpoints of tiny training runs (tensor and DataLoader paths)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

import resnet
from resnet.cli import main
from resnet.data.sources.folder import index_folder
from resnet.inference import Predictor
from synthetic import image_bytes, write_image_folder

CLASSES = ("ant", "bee", "cow")


def tiny_run(root: Path, run_dir: Path, *extra: str) -> Path:
    code = main(
        ["train", "--model", "resnet8", "--dataset", str(root), "--iterations", "3", "--batch-size", "8",
         "--device", "cpu", "--run-dir", str(run_dir), "--progress", "none", "--set", "data.val_size=6",
         "--set", "log.tensorboard=false", "--set", "data.num_workers=0", *extra]
    )  # fmt: skip
    assert code == 0
    return run_dir


@pytest.fixture(scope="module")
def tensor_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A same-size image folder decoded into tensors (the small-dataset path), per-pixel mean normalisation."""
    base = tmp_path_factory.mktemp("tensor")
    root = write_image_folder(base / "images", CLASSES, splits={"train": 8, "test": 3}, size=(20, 16))
    return tiny_run(root, base / "run", "--set", "data.pipeline=tensor", "--set", "data.normalize=pixel")


@pytest.fixture(scope="module")
def loader_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Images of different sizes through DataLoader workers (the image-folder path), 16-pixel crops."""
    base = tmp_path_factory.mktemp("loader")
    root = write_image_folder(base / "images", CLASSES, splits={"train": 8, "test": 2}, size=(26, 22))
    (root / "test" / "ant" / "wide.png").write_bytes(image_bytes((40, 24), fmt="PNG", seed=7))
    return tiny_run(root, base / "run", "--set", "data.pipeline=loader", "--set", "data.crop_size=16")


def eval_json(run_dir: Path, tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "eval.json"
    assert main(["eval", "--checkpoint", str(run_dir / "last.pt"), "--json", str(out), "--device", "cpu", *args]) == 0
    return json.loads(out.read_text())


@pytest.mark.parametrize("run", ["tensor_run", "loader_run"])
def test_eval_reproduces_the_training_evaluation(run: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    run_dir = request.getfixturevalue(run)
    summary = json.loads((run_dir / "summary.json").read_text())
    last = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()][-1]
    result = eval_json(run_dir, tmp_path)  # the run's own dataset and test split, its saved preprocessing
    assert result["top1_error"] == pytest.approx(summary["test_error"], abs=1e-9)
    assert result["loss"] == pytest.approx(last["test_loss"], rel=1e-5)
    assert result["top5_error"] is None and last["test_top5_error"] == 0.0  # 3 classes: no top-5 error
    assert result["images"] == (9 if run == "tensor_run" else 7)
    val = eval_json(run_dir, tmp_path, "--split", "val")
    assert val["images"] == 6 and val["top1_error"] == pytest.approx(last["val_error"], abs=1e-9)


@pytest.mark.parametrize("run", ["tensor_run", "loader_run"])
def test_eval_ten_crop_and_multiscale(run: str, request: pytest.FixtureRequest, tmp_path: Path, capsys) -> None:
    run_dir = request.getfixturevalue(run)
    ten = eval_json(run_dir, tmp_path, "--views", "10crop")
    multi = eval_json(run_dir, tmp_path, "--views", "multiscale", "--scales", "16", "24")
    for result in (ten, multi):
        assert 0 <= result["top1_error"] <= 100 and result["loss"] > 0 and result["images"] == ten["images"]
    assert multi["scales"] == [16, 24] and ten["views"] == "10crop"
    default = eval_json(run_dir, tmp_path, "--views", "multiscale")
    assert default["scales"] == [16, 20, 24]  # proportionate to the 16-pixel training images
    assert "top-5 error" in capsys.readouterr().out


def test_eval_prints_json_only_when_asked(tensor_run: Path, capsys) -> None:
    checkpoint = str(tensor_run / "last.pt")
    assert main(["eval", "--checkpoint", checkpoint, "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert "top-5 error n/a (5 classes or fewer)" in captured.out and "{" not in captured.out
    assert main(["eval", "--checkpoint", checkpoint, "--device", "cpu", "--json", "-"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)  # stdout holds the JSON alone: `resnet eval ... --json - | jq`
    assert result["top5_error"] is None and result["images"] == 9 and "top-1 error" in captured.err


def test_long_evaluations_show_a_bar_on_a_terminal() -> None:
    import io

    from resnet.eval.run import with_progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    batches = [(i, i) for i in range(3)]
    assert with_progress(batches, "evaluating test", io.StringIO()) is batches  # a log or a pipe: no bar
    terminal = Terminal()
    assert list(with_progress(batches, "evaluating test", terminal)) == batches
    assert "evaluating test" in terminal.getvalue() and "/3 [" in terminal.getvalue()


def write_inputs(folder: Path) -> list[Path]:
    folder.mkdir()
    rgb = Image.open(__import__("io").BytesIO(image_bytes((30, 24), fmt="PNG", seed=3)))
    paths = {
        "a_rgb.jpg": lambda p: p.write_bytes(image_bytes((24, 24), seed=1)),
        "b_gray.png": lambda p: rgb.convert("L").save(p),
        "c_rgba.png": lambda p: rgb.convert("RGBA").save(p),
        "d_cmyk.jpg": lambda p: rgb.convert("CMYK").save(p),
        "e_corrupt.jpg": lambda p: p.write_bytes(b"\xff\xd8 not really a jpeg"),
    }
    for name, write in paths.items():
        write(folder / name)
    (folder / "notes.txt").write_text("not an image: ignored in a directory")
    return [folder / name for name in paths]


def test_predict_a_directory_with_one_corrupt_image(tensor_run: Path, tmp_path: Path, capsys) -> None:
    files = write_inputs(tmp_path / "inputs")
    checkpoint = str(tensor_run / "best.pt")
    code = main(["predict", str(tmp_path / "inputs"), "--checkpoint", checkpoint, "--top-k", "2", "--json"])
    captured = capsys.readouterr()
    assert code == 1, "a failed image makes the exit status non-zero"
    results = json.loads(captured.out)
    assert [r["path"] for r in results] == [str(f) for f in files]
    assert "e_corrupt.jpg" in results[-1]["error"] and "e_corrupt.jpg" in captured.err
    for result in results[:-1]:
        predictions = result["predictions"]
        assert len(predictions) == 2 and predictions[0]["probability"] >= predictions[1]["probability"]
        assert {p["class"] for p in predictions} <= set(CLASSES)
    # text output: one line per readable image
    assert main(["predict", str(files[0]), str(files[1]), "--checkpoint", checkpoint]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(str(files[0])) and "%" in lines[0]


def test_predict_uses_exactly_the_training_preprocessing(tensor_run: Path) -> None:
    """The saved preprocessing turns the test files into the very tensors the training pipeline evaluated."""
    from resnet.eval.data import build_eval_data

    loaded = resnet.load_model(tensor_run / "last.pt")
    assert loaded.meta["preprocessing"]["mean_image"].shape == (3, 16, 20)  # normalize="pixel": a mean image
    data = build_eval_data(loaded.meta, loaded.config.data, seed=loaded.config.seed, split="test")
    (expected, _labels), = list(data.passes[0])  # fmt: skip
    split = index_folder(Path(loaded.payload["config"]["data"]["dataset"])).splits["test"]
    files = [Path(split.reader.describe(key)) for key, _ in split.samples]
    got = torch.stack([loaded.preprocess.load(f) for f in files])
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    results = resnet.predict(loaded, files, top_k=1)
    with torch.no_grad():
        predicted = loaded.model(expected).argmax(1).tolist()
    assert [r["predictions"][0]["index"] for r in results] == predicted


def test_export_commands(tensor_run: Path, tmp_path: Path, capsys) -> None:
    checkpoint = str(tensor_run / "best.pt")
    onnx = tmp_path / "m.onnx"
    assert main(["export", "--checkpoint", checkpoint, "--format", "onnx", "--output", str(onnx), "--dynamic-batch",
                 "--fuse-bn"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert onnx.is_file() and "onnxruntime: max abs difference" in out and "(0 left)" in out
    assert main(["export", "--checkpoint", checkpoint, "--format", "torchscript", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert Path(result["path"]) == tensor_run / "best.torchscript.pt" and result["max_abs_diff"] < 1e-4
    assert main(["export", "--checkpoint", checkpoint, "--format", "safetensors"]) == 0
    _model, classes = resnet.load_model(tensor_run / "best.safetensors")
    assert classes == list(CLASSES)
    # resnet8 has no torchvision counterpart: one clear line, exit 2
    assert main(["export", "--checkpoint", checkpoint, "--format", "torchvision"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no torchvision counterpart" in err


def test_checkpoint_without_meta_gets_a_clear_message(tensor_run: Path, tmp_path: Path, capsys) -> None:
    from resnet.runs.checkpoint import load_checkpoint, save_atomic

    payload = load_checkpoint(tensor_run / "last.pt")
    payload.pop("meta")
    payload.pop("format_version", None)
    save_atomic(payload, tmp_path / "old.pt")
    assert main(["eval", "--checkpoint", str(tmp_path / "old.pt")]) == 2
    assert "written by an older version" in capsys.readouterr().err


@pytest.mark.parametrize("views", ["center", "10crop", "multiscale"])
def test_eval_fast_path_scores_like_the_plain_model(
    views: str, tensor_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """`resnet eval` runs BN folded, ONNX Runtime for fp32 on the CPU (`--backend auto`) or channels-last eager:
    the same top-1/top-5 and loss as --no-fast, the model as trained."""
    plain = eval_json(tensor_run, tmp_path, "--views", views, "--no-fast")
    assert plain["inference_choices"]["plain"] and plain["inference_choices"]["folded_batchnorms"] == 0
    auto = eval_json(tensor_run, tmp_path, "--views", views)
    eager = eval_json(tensor_run, tmp_path, "--views", views, "--backend", "eager")
    fp32 = auto["inference_choices"]["precision"] == "fp32"
    assert auto["inference_choices"]["backend"] == ("onnxruntime" if fp32 else "eager")
    assert eager["inference_choices"]["channels_last"] and eager["inference_choices"]["backend"] == "eager"
    for fast in (auto, eager):
        choices = fast["inference_choices"]
        assert choices["folded_batchnorms"] == 7 and choices["precision_reason"] and not choices["plain"]
        if fp32:  # a bf16 CPU rounds differently; the predictions are checked elsewhere
            assert (fast["top1_error"], fast["top5_error"]) == (plain["top1_error"], plain["top5_error"])
            assert fast["loss"] == pytest.approx(plain["loss"], rel=1e-4)
    out = capsys.readouterr().out
    assert "inference path: cpu (" in out and "7 BN folded" in out and "plain: the eval-mode model" in out


def test_inference_flag_errors(tensor_run: Path, capsys) -> None:
    checkpoint = str(tensor_run / "last.pt")
    assert main(["eval", "--checkpoint", checkpoint, "--no-fast", "--precision", "bf16"]) == 2
    assert "drop --precision/--backend" in capsys.readouterr().err
    assert main(["predict", "any.jpg", "--checkpoint", checkpoint, "--backend", "onnxruntime", "--precision",
                 "bf16"]) == 2  # fmt: skip
    assert "onnxruntime backend runs fp32 only" in capsys.readouterr().err


@pytest.mark.parametrize("backend", ["auto", "eager"])
def test_predict_fast_path_gives_the_plain_predictions(backend: str, tensor_run: Path, tmp_path: Path, capsys) -> None:
    files = write_inputs(tmp_path / "inputs")[:-1]  # the readable ones
    loaded = resnet.load_model(tensor_run / "last.pt")
    predictor = Predictor(loaded, backend=backend)  # the fast path, prepared once for any number of calls
    assert predictor.choices["folded_batchnorms"] == 7 and not predictor.choices["plain"]
    fast, plain = predictor(files, top_k=3), resnet.predict(loaded, files, top_k=3, fast=False)
    for a, b in zip(fast, plain, strict=True):
        assert [p["index"] for p in a["predictions"]] == [p["index"] for p in b["predictions"]]
        got, want = ([p["probability"] for p in r["predictions"]] for r in (a, b))
        assert got == pytest.approx(want, abs=1e-4 if predictor.choices["precision"] == "fp32" else 2e-2)
    assert main(["predict", str(files[0]), "--checkpoint", str(tensor_run / "last.pt"), "--no-fast"]) == 0
    assert "inference path: cpu (plain" in capsys.readouterr().err
