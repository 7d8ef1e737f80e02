"""Synchronised batch normalisation that works on every device, the CPU (gloo) included.

``torch.nn.SyncBatchNorm`` only runs on GPUs; this is the same computation in plain tensor ops plus two
all-reduces (statistics forward, gradient sums backward), so that ``--sync-bn`` behaves identically on a CPU
cluster and in the CPU tests. On CUDA the trainer uses PyTorch's fused kernels instead (see ``distributed.py``).
Statistics are summed in float64 so that N ranks x B images match one process x N*B images to rounding.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn


def _reduce_dims(x: Tensor) -> list[int]:
    return [0, *range(2, x.dim())]


def _channel_view(t: Tensor, x: Tensor) -> Tensor:
    return t.view(1, -1, *([1] * (x.dim() - 2)))


class _SyncBatchNorm(torch.autograd.Function):
    """Forward: global mean/var from all-reduced sums. Backward: the BN input gradient with global sums."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor, eps: float) -> tuple[Tensor, Tensor, Tensor]:
        dims, channels = _reduce_dims(x), x.shape[1]
        count = torch.tensor([x.numel() // channels], dtype=torch.float64, device=x.device)
        stats = torch.cat([x.sum(dims, dtype=torch.float64), x.double().square().sum(dims), count])
        dist.all_reduce(stats)
        total = stats[-1]
        mean = stats[:channels] / total
        var = (stats[channels : 2 * channels] / total - mean.square()).clamp_min(0)
        invstd = (var + eps).rsqrt()
        xhat = (x - _channel_view(mean.to(x.dtype), x)) * _channel_view(invstd.to(x.dtype), x)
        out = xhat * _channel_view(weight, x) + _channel_view(bias, x)
        ctx.save_for_backward(xhat, weight, invstd.to(x.dtype), total)
        unbiased = var * total / (total - 1).clamp_min(1)
        ctx.mark_non_differentiable(mean, unbiased)
        return out, mean.to(x.dtype), unbiased.to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor, *_: Tensor) -> tuple[Tensor, Tensor, Tensor, None]:
        xhat, weight, invstd, total = ctx.saved_tensors
        dims, channels = _reduce_dims(grad_out), grad_out.shape[1]
        grad_bias = grad_out.sum(dims)
        grad_weight = (grad_out * xhat).sum(dims)
        # Local parameter gradients (DDP averages them); the input gradient needs the sums of every rank.
        sums = torch.cat([grad_bias, grad_weight]).double()
        dist.all_reduce(sums)
        mean_dy = (sums[:channels] / total).to(grad_out.dtype)
        mean_dy_xhat = (sums[channels:] / total).to(grad_out.dtype)
        grad_in = (grad_out - _channel_view(mean_dy, grad_out) - xhat * _channel_view(mean_dy_xhat, grad_out)) * (
            _channel_view(invstd * weight, grad_out)
        )
        return grad_in, grad_weight, grad_bias, None


class PortableSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose training statistics span every rank; plain batch norm in eval mode or alone.

    The state dict is that of ``nn.BatchNorm2d``, so checkpoints load into the ordinary model.
    """

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: Tensor) -> Tensor:
        synced = self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        if not synced or not self.affine or not self.track_running_stats:
            return super().forward(input)
        out, mean, var = _SyncBatchNorm.apply(input, self.weight, self.bias, self.eps)
        assert self.num_batches_tracked is not None and self.running_mean is not None  # track_running_stats
        assert self.running_var is not None
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
            # under bf16 autocast the batch statistics may be bf16; the running ones stay in their own dtype
            self.running_mean.lerp_(mean.to(self.running_mean.dtype), momentum)
            self.running_var.lerp_(var.to(self.running_var.dtype), momentum)
        return out


def convert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every batch-norm layer by :class:`PortableSyncBatchNorm`, sharing its parameters and buffers."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, PortableSyncBatchNorm):
        converted = PortableSyncBatchNorm(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        )
        if module.affine:
            converted.weight, converted.bias = module.weight, module.bias
        if module.track_running_stats:
            converted.running_mean, converted.running_var = module.running_mean, module.running_var
            converted.num_batches_tracked = module.num_batches_tracked
        converted.train(module.training)
        return converted
    for name, child in module.named_children():
        module.add_module(name, convert_sync_batchnorm(child))
    return module
