"""Channels-last (NHWC) CPU inference for the CLIP ResNets, each convolution fused with its BatchNorm,
residual add and ReLU; float32, or bfloat16 as an opt-in.

Jittor hands every CPU convolution to oneDNN in NCHW, and oneDNN computes in NHWC, so each
call reorders its input and its output (~20 % of stage-2 inference at full width), and every
BatchNorm, residual add and ReLU is a further single-threaded pass over memory. Under
``jt.no_grad()`` on the CPU, the CLIP backbone and the RoI layer4 keep their activations
channels-last from their first convolution to their last, and each convolution runs as one
oneDNN call with its BatchNorm (running statistics), residual add and ReLU as post-ops
(:func:`unidetector.ops.onednn.conv_bn_act`).

``UNIDET_INFERENCE_DTYPE=bfloat16`` (or :data:`DTYPE`) runs these layers in bfloat16 on processors
with AMX or AVX-512-BF16 (float32 accumulation, ~1e-2 relative difference from float32; elsewhere
float32 with a printed note); their inputs and outputs stay float32 NCHW.

``apply(module, x)`` evaluates one layer on a (N, H, W, C) tensor: ``nn.Conv2d``, ``nn.BatchNorm``
(running statistics, as in eval mode), ``nn.AvgPool2d`` (kernel = stride, no padding, floor),
``nn.Identity`` and ``nn.Sequential`` of those (a convolution followed by a BatchNorm runs fused).
In training, the layers that are fixed functions — frozen (no parameter takes gradients) and with
running-statistics BatchNorm, such as the official stage 2's stem and layer1 or the synthetic stage 2's whole
C4 backbone — compute exactly what they compute at inference and need no backward graph; on the CPU they take
this path too, in float32 (:func:`fixed`, :func:`fixed_enabled`). Every other layer trains on the ordinary
NCHW path (gradients, batch statistics).
"""
from __future__ import annotations

import os
import sys

import jittor as jt
from jittor import nn

from ...ops import onednn
from .batch_norm import EvalBatchNorm2d
from .pooling import pool_is_blockwise

#: process-wide switch (``UNIDET_CHANNELS_LAST=0`` turns the fast path off, e.g. to compare)
ENABLED = os.environ.get("UNIDET_CHANNELS_LAST", "1") != "0"
#: the dtype of the channels-last layers: "float32" (default) or "bfloat16" (``UNIDET_INFERENCE_DTYPE``)
DTYPE = os.environ.get("UNIDET_INFERENCE_DTYPE", "float32")
_noted = set()


def enabled(module: nn.Module) -> bool:
    """True for inference of ``module`` on the CPU (eval mode, no gradients) with oneDNN ops."""
    return (ENABLED and bool(jt.flags.no_grad) and not jt.flags.use_cuda and not module.is_training()
            and onednn.available())


def fixed_enabled() -> bool:
    """True where the fixed layers of a training forward may take this path (CPU, oneDNN; see :func:`fixed`)."""
    return ENABLED and not jt.flags.use_cuda and onednn.available()


def fixed(*modules: nn.Module) -> bool:
    """True when ``modules`` are a fixed function in training: no parameter takes gradients and every
    BatchNorm uses its running statistics (``EvalBatchNorm2d``)."""
    return all(all(p.is_stop_grad() for p in m.parameters())
               and not any(isinstance(k, nn.BatchNorm) and not isinstance(k, EvalBatchNorm2d) for k in m.modules())
               for m in modules)


def dtype() -> str:
    """The dtype the channels-last layers compute in: :data:`DTYPE`, or float32 (with a note printed
    once) where the processor has no bfloat16 instructions."""
    if DTYPE not in onednn.DTYPES:
        raise ValueError(f"UNIDET_INFERENCE_DTYPE / channels_last.DTYPE must be one of {onednn.DTYPES}, got {DTYPE!r}")
    if DTYPE == "bfloat16" and not onednn.bf16_supported():
        if "bf16" not in _noted:
            _noted.add("bf16")
            print("unidetector: bfloat16 inference asked for, but this processor has no AMX / AVX-512-BF16; "
                  "using float32", file=sys.stderr)
        return "float32"
    return DTYPE


def to_nhwc(x: jt.Var) -> jt.Var:
    """(N, C, H, W) → (N, H, W, C) in :func:`dtype` (a oneDNN reorder)."""
    return onednn.to_channels_last(x, dtype())


def to_nchw(x: jt.Var) -> jt.Var:
    """(N, H, W, C) → (N, C, H, W) float32 (a oneDNN reorder)."""
    return onednn.to_channels_first(x)


def _bn_scale_shift(bn: nn.BatchNorm):
    scale = bn.weight / jt.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm | None, x: jt.Var, residual: jt.Var | None = None,
            relu: bool = False) -> jt.Var:
    """``relu(bn(conv(x)) + residual)`` on channels-last ``x`` in one oneDNN call (``bn`` with its
    running statistics; ``bn``, ``residual`` and the ReLU optional)."""
    if conv.groups != 1:
        raise TypeError("channels_last: grouped convolutions have no channels-last rule")
    scale = shift = None
    if bn is not None:
        scale, shift = _bn_scale_shift(bn)
    if conv.bias is not None:
        shift = conv.bias if bn is None else shift + conv.bias * scale
    return onednn.conv_bn_act(x, conv.weight, conv.stride, conv.padding, conv.dilation, scale, shift, residual, relu)


def apply(module: nn.Module, x: jt.Var) -> jt.Var:
    """``module`` evaluated on a channels-last (N, H, W, C) tensor; returns (N, H', W', C')."""
    if isinstance(module, nn.Conv2d):
        return conv_bn(module, None, x)
    if isinstance(module, nn.BatchNorm):
        scale, shift = _bn_scale_shift(module)
        return (x.float32() * scale + shift).cast(x.dtype)
    if isinstance(module, nn.AvgPool2d):
        if not pool_is_blockwise(module):
            raise TypeError("channels_last.apply: only AvgPool2d with kernel == stride, no padding, floor mode")
        return onednn.block_pool(x, module.layer.kernel_size[0])
    if isinstance(module, nn.Identity):
        return x
    if isinstance(module, nn.Sequential):
        layers = list(module)
        i = 0
        while i < len(layers):
            if (isinstance(layers[i], nn.Conv2d) and i + 1 < len(layers)
                    and isinstance(layers[i + 1], nn.BatchNorm)):
                x = conv_bn(layers[i], layers[i + 1], x)
                i += 2
            else:
                x = apply(layers[i], x)
                i += 1
        return x
    raise TypeError(f"channels_last.apply: no channels-last rule for {type(module).__name__}")
