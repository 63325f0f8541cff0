"""The oneDNN inference kernels (``unidetector/ops/onednn.py``) equal Jittor's own ops: a channels-last
convolution with its BatchNorm (running statistics), residual add and ReLU fused, against ``nn.Conv2d``,
``nn.BatchNorm`` in eval mode and ``nn.relu`` on NCHW tensors (float32 to rounding; bfloat16 to its 8-bit
mantissa), block average pooling against ``nn.AvgPool2d``, and the layout changes against transposes."""
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
