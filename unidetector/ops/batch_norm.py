"""BatchNorm of (N, C, H, W) or channels-last (N, H, W, C) float32 on the CPU, as fused ``jt.code`` kernels: with
batch statistics (training), and with frozen statistics as a per-channel affine (:func:`channel_affine`).

Jittor's ``nn.BatchNorm`` composes it from generic reduce / broadcast ops that run on one CPU
thread: in training the synthetic stage-2 model spent a third of each iteration in them. Here
the forward and the backward are one kernel each (``kernels/batch_norm.cc``, where the formulas
are written out): a loop per channel, OpenMP over channels, double accumulators. The layer that
uses them is :class:`unidetector.models.layers.BatchNorm2d`.

A BatchNorm with frozen (running) statistics but trainable γ/β (the official CLIP and ImageNet
backbones, :class:`unidetector.models.layers.EvalBatchNorm2d`) is ``x * scale + shift`` per channel;
as Jittor broadcasts its forward and reduces its backward on one thread, :func:`channel_affine` runs
both as OpenMP kernels too.
"""
from __future__ import annotations

import jittor as jt

from . import kernel_source

_SOURCE = kernel_source.load("batch_norm.cc")


def _sizes(channels_last: bool) -> str:
    """The kernels' size arguments for in0 = x: ``N, C, HW`` of (N, C, H, W), or ``M, C`` of channels-last
    (N, H, W, C) seen as M = N·H·W rows."""
    if channels_last:
        return "(size_t)in0_shape0 * in0_shape1 * in0_shape2, in0_shape3"
    return "in0_shape0, in0_shape1, (size_t)in0_shape2 * in0_shape3"


def kernel_code(eps: float, channels_last: bool = False) -> dict:
    """``jt.code`` sources of the forward and the backward kernel, ``{"forward": KernelCode, "backward": ...}``.

    forward: in0 = x (N, C, H, W), in1 = γ (C,), in2 = β (C,) → out0 = y, out1 = mean (C,), out2 = var (C,).
    backward: in0 = x, in1 = dy, in2 = mean, in3 = var, in4 = γ → out0 = dx, out1 = dγ, out2 = dβ.
    ``channels_last``: x, y, dy, dx are (N, H, W, C).
    """
    header = kernel_source.header(_SOURCE, {"BATCH_NORM_EPS": repr(float(eps))})
    layout, sizes = ("_nhwc" if channels_last else ""), _sizes(channels_last)
    return {
        "forward": kernel_source.KernelCode(
            header, f"unidet::batch_norm{layout}_forward_cpu(in0_p, in1_p, in2_p, {sizes}, out0_p, out1_p, out2_p);"),
        "backward": kernel_source.KernelCode(
            header, f"unidet::batch_norm{layout}_backward_cpu(in0_p, in1_p, in2_p, in3_p, in4_p, {sizes}, "
                    "out0_p, out1_p, out2_p);"),
    }


def affine_kernel_code(channels_last: bool = False) -> dict:
    """``jt.code`` sources of :func:`channel_affine`: forward in0 = x (N, C, H, W), in1 = scale, in2 = shift (C,)
    → out0 = y; backward in0 = x, in1 = dy, in2 = scale → out0 = dx, out1 = dscale, out2 = dshift;
    ``channels_last``: x, y, dy, dx are (N, H, W, C)."""
    header = kernel_source.header(_SOURCE)
    layout, sizes = ("_nhwc" if channels_last else ""), _sizes(channels_last)
    return {
        "forward": kernel_source.KernelCode(
            header, f"unidet::channel_affine{layout}_forward_cpu(in0_p, in1_p, in2_p, {sizes}, out0_p);"),
        "backward": kernel_source.KernelCode(
            header, f"unidet::channel_affine{layout}_backward_cpu(in0_p, in1_p, in2_p, {sizes}, out0_p, out1_p, "
                    "out2_p);"),
    }


_AFFINE_CODE = {layout: affine_kernel_code(layout) for layout in (False, True)}


class _ChannelAffine(jt.Function):
    def __init__(self, channels_last: bool):
        self.code = _AFFINE_CODE[channels_last]

    def execute(self, x, scale, shift):
        self.x, self.scale = x, scale
        return jt.code(x.shape, "float32", [x, scale, shift], **self.code["forward"].kwargs())

    def grad(self, g):
        return jt.code([self.x.shape, self.scale.shape, self.scale.shape], ["float32"] * 3,
                       [self.x, g.float32(), self.scale], **self.code["backward"].kwargs())


def channel_affine(x: jt.Var, scale: jt.Var, shift: jt.Var, channels_last: bool = False) -> jt.Var:
    """``x * scale + shift`` per channel of float32 ``x`` (N, C, H, W), or (N, H, W, C) with ``channels_last``;
    scale / shift (C,); differentiable w.r.t. all three. CPU kernels (:func:`affine_kernel_code`)."""
    if x.ndim != 4 or x.dtype != "float32":
        raise ValueError(f"channel_affine: needs a float32 4-D input, got {x.dtype} {tuple(x.shape)}")
    return _ChannelAffine(bool(channels_last))(x, scale.float32(), shift.float32())


class _BatchNormTrain(jt.Function):
    """y = BN(x; batch statistics, γ, β) for (N, C, H, W) or channels-last (N, H, W, C) float32; ``self.mean`` /
    ``self.var`` (C,) hold the batch statistics after the call."""

    def __init__(self, eps: float, channels_last: bool):
        self.code = kernel_code(eps, channels_last)

    def execute(self, x, weight, bias):
        x = x.float32()
        self.x = x
        self.y, self.mean, self.var = jt.code(
            [x.shape, weight.shape, weight.shape], ["float32"] * 3, [x, weight.float32(), bias.float32()],
            **self.code["forward"].kwargs())
        self.weight = weight
        return self.y

    def grad(self, grad_y):
        dx, dweight, dbias = jt.code(
            [self.x.shape, self.weight.shape, self.weight.shape], ["float32"] * 3,
            [self.x, grad_y.float32(), self.mean, self.var, self.weight.float32()],
            **self.code["backward"].kwargs())
        return dx, dweight, dbias


def batch_norm_train(x: jt.Var, weight: jt.Var, bias: jt.Var, eps: float, channels_last: bool = False):
    """Batch-statistics BatchNorm of ``x`` (N, C, H, W), or (N, H, W, C) with ``channels_last``, with
    γ = ``weight``, β = ``bias`` (C,).

    Returns ``(y, mean, var)``: ``y`` of x's shape, float32, differentiable w.r.t. ``x``, γ and β;
    the batch ``mean`` and biased ``var`` (C,), detached (for the running statistics).
    """
    fn = _BatchNormTrain(eps, bool(channels_last))
    y = fn(x, weight, bias)
    return y, fn.mean.detach(), fn.var.detach()
