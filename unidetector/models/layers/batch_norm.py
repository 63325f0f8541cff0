"""BatchNorm that always normalises with its running statistics."""
from __future__ import annotations

import jittor as jt
from jittor import nn


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
        dims = [0] + list(range(2, x.ndim))
        w = self.weight / jt.sqrt(self.running_var + self.eps)
        b = self.bias - self.running_mean * w
        return x * w.broadcast(x, dims) + b.broadcast(x, dims)


def make_norm(channels: int, eval_mode: bool = True, requires_grad: bool = True) -> nn.Module:
    """BatchNorm2d: fixed running statistics (``eval_mode``) or the usual batch statistics;
    ``requires_grad=False`` also freezes γ/β."""
    bn = EvalBatchNorm2d(channels) if eval_mode else nn.BatchNorm(channels)
    if not requires_grad:
        for p in bn.parameters():
            p.stop_grad()
    return bn
