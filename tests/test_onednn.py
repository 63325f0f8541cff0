"""The oneDNN kernels (``unidetector/ops/onednn.py``) equal Jittor's own ops: a channels-last inference
convolution with its BatchNorm (running statistics), residual add and ReLU fused, against ``nn.Conv2d``,
``nn.BatchNorm`` in eval mode and ``nn.relu`` on NCHW tensors (float32 to rounding; bfloat16 to its 8-bit
mantissa), the channels-last training convolution and its two gradients against ``nn.Conv2d``'s, the channels-last
training path of a whole layer against the NCHW one, block average pooling against ``nn.AvgPool2d``, and the
layout changes (and their gradients) against transposes."""
import numpy as np
import pytest

import unidetector  # noqa: F401  (runtime bootstrap before jittor)
import jittor as jt
from jittor import nn

from unidetector.models.layers import channels_last
from unidetector.ops import onednn

pytestmark = pytest.mark.skipif(not onednn.available(), reason="Jittor without its oneDNN ops")


def _nhwc(x):
    return jt.array(x.numpy().transpose(0, 2, 3, 1))


def _conv_bn(rng, cin, cout, k, stride, padding, dilation, bias):
    conv = nn.Conv2d(cin, cout, k, stride=stride, padding=padding, dilation=dilation, bias=bias)
    conv.weight.assign(jt.array(rng.normal(size=conv.weight.shape).astype(np.float32) / np.sqrt(cin * k * k)))
    if bias:
        conv.bias.assign(jt.array(rng.normal(size=cout).astype(np.float32)))
    bn = nn.BatchNorm(cout)
    for name in ("weight", "bias", "running_mean"):
        getattr(bn, name).assign(jt.array(rng.normal(size=cout).astype(np.float32)))
    bn.running_var.assign(jt.array(rng.uniform(0.5, 2, size=cout).astype(np.float32)))
    bn.eval()
    return conv, bn


CONVS = [  # (N, C, H, W, O, k, stride, padding, dilation, conv bias)
    (2, 8, 9, 11, 16, 3, 1, 1, 1, False),
    (1, 32, 20, 17, 64, 1, 1, 0, 1, False),
    (3, 16, 14, 13, 24, 3, 2, 1, 1, True),
    (1, 4, 12, 12, 8, 3, 1, 2, 2, False),
]


@pytest.mark.parametrize("case", CONVS, ids=[f"k{c[5]}s{c[6]}d{c[8]}{'b' if c[9] else ''}" for c in CONVS])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_fused_conv_equals_jittor_layers(case, dtype):
    n, c, h, w, o, k, stride, padding, dilation, bias = case
    rng = np.random.default_rng(0)
    conv, bn = _conv_bn(rng, c, o, k, stride, padding, dilation, bias)
    x = jt.array(rng.normal(size=(n, c, h, w)).astype(np.float32))
    with jt.no_grad():
        plain = conv(x)
        residual = jt.array(rng.normal(size=plain.shape).astype(np.float32))
        wants = {"conv": plain, "conv+bn": bn(plain), "conv+bn+add+relu": nn.relu(bn(plain) + residual)}
        xin, rin = _nhwc(x).cast(dtype), _nhwc(residual).cast(dtype)
        gots = {"conv": channels_last.conv_bn(conv, None, xin), "conv+bn": channels_last.conv_bn(conv, bn, xin),
                "conv+bn+add+relu": channels_last.conv_bn(conv, bn, xin, residual=rin, relu=True)}
    for name, want in wants.items():
        got = gots[name]
        assert got.dtype == dtype, name
        got, want = got.float32().numpy().transpose(0, 3, 1, 2), want.numpy()
        scale = np.abs(want).max()
        tol = 1e-5 if dtype == "float32" else 3e-2  # bfloat16: 8-bit mantissa inputs, float32 accumulation
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale, err_msg=f"{name} ({dtype})")
    if dtype == "bfloat16":  # not float32 in disguise
        assert np.abs(gots["conv+bn"].float32().numpy().transpose(0, 3, 1, 2) - wants["conv+bn"].numpy()).max() > 0


@pytest.mark.parametrize("case", CONVS, ids=[f"k{c[5]}s{c[6]}d{c[8]}" for c in CONVS])
@pytest.mark.parametrize("compute", ["float32", "bfloat16"])
def test_training_conv_and_its_gradients_equal_jittor_conv(case, compute):
    """conv2d_nhwc (oneDNN forward, backward-data and backward-weights on channels-last tensors) against
    nn.Conv2d's output and gradients on NCHW tensors: float32 to rounding; with bfloat16 operands (mixed precision,
    ``--amp`` on the CPU) to their 8-bit mantissa. The cases' maps have 49-340 output positions, so the weight
    gradient takes both of its paths (bfloat16 from BF16_WEIGHT_GRAD_MIN_AREA = 256 positions, float32 below)."""
    if compute == "bfloat16" and not onednn.bf16_supported():
        pytest.skip("this processor has no AMX / AVX-512-BF16: bfloat16 training falls back to float32")
    n, c, h, w, o, k, stride, padding, dilation, _ = case
    rng = np.random.default_rng(3)
    conv, _ = _conv_bn(rng, c, o, k, stride, padding, dilation, False)
    x = jt.array(rng.normal(size=(n, c, h, w)).astype(np.float32))
    want = conv(x)
    dy = rng.normal(size=want.shape).astype(np.float32)
    want_dx, want_dw = jt.grad((want * jt.array(dy)).sum(), [x, conv.weight])
    x_last = _nhwc(x)
    got = onednn.conv2d_nhwc(x_last, conv.weight, conv.stride, conv.padding, conv.dilation, compute=compute)
    got_dx, got_dw = jt.grad((got * jt.array(dy.transpose(0, 2, 3, 1))).sum(), [x_last, conv.weight])
    tol = (1e-4, 1e-5) if compute == "float32" else (3e-2, 3e-2)
    for name, g, r in (("y", got.numpy().transpose(0, 3, 1, 2), want), ("dx", got_dx.numpy().transpose(0, 3, 1, 2),
                                                                          want_dx), ("dw", got_dw.numpy(), want_dw)):
        r = r.numpy()
        np.testing.assert_allclose(g, r, rtol=tol[0], atol=tol[1] * np.abs(r).max(), err_msg=f"{name} ({compute})")
        bf16_here = name != "dw" or want.shape[2] * want.shape[3] >= onednn.BF16_WEIGHT_GRAD_MIN_AREA
        if compute == "bfloat16" and bf16_here:
            assert np.abs(g - r).max() > 1e-6 * np.abs(r).max(), f"{name}: bfloat16 asked for, float32 computed"
    with pytest.raises(ValueError, match="does not fit"):
        onednn.conv2d_nhwc(x, conv.weight)  # NCHW input
    with pytest.raises(ValueError, match="compute must be one of"):
        onednn.conv2d_nhwc(x_last, conv.weight, compute="float16")


def test_channels_last_training_layers_equal_nchw_training():
    """A conv + batch-statistics BN + residual add + ReLU and a block pool, through channels_last.TRAINING on
    NHWC tensors and through the layers themselves on NCHW: same outputs, input and parameter gradients and
    running statistics."""
    from unidetector.models.layers import BlockAvgPool2d, make_norm

    rng = np.random.default_rng(4)
    x_np, res_np = (rng.normal(size=(2, c, 10, 12)).astype(np.float32) for c in (8, 16))
    results = []
    for last in (False, True):
        conv, _ = _conv_bn(np.random.default_rng(5), 8, 16, 3, 1, 1, 1, True)
        bn = make_norm(16, eval_mode=False)
        bn.train()
        to = (lambda a: a.transpose(0, 2, 3, 1)) if last else (lambda a: a)
        x, res = jt.array(to(x_np)), jt.array(to(res_np))
        if last:
            y = channels_last.TRAINING.conv_bn(conv, bn, x, residual=res, relu=True)
            y = channels_last.TRAINING.apply(BlockAvgPool2d(2), y)
        else:
            y = BlockAvgPool2d(2)(nn.relu(bn(conv(x)) + res))
        dy = np.random.default_rng(6).normal(size=(2, 16, 5, 6)).astype(np.float32)
        grads = jt.grad((y * jt.array(to(dy))).sum(), [x, conv.weight, conv.bias, bn.weight, bn.bias])
        back = (lambda a: a.transpose(0, 3, 1, 2)) if last else (lambda a: a)
        results.append([back(y.numpy()), back(grads[0].numpy())] + [g.numpy() for g in grads[1:]]
                       + [bn.running_mean.numpy(), bn.running_var.numpy()])
    for got, want in zip(results[1], results[0]):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_layout_change_gradients_are_the_inverse_change():
    rng = np.random.default_rng(7)
    x = jt.array(rng.normal(size=(2, 3, 4, 5)).astype(np.float32))
    dy = rng.normal(size=(2, 4, 5, 3)).astype(np.float32)
    dx = jt.grad((onednn.to_channels_last(x) * jt.array(dy)).sum(), x)
    np.testing.assert_array_equal(dx.numpy(), dy.transpose(0, 3, 1, 2))
    y = jt.array(dy)
    dyy = jt.grad((onednn.to_channels_first(y) * x).sum(), y)
    np.testing.assert_array_equal(dyy.numpy(), x.numpy().transpose(0, 2, 3, 1))


def test_fused_conv_rejects_mismatched_inputs():
    x = jt.zeros((1, 5, 5, 4))
    with pytest.raises(ValueError, match="input channels"):
        onednn.conv_bn_act(x, jt.zeros((8, 3, 1, 1)))
    with pytest.raises(ValueError, match="residual"):
        onednn.conv_bn_act(x, jt.zeros((8, 4, 1, 1)), residual=jt.zeros((1, 5, 5, 4)))
    with pytest.raises(ValueError, match="dtype"):
        onednn.pool_kernel_code("float16", 2)


@pytest.mark.parametrize("shape,k", [((2, 3, 8, 6), 2), ((1, 4, 9, 11), 2), ((2, 5, 7, 10), 3)])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_block_pool_equals_avg_pool(shape, k, dtype):
    rng = np.random.default_rng(1)
    x = jt.array(rng.normal(size=shape).astype(np.float32))
    want = nn.AvgPool2d(k)(x).numpy()
    got = onednn.block_pool(_nhwc(x).cast(dtype), k)
    assert got.dtype == dtype
    tol = 1e-6 if dtype == "float32" else 2e-2
    np.testing.assert_allclose(got.float32().numpy().transpose(0, 3, 1, 2), want, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_layout_changes_equal_transposes(dtype):
    rng = np.random.default_rng(2)
    x_np = rng.normal(size=(2, 5, 7, 9)).astype(np.float32)
    last = onednn.to_channels_last(jt.array(x_np), dtype)
    assert last.dtype == dtype and last.shape == (2, 7, 9, 5)
    tol = 0 if dtype == "float32" else 1e-2
    np.testing.assert_allclose(last.float32().numpy(), x_np.transpose(0, 2, 3, 1), rtol=tol, atol=0)
    first = onednn.to_channels_first(last)
    assert first.dtype == "float32" and first.shape == (2, 5, 7, 9)
    np.testing.assert_array_equal(first.numpy(), last.float32().numpy().transpose(0, 3, 1, 2))


def test_inference_dtype_setting(monkeypatch, capsys):
    monkeypatch.setattr(channels_last, "DTYPE", "float16")
    with pytest.raises(ValueError, match="UNIDET_INFERENCE_DTYPE"):
        channels_last.dtype()
    monkeypatch.setattr(channels_last, "DTYPE", "bfloat16")
    monkeypatch.setattr(onednn, "bf16_supported", lambda: False)
    monkeypatch.setattr(channels_last, "_noted", set())
    assert channels_last.dtype() == "float32" and channels_last.dtype() == "float32"
    assert capsys.readouterr().err.count("using float32") == 1  # the note is printed once
    monkeypatch.setattr(onednn, "bf16_supported", lambda: True)
    assert channels_last.dtype() == "bfloat16"
    x = jt.zeros((1, 3, 4, 5))
    assert channels_last.to_nhwc(x).dtype == "bfloat16" and channels_last.to_nhwc(x).shape == (1, 4, 5, 3)
    assert channels_last.to_nchw(channels_last.to_nhwc(x)).dtype == "float32"
