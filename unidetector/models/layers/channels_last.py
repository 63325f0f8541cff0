"""Channels-last (NHWC) CPU computation of the ResNets (the CLIP backbone and RoI layer4 of stage 2, the residual
stages of the stage-1 ResNet): inference with each convolution fused with its BatchNorm, residual add and ReLU
(float32, or bfloat16 as an opt-in), and float32 training. Single convolutions outside such a chain (the FPN, the RPN
head) take the same oneDNN call on a channels-last copy (:func:`conv2d`).

Jittor hands every CPU convolution to oneDNN in NCHW, and oneDNN computes in NHWC, so each
call reorders its input and its output (~20 % of stage-2 inference at full width), and every
BatchNorm, residual add and ReLU is a further single-threaded pass over memory. Under
``jt.no_grad()`` on the CPU, these chains of blocks keep their activations
channels-last from their first convolution to their last, and each convolution runs as one
oneDNN call with its BatchNorm (running statistics), residual add and ReLU as post-ops
(:func:`unidetector.ops.onednn.conv_bn_act`).

``UNIDET_INFERENCE_DTYPE=bfloat16`` (or :data:`DTYPE`) runs these layers in bfloat16 on processors
with AMX or AVX-512-BF16 (float32 accumulation, ~1e-2 relative difference from float32; elsewhere
float32 with a printed note); their inputs and outputs stay float32 NCHW. In training, ``--amp`` (or
``UNIDET_TRAIN_DTYPE=bfloat16``, :data:`TRAIN_DTYPE`) gives the training convolutions bfloat16 operands on such
processors, float32 accumulation and results, and runs the fixed blocks below in bfloat16 (mixed precision; weights,
gradients, trained BatchNorms and their activations stay float32).

``apply(module, x)`` evaluates one layer on a (N, H, W, C) tensor: ``nn.Conv2d``, ``nn.BatchNorm``
(running statistics, as in eval mode), ``nn.AvgPool2d`` (kernel = stride, no padding, floor),
``nn.Identity`` and ``nn.Sequential`` of those (a convolution followed by a BatchNorm runs fused).
In training, the layers that are fixed functions — frozen (no parameter takes gradients) and with
running-statistics BatchNorm, such as the official stage 2's stem and layer1 or the synthetic stage 2's whole
C4 backbone — compute exactly what they compute at inference and need no backward graph; on the CPU they take
this path too, in float32, or in bfloat16 with :data:`TRAIN_DTYPE` (:func:`fixed`, :func:`fixed_enabled`).

The layers that train run channels-last too on the CPU (:func:`train_enabled`; ``UNIDET_CHANNELS_LAST_TRAIN=0``
turns it off): each convolution and its two gradients are oneDNN calls on the NHWC tensors
(:func:`unidetector.ops.onednn.conv2d_nhwc`), the BatchNorms (batch or running statistics), ReLUs, residual
adds and block pools are OpenMP kernels over (rows, channels), all differentiable, in float32 (the convolutions'
operands bfloat16 with :data:`TRAIN_DTYPE`), with the results of the NCHW path up to the order of summation.
:data:`INFERENCE` and :data:`TRAINING` are the two sets of layer functions a block is given
(``block(x, layers)``); :func:`run_blocks` picks one for a chain of blocks (the CLIP backbone and RoI layer4, the
stage-1 ResNet's residual stages).
"""
from __future__ import annotations

import contextlib
import os
import sys

import jittor as jt
from jittor import nn

from ...errors import UsageError
from ...ops import onednn
from ...ops.activation import add_relu
from ...ops.activation import relu as relu_
from .batch_norm import BatchNorm2d, EvalBatchNorm2d, running_scale_shift
from .pooling import block_mean, pool_is_blockwise

#: process-wide switch (``UNIDET_CHANNELS_LAST=0`` turns the fast path off, e.g. to compare)
ENABLED = os.environ.get("UNIDET_CHANNELS_LAST", "1") != "0"
#: training through the channels-last layers (``UNIDET_CHANNELS_LAST_TRAIN=0`` turns it off; needs :data:`ENABLED`)
TRAIN_ENABLED = os.environ.get("UNIDET_CHANNELS_LAST_TRAIN", "1") != "0"
#: the dtype of the channels-last layers: "float32" (default) or "bfloat16" (``UNIDET_INFERENCE_DTYPE``)
DTYPE = os.environ.get("UNIDET_INFERENCE_DTYPE", "float32")
#: the operand type of the training convolutions: "float32" (default) or "bfloat16" (``UNIDET_TRAIN_DTYPE``, or
#: ``--amp`` on the CPU through :func:`training_dtype`): mixed precision, float32 accumulation, weights and results
TRAIN_DTYPE = os.environ.get("UNIDET_TRAIN_DTYPE", "float32")
_noted = set()


def enabled(module: nn.Module) -> bool:
    """True for inference of ``module`` on the CPU (eval mode, no gradients) with oneDNN ops."""
    return (ENABLED and bool(jt.flags.no_grad) and not jt.flags.use_cuda and not module.is_training()
            and onednn.available())


def fixed_enabled() -> bool:
    """True where the fixed layers of a training forward may take this path (CPU, oneDNN; see :func:`fixed`)."""
    return ENABLED and not jt.flags.use_cuda and onednn.available()


def train_enabled(*modules: nn.Module) -> bool:
    """True where ``modules`` may train channels-last (:data:`TRAINING`): CPU with oneDNN, gradients on, not under
    MPI (whose BatchNorm synchronises statistics), and every layer with a channels-last training rule (ungrouped
    convolutions, this package's BatchNorms)."""
    return (TRAIN_ENABLED and fixed_enabled() and not jt.flags.no_grad and not jt.in_mpi and bool(modules)
            and all(_trainable_here(k) for m in modules for k in m.modules()))


def _trainable_here(module: nn.Module) -> bool:
    if isinstance(module, nn.Conv2d):
        return module.groups == 1
    if isinstance(module, nn.BatchNorm):
        return isinstance(module, (BatchNorm2d, EvalBatchNorm2d))
    return True


def fixed(*modules: nn.Module) -> bool:
    """True when ``modules`` are a fixed function in training: no parameter takes gradients and every
    BatchNorm uses its running statistics (``EvalBatchNorm2d``)."""
    return all(all(p.is_stop_grad() for p in m.parameters())
               and not any(isinstance(k, nn.BatchNorm) and not isinstance(k, EvalBatchNorm2d) for k in m.modules())
               for m in modules)


def _supported(value: str, name: str, what: str) -> str:
    """``value`` (float32 or bfloat16), or float32 (with a note printed once) where the processor has no bfloat16
    instructions; ``name`` is the setting, for the error."""
    if value not in onednn.DTYPES:
        raise UsageError(f"{name} must be one of {', '.join(onednn.DTYPES)}, got {value!r}")
    if value == "bfloat16" and not onednn.bf16_supported():
        if what not in _noted:
            _noted.add(what)
            print(f"unidetector: bfloat16 {what} asked for, but this processor has no AMX / AVX-512-BF16; "
                  "using float32", file=sys.stderr)
        return "float32"
    return value


def dtype() -> str:
    """The dtype the channels-last layers compute in at inference: :data:`DTYPE`, or float32 (with a note printed
    once) where the processor has no bfloat16 instructions."""
    return _supported(DTYPE, "UNIDET_INFERENCE_DTYPE / channels_last.DTYPE", "inference")


def train_dtype() -> str:
    """The operand type of the channels-last training convolutions: :data:`TRAIN_DTYPE`, or float32 (with a note
    printed once) where the processor has no bfloat16 instructions."""
    return _supported(TRAIN_DTYPE, "UNIDET_TRAIN_DTYPE / channels_last.TRAIN_DTYPE", "training")


@contextlib.contextmanager
def training_dtype(value: str):
    """:data:`TRAIN_DTYPE` = ``value`` inside the block (the trainer's ``--amp`` on the CPU)."""
    global TRAIN_DTYPE
    saved, TRAIN_DTYPE = TRAIN_DTYPE, value
    try:
        yield
    finally:
        TRAIN_DTYPE = saved


def to_nhwc(x: jt.Var) -> jt.Var:
    """(N, C, H, W) → (N, H, W, C) in :func:`dtype` (a oneDNN reorder)."""
    return onednn.to_channels_last(x, dtype())


def to_nchw(x: jt.Var) -> jt.Var:
    """(N, H, W, C) → (N, C, H, W) float32 (a oneDNN reorder)."""
    return onednn.to_channels_first(x)


def conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm | None, x: jt.Var, residual: jt.Var | None = None,
            relu: bool = False, train: bool = False) -> jt.Var:
    """``relu(bn(conv(x)) + residual)`` on channels-last ``x`` (``bn``, ``residual`` and the ReLU optional): in
    inference one oneDNN call (``bn`` with its running statistics); with ``train``, float32 and differentiable,
    ``bn`` as in training (its own ``channels_last`` method)."""
    if conv.groups != 1:
        raise TypeError("channels_last: grouped convolutions have no channels-last rule")
    if train:
        y = onednn.conv2d_nhwc(x, conv.weight, conv.stride, conv.padding, conv.dilation, compute=train_dtype())
        if conv.bias is not None:
            y = y + conv.bias
        y = y if bn is None else bn.channels_last(y)
        if residual is not None:
            return add_relu(y, residual) if relu else y + residual
        return relu_(y) if relu else y
    scale = shift = None
    if bn is not None:
        scale, shift = running_scale_shift(bn)
    if conv.bias is not None:
        shift = conv.bias if bn is None else shift + conv.bias * scale
    return onednn.conv_bn_act(x, conv.weight, conv.stride, conv.padding, conv.dilation, scale, shift, residual, relu)


def conv2d(conv: nn.Conv2d, x: jt.Var) -> jt.Var:
    """``conv(x)`` for a NCHW ``x`` outside a chain of channels-last blocks (the FPN, the RPN head): on the CPU
    (inference: :func:`enabled`; training: :func:`train_enabled`) a oneDNN convolution on a channels-last copy and
    back (two reorders, worth it for the 3×3 convolutions; about even for 1×1 ones), otherwise ``conv`` itself."""
    if conv.groups != 1:
        return conv(x)
    if enabled(conv):
        return to_nchw(conv_bn(conv, None, to_nhwc(x)))
    if conv.is_training() and train_enabled(conv):
        return to_nchw(conv_bn(conv, None, onednn.to_channels_last(x, "float32"), train=True))
    return conv(x)


def apply(module: nn.Module, x: jt.Var, train: bool = False) -> jt.Var:
    """``module`` evaluated on a channels-last (N, H, W, C) tensor; returns (N, H', W', C'). With ``train``
    (float32, differentiable), BatchNorms behave as in training."""
    if isinstance(module, nn.Conv2d):
        return conv_bn(module, None, x, train=train)
    if isinstance(module, nn.BatchNorm):
        if train:
            if not _trainable_here(module):
                raise TypeError(f"channels_last.apply: no channels-last training rule for {type(module).__name__}")
            return module.channels_last(x)
        scale, shift = running_scale_shift(module)
        return (x.float32() * scale + shift).cast(x.dtype)
    if isinstance(module, nn.AvgPool2d):
        if not pool_is_blockwise(module):
            raise TypeError("channels_last.apply: only AvgPool2d with kernel == stride, no padding, floor mode")
        k = module.layer.kernel_size[0]
        return block_mean(x, k, channels_last=True) if train else onednn.block_pool(x, k)
    if isinstance(module, nn.Identity):
        return x
    if isinstance(module, nn.Sequential):
        layers = list(module)
        i = 0
        while i < len(layers):
            if (isinstance(layers[i], nn.Conv2d) and i + 1 < len(layers)
                    and isinstance(layers[i + 1], nn.BatchNorm)):
                x = conv_bn(layers[i], layers[i + 1], x, train=train)
                i += 2
            else:
                x = apply(layers[i], x, train)
                i += 1
        return x
    raise TypeError(f"channels_last.apply: no channels-last rule for {type(module).__name__}")


class Layers:
    """The channels-last layer functions of one mode, as a block calls them (``block(x, layers)``)."""

    def __init__(self, train: bool):
        self.train = train

    def conv_bn(self, conv, bn, x, residual=None, relu=False):
        return conv_bn(conv, bn, x, residual, relu, self.train)

    def apply(self, module, x):
        return apply(module, x, self.train)


#: inference (fused oneDNN calls, running statistics, float32 or bfloat16) and training (float32, differentiable)
INFERENCE, TRAINING = Layers(False), Layers(True)


def leading_fixed(groups) -> int:
    """How many leading ``groups`` (tuples of modules, e.g. one residual block each) are fixed functions in
    training (:func:`fixed`)."""
    n = 0
    while n < len(groups) and fixed(*groups[n]):
        n += 1
    return n


def run_blocks(owner: nn.Module, x: jt.Var, blocks, fixed_count: int = 0, taps=None) -> list:
    """Apply ``blocks`` (callables ``block(x, layers)``, NCHW with ``layers=None``) to a NCHW batch, channels-last
    in between on the CPU: in inference (:func:`enabled` for ``owner``) fused; in training the first
    ``fixed_count`` blocks (frozen, running statistics: :func:`fixed`) through the inference path (float32, or
    bfloat16 with :data:`TRAIN_DTYPE`) without a backward graph (the same function, no gradients to keep) where
    :func:`fixed_enabled`, and the others through :data:`TRAINING` where :func:`train_enabled` (else NCHW).

    Returns the list of the NCHW outputs after the blocks ``taps`` (indices; default: the last block only), e.g. the
    last block of each residual stage for an FPN."""
    want = [len(blocks) - 1] if taps is None else [int(i) for i in taps]
    outs = {}
    if enabled(owner):
        x = to_nhwc(x)
        for i, block in enumerate(blocks):
            x = block(x, INFERENCE)
            if i in want:
                outs[i] = to_nchw(x)
        return [outs[i] for i in want]
    skip_graph = bool(fixed_count) and fixed_enabled()
    start = fixed_count if skip_graph else 0
    modules = [getattr(block, "__self__", block) for block in blocks[start:]]  # a stem may be a method
    layers = TRAINING if owner.is_training() and train_enabled(*modules) else None
    if skip_graph:
        with jt.no_grad():  # in the training convolutions' operand type (bfloat16 with --amp)
            y = onednn.to_channels_last(x, train_dtype())
            for i, block in enumerate(blocks[:start]):
                y = block(y, INFERENCE)
                if i in want:
                    outs[i] = to_nchw(y).stop_grad()
        x = (y.float32() if layers is not None else to_nchw(y)).stop_grad()
    elif layers is not None:
        x = onednn.to_channels_last(x, "float32")
    for i, block in enumerate(blocks[start:], start):
        x = block(x, layers)
        if i in want:
            outs[i] = to_nchw(x) if layers is not None else x
    return [outs[i] for i in want]
