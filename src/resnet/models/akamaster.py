"""Checkpoints of akamaster/pytorch_resnet_cifar10, the most used CIFAR-10 ResNets, converted to our layout.

Those files (``resnet20-12fca82f.th`` ... ``resnet1202-f3b1deed.th``, in that repository's ``pretrained_models/``)
are ``torch.save({"state_dict": {"module.conv1.weight": ...}, "best_prec1": ...})`` of a DataParallel-wrapped
net equal to our option-A CIFAR ResNet up to names and one channel permutation: their option-A shortcut pads
``planes // 4`` zero channels on *both* sides of the identity (which sits in channels 8-23 of 32 and 16-47 of 64),
ours appends the zeros after it (as fb.resnet.torch does). Permuting every residual-stream tensor of stages 2 and 3
and the classifier's inputs makes the two compute the same function, in eval and in train mode.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from resnet.errors import CheckpointError

SOURCE = "akamaster/pytorch_resnet_cifar10"
# Their trainer.py: CIFAR-10, ToTensor then ImageNet's mean/std; no resize or crop at test time.
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
BN_TENSORS = ("weight", "bias", "running_mean", "running_var")
_BLOCK_KEY = re.compile(r"^layer(\d)\.(\d+)\.")


def is_akamaster(state: Mapping[str, Tensor]) -> bool:
    """Whether a state dict (wrapper prefixes stripped) has akamaster's layout: a ``linear`` classifier on three
    stages of basic blocks (``layer1.0.conv1`` ... ``layer3``), and no ``fc`` or ``layer4``."""
    keys = set(state)
    return (
        {"linear.weight", "conv1.weight", "layer1.0.conv1.weight", "layer3.0.conv2.weight"} <= keys
        and "fc.weight" not in keys
        and not any(k.startswith("layer4.") for k in keys)
    )


def blocks_per_stage(state: Mapping[str, Tensor]) -> tuple[int, int, int]:
    """How many blocks each of the three stages holds (their depth is 6n+2 with n blocks per stage)."""
    counts = [0, 0, 0]
    for key in state:
        match = _BLOCK_KEY.match(key)
        if match and 1 <= int(match.group(1)) <= 3:
            stage, block = int(match.group(1)) - 1, int(match.group(2))
            counts[stage] = max(counts[stage], block + 1)
    return counts[0], counts[1], counts[2]


def model_name(state: Mapping[str, Tensor]) -> str:
    """``resnet{6n+2}``, the name of our net with the same architecture."""
    counts = blocks_per_stage(state)
    if len(set(counts)) != 1:
        raise CheckpointError(f"this {SOURCE} checkpoint has stages of {counts} blocks; ours have equal stages")
    return f"resnet{6 * counts[0] + 2}"


def _stage_permutations(state: Mapping[str, Tensor]) -> list[Tensor]:
    """For each stage, ``perm`` with our channel k = their channel ``perm[k]`` of the residual stream."""
    perms = [torch.arange(state["layer1.0.conv2.weight"].shape[0])]
    for stage in (2, 3):
        previous = perms[-1]
        c_out = state[f"layer{stage}.0.conv2.weight"].shape[0]
        pad = c_out // 4  # their F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4))
        if len(previous) + 2 * pad != c_out:
            raise CheckpointError(
                f"this {SOURCE} checkpoint pads {len(previous)} to {c_out} channels in layer{stage}, which is not "
                "their option A (planes // 4 zeros on each side); it cannot be converted"
            )
        identity = previous + pad
        rest = torch.tensor(sorted(set(range(c_out)) - set(identity.tolist())), dtype=torch.long)
        perms.append(torch.cat([identity, rest]))
    return perms


def convert(state: Mapping[str, Tensor], extras: Mapping[str, Any] | None = None) -> tuple[dict[str, Tensor], str]:
    """Their state dict (wrapper prefixes stripped) in our layout, and one line saying what was converted.

    ``linear.*`` becomes ``fc.*``; option-B files (``shortcut.0/1``, not in their releases) get ``downsample``
    and need no permutation; option-A files get the channels of layer2, layer3 and fc permuted.
    """
    name = model_name(state)
    out = {re.sub(r"^linear\.", "fc.", k).replace(".shortcut.", ".downsample."): v.clone() for k, v in state.items()}
    projections = any(".downsample." in k for k in out)
    prec = (extras or {}).get("best_prec1")
    accuracy = (
        f"; their best_prec1 {float(prec):.2f}% (their training script's best top-1 on the official CIFAR-10 test set)"
        if isinstance(prec, int | float | Tensor)
        else ""
    )
    if projections:
        return out, f"converted an {SOURCE} checkpoint ({name}, option B): keys renamed (linear -> fc){accuracy}"
    n = blocks_per_stage(state)[0]
    perms = _stage_permutations(state)
    for stage in (1, 2, 3):
        perm = perms[stage - 1]
        for block in range(n):
            prefix = f"layer{stage}.{block}."
            into = perms[stage - 2] if block == 0 and stage > 1 else perm  # the block's input stream
            out[prefix + "conv1.weight"] = out[prefix + "conv1.weight"].index_select(1, into)
            out[prefix + "conv2.weight"] = out[prefix + "conv2.weight"].index_select(0, perm)
            for tensor in BN_TENSORS:
                out[prefix + "bn2." + tensor] = out[prefix + "bn2." + tensor].index_select(0, perm)
    out["fc.weight"] = out["fc.weight"].index_select(1, perms[2])
    note = (
        f"converted an {SOURCE} checkpoint ({name}, option A): keys renamed (module.*, linear -> fc), channels of "
        f"layer2, layer3 and fc permuted to our zero-padding order{accuracy}"
    )
    return out, note
