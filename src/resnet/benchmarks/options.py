"""The benchmark runner's options, without torch: `resnet benchmark --help` must not pay torch's import."""

from __future__ import annotations

import argparse

from resnet.config.parse import positive_float, positive_int

SECTIONS: dict[int, str] = {
    1: "ResNet-20 end-to-end training on cifar10-jpeg: `resnet train` vs the common torchvision recipe",
    2: "one training step on a synthetic batch (resnet20, resnet56, resnet18 at 224): ours vs eager fp32 NCHW",
    3: "ResNet-50 inference, batch 32, 224x224: prepare_for_inference vs torchvision eager fp32 NCHW",
    4: "the data pipelines, and the CIFAR pipeline against the model's consumption rate",
    5: "cost against depth: images/s and memory of one step, ResNet-20 -> ResNet-1202",
    6: "GPU (only with CUDA): ResNet-50 training images/s with MFU; CIFAR ResNet-20 time to 91% test accuracy",
}
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")  # torch.compile's


def sections(text: str) -> tuple[int, ...]:
    """``--only 1,3``: known section numbers, in the order given, each once."""
    chosen: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if not part.isdigit() or int(part) not in SECTIONS:
            known = ", ".join(str(n) for n in SECTIONS)
            raise argparse.ArgumentTypeError(f"unknown section {part!r}; the sections are {known}")
        if int(part) not in chosen:
            chosen.append(int(part))
    if not chosen:
        raise argparse.ArgumentTypeError("no section given; e.g. --only 1,3")
    return tuple(chosen)


def compile_modes(text: str) -> tuple[str, ...]:
    modes = tuple(mode.strip() for mode in text.split(",") if mode.strip())
    unknown = [mode for mode in modes if mode not in COMPILE_MODES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown torch.compile mode {unknown[0]!r}; use {', '.join(COMPILE_MODES)}")
    return modes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="fewer, shorter blocks (a few minutes on 2 cores)")
    parser.add_argument(
        "--data-dir", help="folder holding cifar10-jpeg/ and fashion-mnist/ (default: $RESNET_DATA, the cache)"
    )
    parser.add_argument(
        "--only",
        type=sections,
        metavar="N[,N...]",
        help="the sections to run, e.g. 1,3 (default: all; 1 and 6's CIFAR part are skipped without cifar10-jpeg)",
    )
    parser.add_argument(
        "--threads", type=positive_int, help="torch intra-op threads (default: every core this process may use)"
    )
    group = parser.add_argument_group("section 6 (GPU)")
    group.add_argument("--gpu-device", default="cuda", help="the device of section 6 (default: cuda)")
    group.add_argument(
        "--gpu-budget", type=positive_float, default=420.0, help="seconds for all of section 6 (default 420)"
    )
    group.add_argument(
        "--gpu-peak-tflops", type=positive_float, help="the card's dense bf16 peak for MFU (default: by name)"
    )
    group.add_argument("--gpu-target", type=positive_float, default=91.0, help="CIFAR test accuracy to reach, %% (91)")
    group.add_argument("--gpu-epochs", type=positive_int, default=40, help="CIFAR epochs of each side's schedule (40)")
    group.add_argument(
        "--gpu-compile-modes",
        type=compile_modes,
        default=("default", "reduce-overhead"),
        help="torch.compile modes for ResNet-50, comma-separated (max-autotune-no-cudagraphs takes minutes)",
    )


def sections_help() -> str:
    return "sections (numbered as in docs/performance.md):\n" + "\n".join(
        f"  {number}. {text}" for number, text in SECTIONS.items()
    )
