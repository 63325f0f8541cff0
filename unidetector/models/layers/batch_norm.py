"""BatchNorm layers: fixed running statistics (the official CLIP / ImageNet backbones) or batch
statistics (training from scratch, e.g. the synthetic world); on the CPU both run the fused kernels
of :mod:`unidetector.ops.batch_norm`.
"""
from __future__ import annotations

import jittor as jt
from jittor import nn

from ...ops.batch_norm import batch_norm_train, channel_affine


def running_scale_shift(bn: nn.BatchNorm):
    """``(scale, shift)`` (C,) with ``bn(x) = x * scale + shift`` under the running statistics (eval mode)."""
    scale = bn.weight / jt.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


class BatchNorm2d(nn.BatchNorm):
    """``nn.BatchNorm2d`` (same parameters, running-statistics update and eval behaviour) whose
    training step on the CPU runs the fused kernels of :func:`~unidetector.ops.batch_norm.batch_norm_train`.
    On CUDA, under MPI (statistics all-reduced across processes), for non-4-D inputs or without
    affine parameters it is Jittor's own ``nn.BatchNorm``."""

    def execute(self, x):
        if (not self.is_train or jt.flags.use_cuda or (self.sync and jt.in_mpi) or x.ndim != 4
                or not isinstance(self.weight, jt.Var)):
            return super().execute(x)
        return self._train(x, channels_last=False)

    def _train(self, x, channels_last: bool):
        y, mean, var = batch_norm_train(x, self.weight, self.bias, self.eps, channels_last)
        self.running_mean.update(self.running_mean + (mean - self.running_mean) * self.momentum)
        self.running_var.update(self.running_var + (var - self.running_var) * self.momentum)
        return y

    def channels_last(self, x):
        """This layer on float32 channels-last ``x`` (N, H, W, C) on the CPU: batch statistics (and the running
        statistics' update) in training, the running statistics otherwise; differentiable."""
        if self.is_train:
            return self._train(x, channels_last=True)
        return channel_affine(x, *running_scale_shift(self), channels_last=True)


class EvalBatchNorm2d(nn.BatchNorm):
    """``nn.BatchNorm2d`` fixed in eval mode: running statistics, never updated.

    The official CLIP backbones put every BatchNorm in eval mode inside ``train()``
    (``CLIPResNet.train``, ``CLIPResLayer.train``), while γ/β stay trainable. Jittor's
    ``Module.train()`` sets ``is_train`` on every sub-module directly, so an overridden
    ``train()`` on a child is never called; this class makes the behaviour independent
    of the mode instead. Parameter names are those of ``nn.BatchNorm2d``
    (``weight``, ``bias``, ``running_mean``, ``running_var``).
    """

    def execute(self, x):
        w, b = running_scale_shift(self)
        if x.ndim == 4 and x.dtype == "float32" and not jt.flags.use_cuda:
            return channel_affine(x, w, b)  # OpenMP kernels (forward and gradients)
        dims = [0] + list(range(2, x.ndim))
        return x * w.broadcast(x, dims) + b.broadcast(x, dims)

    def channels_last(self, x):
        """This layer on float32 channels-last ``x`` (N, H, W, C) on the CPU, differentiable."""
        return channel_affine(x, *running_scale_shift(self), channels_last=True)


def make_norm(channels: int, eval_mode: bool = True, requires_grad: bool = True) -> nn.Module:
    """BatchNorm2d: fixed running statistics (``eval_mode``) or the usual batch statistics;
    ``requires_grad=False`` also freezes γ/β."""
    bn = EvalBatchNorm2d(channels) if eval_mode else BatchNorm2d(channels)
    if not requires_grad:
        for p in bn.parameters():
            p.stop_grad()
    return bn
