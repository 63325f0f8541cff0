"""Channels-last (NHWC) CPU inference for the CLIP ResNets.

Jittor hands every CPU convolution to oneDNN in NCHW, and oneDNN computes in NHWC, so each
call reorders its input and its output: at full width (stage-2 inference, CLIP RN50) those
reorders were ~20 % of the time. Under ``jt.no_grad()`` on the CPU, the CLIP backbone and the
RoI layer4 keep their activations channels-last from their first convolution to their last,
with the same oneDNN convolution primitives (:func:`unidetector.ops.conv_nhwc.conv2d_nhwc`: the
same results, without the reorders).

``apply(module, x)`` evaluates one layer on a (N, H, W, C) tensor: ``nn.Conv2d``,
``nn.BatchNorm`` (running statistics, as in eval mode), ``nn.AvgPool2d`` (kernel = stride,
no padding, floor), ``nn.Identity`` and ``nn.Sequential`` of those. Training always takes
the ordinary NCHW path (gradients, batch statistics).
"""
from __future__ import annotations

import os

import jittor as jt
from jittor import nn

from ...ops.conv_nhwc import available as onednn_available, conv2d_nhwc
from .pooling import block_mean, pool_is_blockwise

#: process-wide switch (``UNIDET_CHANNELS_LAST=0`` turns the fast path off, e.g. to compare)
ENABLED = os.environ.get("UNIDET_CHANNELS_LAST", "1") != "0"


def enabled(module: nn.Module) -> bool:
    """True for inference of ``module`` on the CPU (eval mode, no gradients) with oneDNN ops."""
    return (ENABLED and bool(jt.flags.no_grad) and not jt.flags.use_cuda and not module.is_training()
            and onednn_available())


def to_nhwc(x: jt.Var) -> jt.Var:
    """(N, C, H, W) → (N, H, W, C)."""
    return x.transpose(0, 2, 3, 1)


def to_nchw(x: jt.Var) -> jt.Var:
    """(N, H, W, C) → (N, C, H, W)."""
    return x.transpose(0, 3, 1, 2)


def apply(module: nn.Module, x: jt.Var) -> jt.Var:
    """``module`` evaluated on a channels-last (N, H, W, C) tensor; returns (N, H', W', C')."""
    if isinstance(module, nn.Conv2d):
        return conv2d_nhwc(x, module.weight, module.bias, module.stride, module.padding, module.dilation,
                           module.groups)
    if isinstance(module, nn.BatchNorm):
        scale = module.weight / jt.sqrt(module.running_var + module.eps)
        return x * scale + (module.bias - module.running_mean * scale)
    if isinstance(module, nn.AvgPool2d):
        if not pool_is_blockwise(module):
            raise TypeError("channels_last.apply: only AvgPool2d with kernel == stride, no padding, floor mode")
        return block_mean(x, module.layer.kernel_size[0], channels_last=True)
    if isinstance(module, nn.Identity):
        return x
    if isinstance(module, nn.Sequential):
        for layer in module:
            x = apply(layer, x)
        return x
    raise TypeError(f"channels_last.apply: no channels-last rule for {type(module).__name__}")

