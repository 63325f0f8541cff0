"""Channels-last (NHWC) 2-D convolution on the CPU, through Jittor's oneDNN ops.

Jittor hands every CPU convolution to oneDNN in NCHW, and oneDNN computes in NHWC, so each call
reorders its input and its output. :func:`conv2d_nhwc` calls the same oneDNN convolution on a
(N, H, W, C) tensor and returns one, without the reorders (the same results). The layer rules
that keep a whole CLIP ResNet channels-last are in :mod:`unidetector.models.layers.channels_last`.
"""
from __future__ import annotations

from typing import Sequence

import jittor as jt


def available() -> bool:
    """True when Jittor was built with its oneDNN ops (``jt.compile_extern.mkl_ops``)."""
    return getattr(jt.compile_extern, "mkl_ops", None) is not None


def conv2d_nhwc(x: jt.Var, weight: jt.Var, bias: jt.Var | None = None, stride: Sequence[int] = (1, 1),
                padding: Sequence[int] = (0, 0), dilation: Sequence[int] = (1, 1), groups: int = 1) -> jt.Var:
    """``nn.Conv2d`` on channels-last data: x (N, H, W, C_in), weight (C_out, C_in / groups, kh, kw)
    as in ``nn.Conv2d``, bias (C_out,) or None → (N, H', W', C_out). Needs :func:`available`."""
    if not available():
        raise RuntimeError("conv2d_nhwc: this Jittor has no oneDNN ops (jt.compile_extern.mkl_ops)")
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    y = jt.compile_extern.mkl_ops.mkl_conv(x, weight, sh, sw, ph, pw, dh, dw, groups, "acdb", "oihw", "acdb")
    return y if bias is None else y + bias
