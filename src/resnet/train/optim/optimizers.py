"""Optimizers of the recipes: SGD (the paper's), AdamW, LAMB (ResNet strikes back A1/A2) and RMSprop.

Weight decay can spare norms and biases (``decay_norm_and_bias = false``), as every modern recipe does. LAMB has
no implementation in torch, so it is written here (:class:`Lamb`) after You et al. 2019, in timm's form.
"""

from __future__ import annotations

import random

import numpy as np
import torch
from torch import nn

from resnet.config import Config
from resnet.config.schema import CHOICES
from resnet.errors import ConfigError

_FUSED_DEVICES = ("cpu", "cuda")  # where torch has a fused SGD kernel


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Lamb(torch.optim.Optimizer):
    """LAMB (You et al. 2019, "Large batch optimization for deep learning"): Adam's direction, decoupled weight
    decay, and a per-tensor trust ratio ``||w|| / ||update||`` scaling the step.

    As in timm (``timm.optim.Lamb``, used for "ResNet strikes back"): bias-corrected moments, the trust ratio is 1
    where either norm is zero, and ``grad_averaging`` / ``max_grad_norm`` global clipping are left out (the trainer
    clips with ``optim.grad_clip_norm``). ``trust_clip`` bounds the ratio at 1 (LAMBC).
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.01,
        trust_clip: bool = False,
    ) -> None:
        if lr < 0 or eps < 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ConfigError(f"LAMB needs lr >= 0, eps >= 0 and betas in [0, 1), got {lr}, {eps}, {betas}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, trust_clip=trust_clip))

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad
                state = self.state[param]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(param)
                    state["exp_avg_sq"] = torch.zeros_like(param)
                state["step"] += 1
                step = float(state["step"])
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg.lerp_(grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                denom = (exp_avg_sq / (1 - beta2**step)).sqrt_().add_(group["eps"])
                update = (exp_avg / (1 - beta1**step)).div_(denom)
                if group["weight_decay"]:
                    update.add_(param, alpha=group["weight_decay"])
                w_norm, u_norm = param.norm(), update.norm()
                ratio = torch.where((w_norm > 0) & (u_norm > 0), w_norm / u_norm, torch.ones_like(w_norm))
                if group["trust_clip"]:
                    ratio = ratio.clamp(max=1.0)
                param.add_(update * ratio, alpha=-group["lr"])
        return loss


def sgd_implementation(params: list[nn.Parameter], choice: str = "auto") -> dict[str, bool]:
    """SGD's ``fused``/``foreach`` flags for ``choice``: ``auto`` fuses the update into one kernel per dtype and
    device where torch supports it (CPU and CUDA), one multi-tensor op per group elsewhere, instead of a Python
    loop over ~100 parameters. Every choice computes the same update (tested), up to float rounding."""
    if choice == "for-loop":
        return {"foreach": False}
    if choice == "foreach":
        return {"foreach": True}
    devices = {p.device.type for p in params}
    fusable = devices <= set(_FUSED_DEVICES) and all(p.dtype.is_floating_point for p in params)
    if choice == "fused" or fusable:
        return {"fused": True}
    return {"foreach": True}


def parameter_groups(
    model: nn.Module, weight_decay: float, decay_norm_and_bias: bool, backbone_lr_factor: float = 1.0
) -> list[dict]:
    """Groups by weight decay (none on norm weights and biases unless everything decays) and by ``lr_scale``:
    ``backbone_lr_factor`` for every parameter but the classifier's (fine-tuning), 1 for the classifier."""
    from resnet.train.finetune import is_head

    groups: dict[tuple[bool, float], list[nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        decay = decay_norm_and_bias or parameter.ndim > 1
        scale = 1.0 if is_head(name) else backbone_lr_factor
        groups.setdefault((decay, scale), []).append(parameter)
    return [
        {"params": params, "weight_decay": weight_decay if decay else 0.0, "lr_scale": scale}
        for (decay, scale), params in sorted(groups.items(), key=lambda item: (not item[0][0], -item[0][1]))
    ]


def build_optimizer(model: nn.Module, config: Config, lr: float) -> torch.optim.Optimizer:
    """The optimizer ``optim.name`` names (``--opt``), over :func:`parameter_groups`."""
    optim = config.optim
    groups = parameter_groups(model, optim.weight_decay, optim.decay_norm_and_bias, optim.backbone_lr_factor)
    for group in groups:
        group["lr"] = lr * group["lr_scale"]
    betas = (float(optim.betas[0]), float(optim.betas[1]))
    if optim.name == "sgd":
        params = [p for group in groups for p in group["params"]]
        implementation = sgd_implementation(params, config.system.optimizer_impl)
        return torch.optim.SGD(groups, lr=lr, momentum=optim.momentum, nesterov=optim.nesterov, **implementation)
    if optim.name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=optim.eps)
    if optim.name == "lamb":
        return Lamb(groups, lr=lr, betas=betas, eps=optim.eps)
    if optim.name == "rmsprop":
        # TF-style settings (alpha 0.9) as in torchvision's and timm's RMSprop recipes; eps from optim.eps.
        return torch.optim.RMSprop(groups, lr=lr, alpha=optim.alpha, eps=optim.eps, momentum=optim.momentum)
    raise ConfigError(f"unknown optimizer '{optim.name}'; choose one of {', '.join(CHOICES['optim.name'])} (--opt)")
