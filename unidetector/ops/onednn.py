"""oneDNN primitives for channels-last CPU inference, as ``jt.code`` kernels (``kernels/onednn.cc``):
a convolution with its frozen BatchNorm, residual add and ReLU fused (:func:`conv_bn_act`), block
average pooling (:func:`block_pool`) and the layout changes (:func:`to_channels_last`,
:func:`to_channels_first`, with the float32 ↔ bfloat16 conversion), in float32 or bfloat16.

Jittor's ``mkl_conv`` takes NCHW tensors (oneDNN reorders them to NHWC and back in every call) and
runs the convolution alone; the BatchNorm, the residual add and the ReLU then take a pass each over
memory on one thread. Here the tensors are channels-last and those three are oneDNN post-ops on the
convolution's float32 accumulators, before its one store. With bfloat16 activations the weights are
converted in oneDNN's weight reorder and accumulation stays float32: on processors with AMX oneDNN
runs its AMX kernels, 3–4× the float32 convolution throughput measured here. bfloat16 keeps 8 bits of
mantissa, so results differ from float32 by ~1e-2 relative: an opt-in mode
(:mod:`unidetector.models.layers.channels_last`).

The kernels link Jittor's oneDNN (the library of ``jt.compile_extern.mkl_ops``, see
``unidetector/runtime.py``); :func:`available` says whether it is there. Not differentiable
(inference under ``jt.no_grad()``).
"""
from __future__ import annotations

from typing import Sequence

import jittor as jt

from . import kernel_source

_SOURCE = kernel_source.load("onednn.cc")
DTYPES = ("float32", "bfloat16")


def available() -> bool:
    """True when Jittor was built with its oneDNN ops (``jt.compile_extern.mkl_ops``): the library these
    kernels link."""
    return getattr(jt.compile_extern, "mkl_ops", None) is not None


def bf16_supported() -> bool:
    """True when the processor has bfloat16 instructions oneDNN uses (``amx_bf16`` or ``avx512_bf16``)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def link_flags() -> dict:
    """``compile_options`` of the kernels: compile against and link Jittor's oneDNN (``runtime.ONEDNN_DIR``)."""
    from ..runtime import ONEDNN_DIR

    return {f"FLAGS: -I{ONEDNN_DIR / 'include'} -L{ONEDNN_DIR / 'lib'} -lmkldnn ": 1}


def _macros(dtype: str, affine: bool = False, residual: bool = False, relu: bool = False) -> dict:
    if dtype not in DTYPES:
        raise ValueError(f"onednn: dtype must be one of {DTYPES}, got {dtype!r}")
    return {"CONV_FUSED_BF16": int(dtype == "bfloat16"), "CONV_FUSED_AFFINE": int(affine),
            "CONV_FUSED_RESIDUAL": int(residual), "CONV_FUSED_RELU": int(relu)}


def conv_kernel_code(dtype: str, affine: bool, residual: bool, relu: bool, stride: Sequence[int],
                     padding: Sequence[int], dilation: Sequence[int] = (1, 1)) -> kernel_source.KernelCode:
    """``jt.code`` sources of :func:`conv_bn_act`: in0 = x (N, H, W, C), in1 = weight (O, C, KH, KW) float32,
    then in2 = scale, in3 = shift (O,) float32 if ``affine``, then the residual (N, OH, OW, O) if ``residual``;
    out0 = y (N, OH, OW, O). x, the residual and y are ``dtype``."""
    geometry = ", ".join(str(int(v)) for v in (*stride, *padding, *dilation))
    shape = ("unidet::ConvFusedShape{(int)in0_shape0, (int)in0_shape1, (int)in0_shape2, (int)in0_shape3, "
             f"(int)in1_shape0, (int)in1_shape2, (int)in1_shape3, {geometry}, (int)out0_shape1, (int)out0_shape2}}")
    residual_arg = ("in4_p" if affine else "in2_p") if residual else "nullptr"
    src = (f"unidet::conv_fused_nhwc_cpu(in0_p, in1_p, {'in2_p, in3_p' if affine else 'nullptr, nullptr'}, "
           f"{residual_arg}, {shape}, out0_p);")
    return kernel_source.KernelCode(kernel_source.header(_SOURCE, _macros(dtype, affine, residual, relu)), src)


def pool_kernel_code(dtype: str, k: int) -> kernel_source.KernelCode:
    """``jt.code`` sources of :func:`block_pool`: in0 = x (N, H, W, C) → out0 (N, H // k, W // k, C), ``dtype``."""
    return kernel_source.KernelCode(
        kernel_source.header(_SOURCE, _macros(dtype)),
        f"unidet::block_pool_nhwc_cpu(in0_p, in0_shape0, in0_shape1, in0_shape2, in0_shape3, {int(k)}, out0_p);")


def layout_kernel_code(dtype: str, to_last: bool) -> kernel_source.KernelCode:
    """``jt.code`` sources of :func:`to_channels_last` (``to_last``: in0 = x (N, C, H, W) float32 → out0
    (N, H, W, C) ``dtype``) or :func:`to_channels_first` (in0 = x (N, H, W, C) ``dtype`` → (N, C, H, W) float32)."""
    call = "to_channels_last_cpu" if to_last else "to_channels_first_cpu"
    return kernel_source.KernelCode(kernel_source.header(_SOURCE, _macros(dtype)),
                                    f"unidet::{call}(in0_p, in0_shape0, in0_shape1, in0_shape2, in0_shape3, out0_p);")


def _code(shape, dtype, inputs, code: kernel_source.KernelCode) -> jt.Var:
    if not available():
        raise RuntimeError("onednn: this Jittor has no oneDNN ops (jt.compile_extern.mkl_ops)")
    with jt.flag_scope(compile_options=link_flags()):
        return jt.code(shape, dtype, inputs, **code.kwargs())


def to_channels_last(x: jt.Var, dtype: str = "float32") -> jt.Var:
    """(N, C, H, W) → (N, H, W, C) in ``dtype`` (float32 or bfloat16), one multi-threaded pass."""
    n, c, h, w = x.shape
    return _code((n, h, w, c), dtype, [x.float32()], layout_kernel_code(dtype, True))


def to_channels_first(x: jt.Var) -> jt.Var:
    """(N, H, W, C) float32 or bfloat16 → (N, C, H, W) float32, one multi-threaded pass."""
    n, h, w, c = x.shape
    return _code((n, c, h, w), "float32", [x], layout_kernel_code(str(x.dtype), False))


def conv_bn_act(x: jt.Var, weight: jt.Var, stride: Sequence[int] = (1, 1), padding: Sequence[int] = (0, 0),
                dilation: Sequence[int] = (1, 1), scale: jt.Var | None = None, shift: jt.Var | None = None,
                residual: jt.Var | None = None, relu: bool = False) -> jt.Var:
    """``relu(conv(x, weight) * scale + shift + residual)`` in one oneDNN call, every part but the
    convolution optional: x (N, H, W, C) channels-last, float32 or bfloat16 (the computation's dtype),
    weight (O, C, KH, KW) as ``nn.Conv2d`` (no groups), scale / shift (O,) (e.g. a BatchNorm with its
    running statistics, or shift = the convolution's bias), residual (N, OH, OW, O) → y (N, OH, OW, O)
    of x's dtype."""
    dtype = str(x.dtype)
    n, h, w, c = x.shape
    o, ci, kh, kw = weight.shape
    if ci != c:
        raise ValueError(f"onednn.conv_bn_act: weight {tuple(weight.shape)} does not fit {c} input channels")
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    out = (n, (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1, o)
    affine = scale is not None or shift is not None
    inputs = [x, weight.float32()]
    if affine:
        inputs += [(jt.ones(o) if scale is None else scale).float32(),
                   (jt.zeros(o) if shift is None else shift).float32()]
    if residual is not None:
        if tuple(residual.shape) != out:
            raise ValueError(f"onednn.conv_bn_act: residual {tuple(residual.shape)} is not the output's {out}")
        inputs.append(residual if residual.dtype == dtype else residual.cast(dtype))
    return _code(out, dtype, inputs, conv_kernel_code(dtype, affine, residual is not None, relu, stride, padding,
                                                     dilation))


def block_pool(x: jt.Var, k: int) -> jt.Var:
    """Mean over k×k blocks (kernel = stride = k, floor: rows / columns past the last whole block are
    dropped) of channels-last x (N, H, W, C), float32 or bfloat16."""
    n, h, w, c = x.shape
    return _code((n, h // k, w // k, c), str(x.dtype), [x], pool_kernel_code(str(x.dtype), k))
