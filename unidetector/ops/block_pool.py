"""Average pooling over non-overlapping k×k blocks (kernel = stride = k, no padding, floor) of NCHW or
channels-last (NHWC) tensors, forward and backward as OpenMP ``jt.code`` kernels on the CPU
(``kernels/block_pool.cc``): CLIP's anti-aliasing ``AvgPool2d(stride)`` in training. (Channels-last
inference pools in oneDNN, :func:`unidetector.ops.onednn.block_pool`.)

Jittor's reshape + mean (and the broadcast of its backward) run on one CPU thread at ~3 GB/s: 25 ms
of a 400 ms synthetic stage-2 training step. The layer that uses the kernels is
:func:`unidetector.models.layers.block_mean`; on CUDA it keeps Jittor's reshape + mean.
"""
from __future__ import annotations

import jittor as jt

from . import kernel_source

_SOURCE = kernel_source.load("block_pool.cc")


def kernel_code(k: int, channels_last: bool = False) -> dict:
    """``{"forward": KernelCode, "backward": KernelCode}`` for k×k blocks, float32: forward in0 = x (N, C, H, W)
    → out0 (N, C, H // k, W // k); backward in0 = dy (N, C, H // k, W // k) → out0 = dx (N, C, H, W) (the
    output's shape gives H, W). ``channels_last``: (N, H, W, C) tensors."""
    header = kernel_source.header(_SOURCE, {"BLOCK_POOL_K": int(k)})
    if channels_last:
        fwd = "unidet::block_pool_nhwc_forward_cpu(in0_p, in0_shape0, in0_shape1, in0_shape2, in0_shape3, out0_p);"
        bwd = "unidet::block_pool_nhwc_backward_cpu(in0_p, out0_shape0, out0_shape1, out0_shape2, out0_shape3, out0_p);"
    else:
        fwd = ("unidet::block_pool_nchw_forward_cpu(in0_p, (long)in0_shape0 * in0_shape1, in0_shape2, in0_shape3, "
               "out0_p);")
        bwd = ("unidet::block_pool_nchw_backward_cpu(in0_p, (long)out0_shape0 * out0_shape1, out0_shape2, "
               "out0_shape3, out0_p);")
    return {"forward": kernel_source.KernelCode(header, fwd), "backward": kernel_source.KernelCode(header, bwd)}


class _BlockMean(jt.Function):
    def __init__(self, k: int, channels_last: bool):
        self.k, self.channels_last = k, channels_last
        self.code = kernel_code(k, channels_last)

    def execute(self, x):
        self.x_shape = tuple(x.shape)
        n, a, b, c = x.shape  # (N, C, H, W) or (N, H, W, C)
        out = (n, a // self.k, b // self.k, c) if self.channels_last else (n, a, b // self.k, c // self.k)
        return jt.code(out, "float32", [x], **self.code["forward"].kwargs())

    def grad(self, g):
        return jt.code(self.x_shape, "float32", [g.float32()], **self.code["backward"].kwargs())


def block_mean_cpu(x: jt.Var, k: int, channels_last: bool = False) -> jt.Var:
    """Mean over k×k blocks of float32 ``x`` (N, C, H, W), or (N, H, W, C) with ``channels_last``; the
    trailing rows / columns that do not fill a block are dropped (floor). Differentiable; CPU only."""
    if x.ndim != 4 or x.dtype != "float32":
        raise ValueError(f"block_mean_cpu: needs a float32 4-D input, got {x.dtype} {tuple(x.shape)}")
    return _BlockMean(int(k), bool(channels_last))(x)
