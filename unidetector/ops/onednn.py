"""oneDNN primitives for channels-last CPU computation, as ``jt.code`` kernels (``kernels/onednn.cc``):
for inference a convolution with its frozen BatchNorm, residual add and ReLU fused (:func:`conv_bn_act`) and
block average pooling (:func:`block_pool`), in float32 or bfloat16; for training a differentiable float32
convolution (:func:`conv2d_nhwc`: forward, data and weight gradients; float32, or bfloat16 operands with float32
results as mixed precision); and the layout changes
(:func:`to_channels_last`, :func:`to_channels_first`, with the float32 ↔ bfloat16 conversion; differentiable).

Jittor's ``mkl_conv`` takes NCHW tensors (oneDNN reorders them to NHWC and back in every call) and
runs the convolution alone; the BatchNorm, the residual add and the ReLU then take a pass each over
memory on one thread. Here the tensors are channels-last and those three are oneDNN post-ops on the
convolution's float32 accumulators, before its one store. With bfloat16 activations the weights are
converted in oneDNN's weight reorder and accumulation stays float32: on processors with AMX oneDNN
runs its AMX kernels, 3–4× the float32 convolution throughput measured here. bfloat16 keeps 8 bits of
mantissa, so results differ from float32 by ~1e-2 relative: an opt-in mode
(:mod:`unidetector.models.layers.channels_last`).

The kernels link Jittor's oneDNN (the library of ``jt.compile_extern.mkl_ops``, see
``unidetector/runtime.py``); :func:`available` says whether it is there. :func:`conv_bn_act` and
:func:`block_pool` are not differentiable (inference under ``jt.no_grad()``).
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


def bf16_instructions() -> list:
    """The processor's bfloat16 instructions that oneDNN uses, of ``amx_bf16`` and ``avx512_bf16`` (/proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return []
    return [flag for flag in ("amx_bf16", "avx512_bf16") if flag in flags]


def bf16_supported() -> bool:
    """True when the processor has bfloat16 instructions oneDNN uses (``amx_bf16`` or ``avx512_bf16``)."""
    return bool(bf16_instructions())


def link_flags() -> dict:
    """``compile_options`` of the kernels: compile against and link Jittor's oneDNN (``runtime.ONEDNN_DIR``)."""
    from ..runtime import ONEDNN_DIR

    return {f"FLAGS: -I{ONEDNN_DIR / 'include'} -L{ONEDNN_DIR / 'lib'} -lmkldnn ": 1}


def _macros(dtype: str, affine: bool = False, residual: bool = False, relu: bool = False) -> dict:
    if dtype not in DTYPES:
        raise ValueError(f"onednn: dtype must be one of {DTYPES}, got {dtype!r}")
    return {"CONV_FUSED_BF16": int(dtype == "bfloat16"), "CONV_FUSED_AFFINE": int(affine),
            "CONV_FUSED_RESIDUAL": int(residual), "CONV_FUSED_RELU": int(relu)}


def _geometry(stride, padding, dilation) -> str:
    return ", ".join(str(int(v)) for v in (*stride, *padding, *dilation))


def _conv_shape(x: str, w: str, y: str, geometry: str) -> str:
    """The ``unidet::ConvFusedShape`` C++ expression of a convolution whose input (N, H, W, C), weights
    (O, C, KH, KW) and output (N, OH, OW, O) are the ``jt.code`` arguments named ``x``, ``w`` and ``y``
    (e.g. ``"in0"``, ``"in1"``, ``"out0"``)."""
    return (f"unidet::ConvFusedShape{{(int){x}_shape0, (int){x}_shape1, (int){x}_shape2, (int){x}_shape3, "
            f"(int){w}_shape0, (int){w}_shape2, (int){w}_shape3, {geometry}, (int){y}_shape1, (int){y}_shape2}}")


def conv_kernel_code(dtype: str, affine: bool, residual: bool, relu: bool, stride: Sequence[int],
                     padding: Sequence[int], dilation: Sequence[int] = (1, 1)) -> kernel_source.KernelCode:
    """``jt.code`` sources of :func:`conv_bn_act`: in0 = x (N, H, W, C), in1 = weight (O, C, KH, KW) float32,
    then in2 = scale, in3 = shift (O,) float32 if ``affine``, then the residual (N, OH, OW, O) if ``residual``;
    out0 = y (N, OH, OW, O). x, the residual and y are ``dtype``."""
    shape = _conv_shape("in0", "in1", "out0", _geometry(stride, padding, dilation))
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


def _to_last(x: jt.Var, dtype: str) -> jt.Var:
    n, c, h, w = x.shape
    return _code((n, h, w, c), dtype, [x.float32()], layout_kernel_code(dtype, True))


def _to_first(x: jt.Var) -> jt.Var:
    n, h, w, c = x.shape
    return _code((n, c, h, w), "float32", [x], layout_kernel_code(str(x.dtype), False))


class _ToChannelsLast(jt.Function):
    def __init__(self, dtype: str):
        self.dtype = dtype

    def execute(self, x):
        return _to_last(x, self.dtype)

    def grad(self, g):
        return _to_first(g.float32())


class _ToChannelsFirst(jt.Function):
    def execute(self, x):
        return _to_first(x)

    def grad(self, g):
        return _to_last(g.float32(), "float32")


def to_channels_last(x: jt.Var, dtype: str = "float32") -> jt.Var:
    """(N, C, H, W) → (N, H, W, C) in ``dtype`` (float32 or bfloat16), one multi-threaded pass; differentiable
    (the gradient is float32)."""
    return _ToChannelsLast(dtype)(x)


def to_channels_first(x: jt.Var) -> jt.Var:
    """(N, H, W, C) float32 or bfloat16 → (N, C, H, W) float32, one multi-threaded pass; differentiable."""
    return _ToChannelsFirst()(x)


def _conv_output(x_shape, w_shape, stride, padding, dilation) -> tuple:
    """(N, OH, OW, O) of a convolution of x (N, H, W, C) with weights (O, C, KH, KW)."""
    n, h, w, _ = x_shape
    o, _, kh, kw = w_shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    return n, (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1, o


def conv_bn_act(x: jt.Var, weight: jt.Var, stride: Sequence[int] = (1, 1), padding: Sequence[int] = (0, 0),
                dilation: Sequence[int] = (1, 1), scale: jt.Var | None = None, shift: jt.Var | None = None,
                residual: jt.Var | None = None, relu: bool = False) -> jt.Var:
    """``relu(conv(x, weight) * scale + shift + residual)`` in one oneDNN call, every part but the
    convolution optional: x (N, H, W, C) channels-last, float32 or bfloat16 (the computation's dtype),
    weight (O, C, KH, KW) as ``nn.Conv2d`` (no groups), scale / shift (O,) (e.g. a BatchNorm with its
    running statistics, or shift = the convolution's bias), residual (N, OH, OW, O) → y (N, OH, OW, O)
    of x's dtype."""
    dtype = str(x.dtype)
    c, (o, ci) = x.shape[3], weight.shape[:2]
    if ci != c:
        raise ValueError(f"onednn.conv_bn_act: weight {tuple(weight.shape)} does not fit {c} input channels")
    out = _conv_output(x.shape, weight.shape, stride, padding, dilation)
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


#: bfloat16 weight gradients only where each image's output has at least this many positions: oneDNN's AMX
#: weight-gradient kernel is slower than the float32 one on many small maps (the world-CLIP's 384 RoIs of 4×4:
#: world-CLIP step 0.79× float32 with this rule, 0.94× with bfloat16 everywhere, one session, alternating)
BF16_WEIGHT_GRAD_MIN_AREA = 256


def conv_train_kernel_code(stride: Sequence[int], padding: Sequence[int], dilation: Sequence[int] = (1, 1),
                           compute: str = "float32", weight_grad_compute: str | None = None) -> dict:
    """``jt.code`` sources of :func:`conv2d_nhwc` (float32 tensors): ``forward`` in0 = x (N, H, W, C), in1 = w
    (O, C, KH, KW) → out0 = y (N, OH, OW, O); ``backward_data`` in0 = dy, in1 = w → out0 = dx;
    ``backward_weights`` in0 = x, in1 = dy → out0 = dw. ``compute`` (``weight_grad_compute`` for the weight
    gradient, default the same): the convolutions' operand type; bfloat16 rounds the operands in each call and
    accumulates and returns float32."""
    geometry = _geometry(stride, padding, dilation)
    header = kernel_source.header(_SOURCE, _macros(compute))
    weights_header = header if weight_grad_compute in (None, compute) else \
        kernel_source.header(_SOURCE, _macros(weight_grad_compute))
    calls = {"forward": f"unidet::conv_nhwc_forward_cpu(in0_p, in1_p, {_conv_shape('in0', 'in1', 'out0', geometry)}, "
                        "out0_p);",
             "backward_data": "unidet::conv_nhwc_backward_data_cpu(in0_p, in1_p, "
                              f"{_conv_shape('out0', 'in1', 'in0', geometry)}, out0_p);",
             "backward_weights": "unidet::conv_nhwc_backward_weights_cpu(in0_p, in1_p, "
                                 f"{_conv_shape('in0', 'out0', 'in1', geometry)}, out0_p);"}
    return {name: kernel_source.KernelCode(weights_header if name == "backward_weights" else header, src)
            for name, src in calls.items()}


class _ConvNHWC(jt.Function):
    def __init__(self, stride, padding, dilation, compute):
        self.geometry, self.compute = (stride, padding, dilation), compute

    def execute(self, x, w):
        self.x, self.w = x, w
        out = _conv_output(x.shape, w.shape, *self.geometry)
        weight_grad = self.compute if out[1] * out[2] >= BF16_WEIGHT_GRAD_MIN_AREA else "float32"
        self.code = conv_train_kernel_code(*self.geometry, compute=self.compute, weight_grad_compute=weight_grad)
        return _code(out, "float32", [x, w], self.code["forward"])

    def grad(self, dy):
        dy = dy.float32()
        dx = _code(self.x.shape, "float32", [dy, self.w], self.code["backward_data"])
        dw = _code(self.w.shape, "float32", [self.x, dy], self.code["backward_weights"])
        return dx, dw


def conv2d_nhwc(x: jt.Var, weight: jt.Var, stride: Sequence[int] = (1, 1), padding: Sequence[int] = (0, 0),
                dilation: Sequence[int] = (1, 1), compute: str = "float32") -> jt.Var:
    """``conv(x, weight)`` of channels-last float32 ``x`` (N, H, W, C) with ``weight`` (O, C, KH, KW) as
    ``nn.Conv2d`` stores it (no groups, no bias) → (N, OH, OW, O), differentiable w.r.t. both: the forward and
    both gradients are oneDNN convolutions on the channels-last tensors (training; the inference path with
    fused post-ops is :func:`conv_bn_act`). ``compute="bfloat16"`` (processors with AMX or AVX-512-BF16): the
    three convolutions read bfloat16 copies of their operands (the weight gradient only on maps of at least
    :data:`BF16_WEIGHT_GRAD_MIN_AREA` positions), accumulate in float32 and return float32 (mixed precision
    training; ~3e-3 relative difference from float32 per convolution)."""
    if compute not in DTYPES:
        raise ValueError(f"onednn.conv2d_nhwc: compute must be one of {DTYPES}, got {compute!r}")
    if x.ndim != 4 or weight.ndim != 4 or weight.shape[1] != x.shape[3]:
        raise ValueError(f"onednn.conv2d_nhwc: weight {tuple(weight.shape)} does not fit input {tuple(x.shape)} "
                         "(N, H, W, C)")
    return _ConvNHWC(tuple(stride), tuple(padding), tuple(dilation), compute)(x.float32(), weight.float32())
