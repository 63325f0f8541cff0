"""BatchNorm layers: fixed running statistics (the official CLIP / ImageNet backbones) or batch
statistics with fused CPU kernels (training from scratch, e.g. the synthetic world).

Batch-statistics BatchNorm over an (N, C, H, W) batch, per channel c, with M = N·H·W::

    mean = Σ x / M,   var = Σ x² / M − mean²          (biased, as Jittor's nn.BatchNorm)
    y    = γ (x − mean) / sqrt(var + eps) + β
    dγ   = Σ dy·x̂,   dβ = Σ dy                        (x̂ = (x − mean) / sqrt(var + eps))
    dx   = γ / sqrt(var + eps) · (dy − dβ / M − x̂ · dγ / M)

Jittor's ``nn.BatchNorm`` composes this from generic reduce / broadcast ops that run on one CPU
thread: in training the synthetic stage-2 model spent a third of each iteration in them. Here
the forward and the backward are one ``jt.code`` kernel each, a loop per channel (OpenMP over
channels) with two passes over the data and double accumulators.
"""
from __future__ import annotations

import jittor as jt
from jittor import nn

_FORWARD = r"""
const int N = in0_shape0, C = in0_shape1;
const size_t HW = (size_t)in0_shape2 * in0_shape3;
const double M = (double)N * HW;
#pragma omp parallel for schedule(static)
for (int c = 0; c < C; c++) {{
    double s = 0, ss = 0;
    for (int n = 0; n < N; n++) {{
        const float* x = in0_p + ((size_t)n * C + c) * HW;
        for (size_t i = 0; i < HW; i++) {{ const double v = x[i]; s += v; ss += v * v; }}
    }}
    const double mean = s / M, var = ss / M - mean * mean > 0 ? ss / M - mean * mean : 0;
    const double scale = in1_p[c] / sqrt(var + {eps}), shift = in2_p[c] - mean * scale;
    for (int n = 0; n < N; n++) {{
        const size_t off = ((size_t)n * C + c) * HW;
        for (size_t i = 0; i < HW; i++) out0_p[off + i] = (float)(in0_p[off + i] * scale + shift);
    }}
    out1_p[c] = (float)mean;
    out2_p[c] = (float)var;
}}
"""

# in0 = x, in1 = dy, in2 = mean, in3 = var, in4 = γ  →  out0 = dx, out1 = dγ, out2 = dβ.
# dx = k1·dy + k2·x + k3 with per-channel k1 = γ/σ, k2 = −γ dγ / (σ² M), k3 = −γ dβ / (σ M) − k2·mean.
_BACKWARD = r"""
const int N = in0_shape0, C = in0_shape1;
const size_t HW = (size_t)in0_shape2 * in0_shape3;
const double M = (double)N * HW;
#pragma omp parallel for schedule(static)
for (int c = 0; c < C; c++) {{
    double sdy = 0, sdyx = 0;
    for (int n = 0; n < N; n++) {{
        const size_t off = ((size_t)n * C + c) * HW;
        for (size_t i = 0; i < HW; i++) {{ const double g = in1_p[off + i]; sdy += g; sdyx += g * in0_p[off + i]; }}
    }}
    const double mean = in2_p[c], inv_std = 1.0 / sqrt((double)in3_p[c] + {eps}), gamma = in4_p[c];
    const double dgamma = inv_std * (sdyx - mean * sdy);
    const double k1 = gamma * inv_std, k2 = -gamma * inv_std * inv_std * dgamma / M;
    const double k3 = -gamma * inv_std * sdy / M - k2 * mean;
    for (int n = 0; n < N; n++) {{
        const size_t off = ((size_t)n * C + c) * HW;
        for (size_t i = 0; i < HW; i++) out0_p[off + i] = (float)(k1 * in1_p[off + i] + k2 * in0_p[off + i] + k3);
    }}
    out1_p[c] = (float)dgamma;
    out2_p[c] = (float)sdy;
}}
"""


class _BatchNormTrain(jt.Function):
    """y = BN(x; batch statistics, γ, β) for (N, C, H, W) float32; ``self.mean`` / ``self.var``
    (C,) hold the batch statistics after the call."""

    def __init__(self, eps: float):
        self.eps = float(eps)

    def execute(self, x, weight, bias):
        x = x.float32()
        self.x = x
        self.y, self.mean, self.var = jt.code(
            [x.shape, weight.shape, weight.shape], ["float32"] * 3, [x, weight.float32(), bias.float32()],
            cpu_src=_FORWARD.format(eps=repr(self.eps)))
        self.weight = weight
        return self.y

    def grad(self, grad_y):
        dx, dweight, dbias = jt.code(
            [self.x.shape, self.weight.shape, self.weight.shape], ["float32"] * 3,
            [self.x, grad_y.float32(), self.mean, self.var, self.weight.float32()],
            cpu_src=_BACKWARD.format(eps=repr(self.eps)))
        return dx, dweight, dbias


class BatchNorm2d(nn.BatchNorm):
    """``nn.BatchNorm2d`` (same parameters, running-statistics update and eval behaviour) whose
    training step on the CPU runs the fused kernels above. On CUDA, under MPI (statistics
    all-reduced across processes), for non-4-D inputs or without affine parameters it is
    Jittor's own ``nn.BatchNorm``."""

    def execute(self, x):
        if (not self.is_train or jt.flags.use_cuda or (self.sync and jt.in_mpi) or x.ndim != 4
                or not isinstance(self.weight, jt.Var)):
            return super().execute(x)
        fn = _BatchNormTrain(self.eps)
        y = fn(x, self.weight, self.bias)
        mean, var = fn.mean.detach(), fn.var.detach()
        self.running_mean.update(self.running_mean + (mean - self.running_mean) * self.momentum)
        self.running_var.update(self.running_var + (var - self.running_var) * self.momentum)
        return y


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
    bn = EvalBatchNorm2d(channels) if eval_mode else BatchNorm2d(channels)
    if not requires_grad:
        for p in bn.parameters():
            p.stop_grad()
    return bn
