"""Average pooling over non-overlapping k×k blocks: CLIP's anti-aliasing ``AvgPool2d(stride)``."""
from __future__ import annotations

import jittor as jt
from jittor import nn

from ...ops.block_pool import block_mean_cpu


def block_mean(x: jt.Var, k: int, channels_last: bool = False) -> jt.Var:
    """Mean over k×k blocks (kernel = stride = k, no padding, floor) of (N, C, H, W), or of
    (N, H, W, C) with ``channels_last``, equal to ``nn.AvgPool2d(k)``, differentiable. float32 on the
    CPU: the OpenMP kernels of :mod:`unidetector.ops.block_pool`; otherwise a reshape and a mean
    (2–3× faster than Jittor's reindexing pool in forward + backward)."""
    if not jt.flags.use_cuda and x.dtype == "float32":
        return block_mean_cpu(x, k, channels_last)
    h_axis = 1 if channels_last else 2
    h, w = x.shape[h_axis] // k, x.shape[h_axis + 1] // k
    if x.shape[h_axis] != h * k or x.shape[h_axis + 1] != w * k:
        x = x[:, :h * k, :w * k] if channels_last else x[:, :, :h * k, :w * k]
    if channels_last:
        return x.reshape(x.shape[0], h, k, w, k, x.shape[3]).mean(dims=(2, 4))
    return x.reshape(x.shape[0], x.shape[1], h, k, w, k).mean(dims=(3, 5))


def pool_is_blockwise(pool: nn.AvgPool2d) -> bool:
    """True if ``pool`` averages non-overlapping blocks (kernel = stride, no padding, floor)."""
    layer = pool.layer
    return (layer.kernel_size[0] == layer.kernel_size[1] and tuple(layer.kernel_size) == tuple(layer.stride)
            and not any(layer.padding) and not layer.ceil_mode)


class BlockAvgPool2d(nn.AvgPool2d):
    """``nn.AvgPool2d(k)`` (kernel = stride = k) computed by :func:`block_mean`."""

    def __init__(self, k: int):
        super().__init__(k)
        self.k = int(k)

    def execute(self, x):
        return block_mean(x, self.k)
