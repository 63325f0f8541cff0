"""The CPU training kernels of the shared layers equal the plain formulas or Jittor's own ops:
batch-statistics BatchNorm (forward, gradients, running statistics), frozen-statistics BatchNorm (forward
and gradients), block average pooling, batched matmul, ReLU and residual add + ReLU (forward and gradients)."""
import numpy as np
import pytest

import unidetector  # noqa: F401  (runtime bootstrap before jittor)
import jittor as jt
from jittor import nn

from unidetector.models.layers import BatchNorm2d, BlockAvgPool2d, EvalBatchNorm2d, block_mean, make_norm
from unidetector.ops import activation, batch_norm, block_pool
from unidetector.ops.bmm import bmm


def batch_norm_reference(x, gamma, beta, dy, eps=1e-5):
    """float64 BatchNorm over (N, C, H, W): y, dx, dγ, dβ, batch mean and biased variance."""
    m = x.shape[0] * x.shape[2] * x.shape[3]
    mean = x.mean(axis=(0, 2, 3), keepdims=True)
    var = x.var(axis=(0, 2, 3), keepdims=True)
    xhat = (x - mean) / np.sqrt(var + eps)
    g, b = gamma.reshape(1, -1, 1, 1), beta.reshape(1, -1, 1, 1)
    dgamma = (dy * xhat).sum(axis=(0, 2, 3))
    dbeta = dy.sum(axis=(0, 2, 3))
    dx = g / np.sqrt(var + eps) * (dy - dbeta.reshape(1, -1, 1, 1) / m - xhat * dgamma.reshape(1, -1, 1, 1) / m)
    return xhat * g + b, dx, dgamma, dbeta, mean.ravel(), var.ravel()


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (4, 16, 9, 12), (1, 8, 1, 1), (64, 32, 7, 7)])
def test_batch_norm_training_matches_formula(shape, channels_last):
    """Batch-statistics BatchNorm on its kernels (NCHW, or channels-last through ``BatchNorm2d.channels_last``):
    output, gradients and running statistics against the formula in float64."""
    rng = np.random.default_rng(0)
    x = (rng.normal(size=shape) * 3 + 2).astype(np.float32)
    dy = rng.normal(size=shape).astype(np.float32)
    gamma = rng.uniform(0.5, 1.5, shape[1]).astype(np.float32)
    beta = rng.normal(size=shape[1]).astype(np.float32)
    bn = BatchNorm2d(shape[1])
    bn.weight.assign(jt.array(gamma))
    bn.bias.assign(jt.array(beta))
    bn.train()
    to_last = (lambda a: a.transpose(0, 2, 3, 1)) if channels_last else (lambda a: a)
    xv = jt.array(to_last(x))
    y = bn.channels_last(xv) if channels_last else bn(xv)
    grads = jt.grad((y * jt.array(to_last(dy))).sum(), [xv, bn.weight, bn.bias])
    want_y, want_dx, want_dg, want_db, mean, var = batch_norm_reference(x.astype(np.float64), gamma, beta, dy)
    want_y, want_dx = to_last(want_y), to_last(want_dx)
    np.testing.assert_allclose(y.numpy(), want_y, rtol=1e-4, atol=1e-4)
    for got, want in zip(grads, (want_dx, want_dg, want_db)):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    # running statistics: Jittor's rule (momentum 0.1, biased variance), from 0 / 1
    np.testing.assert_allclose(bn.running_mean.numpy(), 0.1 * mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.running_var.numpy(), 0.9 + 0.1 * var, rtol=1e-5, atol=1e-6)


def test_batch_norm_matches_jittor_and_freezes_affine():
    rng = np.random.default_rng(1)
    x = jt.array(rng.normal(size=(3, 6, 10, 4)).astype(np.float32)).transpose(0, 1, 3, 2)  # not a plain array
    ours, theirs = make_norm(6, eval_mode=False, requires_grad=False), nn.BatchNorm(6)
    assert isinstance(ours, BatchNorm2d)
    for bn in (ours, theirs):
        bn.train()
    y_ours, y_theirs = ours(x), theirs(x)
    np.testing.assert_allclose(y_ours.numpy(), y_theirs.numpy(), rtol=1e-4, atol=1e-4)
    gx = jt.grad((y_ours * y_ours).sum(), x)
    np.testing.assert_allclose(gx.numpy(), jt.grad((y_theirs * y_theirs).sum(), x).numpy(), rtol=1e-3, atol=1e-4)
    assert all(p.is_stop_grad() for p in ours.parameters())
    # eval mode: running statistics, as nn.BatchNorm
    ours.eval()
    theirs.eval()
    np.testing.assert_allclose(ours(x).numpy(), theirs(x).numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (4, 32, 20, 24)])
def test_frozen_batch_norm_kernel_equals_jittor_formula(shape, channels_last):
    """EvalBatchNorm2d (running statistics, trainable γ/β) on its OpenMP kernels, NCHW or channels-last: output
    and gradients w.r.t. the input, γ and β equal Jittor's broadcast formula; so does BatchNorm2d in eval mode
    on channels-last input."""
    rng = np.random.default_rng(6)
    bn = EvalBatchNorm2d(shape[1])
    for name in ("weight", "bias", "running_mean"):
        getattr(bn, name).assign(jt.array(rng.normal(size=shape[1]).astype(np.float32)))
    bn.running_var.assign(jt.array(rng.uniform(0.5, 2, size=shape[1]).astype(np.float32)))
    bn.train()
    if channels_last:
        shape = (shape[0], shape[2], shape[3], shape[1])
    x, dy = jt.array(rng.normal(size=shape).astype(np.float32)), jt.array(rng.normal(size=shape).astype(np.float32))
    w = bn.weight / jt.sqrt(bn.running_var + bn.eps)
    per_channel = (1, 1, 1, -1) if channels_last else (1, -1, 1, 1)
    want = x * w.reshape(per_channel) + (bn.bias - bn.running_mean * w).reshape(per_channel)
    got = bn.channels_last(x) if channels_last else bn(x)
    if channels_last:
        batch_stats = BatchNorm2d(bn.num_features)
        batch_stats.load_state_dict(bn.state_dict())
        batch_stats.eval()
        np.testing.assert_allclose(batch_stats.channels_last(x).numpy(), want.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6, atol=1e-6)
    params = [x, bn.weight, bn.bias]
    for g, r in zip(jt.grad((got * dy).sum(), params), jt.grad((want * dy).sum(), params)):
        np.testing.assert_allclose(g.numpy(), r.numpy(), rtol=1e-5, atol=1e-5 * np.abs(r.numpy()).max())
    with pytest.raises(ValueError, match="float32"):
        batch_norm.channel_affine(jt.zeros((2, 3)), jt.ones(3), jt.zeros(3))


@pytest.mark.parametrize("shape,k", [((2, 3, 8, 6), 2), ((1, 4, 9, 11), 2), ((2, 2, 7, 10), 3), ((2, 24, 30, 37), 2)])
def test_block_mean_equals_avg_pool(shape, k):
    """The OpenMP kernels (NCHW and channels-last; odd sizes drop the last row / column) equal Jittor's
    AvgPool2d, forward and gradient."""
    rng = np.random.default_rng(2)
    x = jt.array(rng.normal(size=shape).astype(np.float32))
    ref = nn.AvgPool2d(k)
    got, want = BlockAvgPool2d(k)(x), ref(x)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6, atol=1e-6)
    dy = jt.array(rng.normal(size=want.shape).astype(np.float32))
    want_dx = jt.grad((want * dy).sum(), x).numpy()
    np.testing.assert_allclose(jt.grad((got * dy).sum(), x).numpy(), want_dx, rtol=1e-6, atol=1e-6)
    x_nhwc = jt.array(x.numpy().transpose(0, 2, 3, 1))
    nhwc = block_mean(x_nhwc, k, channels_last=True)
    np.testing.assert_allclose(nhwc.numpy().transpose(0, 3, 1, 2), want.numpy(), rtol=1e-6, atol=1e-6)
    dx_nhwc = jt.grad((nhwc * jt.array(dy.numpy().transpose(0, 2, 3, 1))).sum(), x_nhwc)
    np.testing.assert_allclose(dx_nhwc.numpy().transpose(0, 3, 1, 2), want_dx, rtol=1e-6, atol=1e-6)


def test_block_mean_cpu_rejects_other_inputs():
    with pytest.raises(ValueError, match="float32 4-D"):
        block_pool.block_mean_cpu(jt.zeros((2, 3, 4)), 2)


def _with_zeros(rng, shape):
    """Normal float32 values, a tenth of them exactly 0 (the ReLU's gradient there is 0, as nn.relu)."""
    x = rng.normal(size=shape).astype(np.float32)
    x[rng.uniform(size=shape) < 0.1] = 0
    return x


@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (2, 16, 48, 40), (7,)])  # (2, 16, 48, 40): OpenMP threads
def test_relu_kernels_equal_jittor_relu(shape):
    rng = np.random.default_rng(4)
    a, b, dy = (jt.array(_with_zeros(rng, shape)) for _ in range(3))
    y, want = activation.relu(a), nn.relu(a)
    np.testing.assert_array_equal(y.numpy(), want.numpy())
    np.testing.assert_array_equal(jt.grad((y * dy).sum(), a).numpy(), jt.grad((want * dy).sum(), a).numpy())
    y, want = activation.add_relu(a, b), nn.relu(a + b)
    np.testing.assert_array_equal(y.numpy(), want.numpy())
    for got, ref in zip(jt.grad((y * dy).sum(), [a, b]), jt.grad((want * dy).sum(), [a, b])):
        np.testing.assert_array_equal(got.numpy(), ref.numpy())
    assert np.any(y.numpy() == 0) and np.any(y.numpy() > 0)


def test_relu_kernels_fall_back_for_other_inputs():
    a = jt.array(np.array([[-1.0, 2.0]], np.float64))
    np.testing.assert_array_equal(activation.relu(a).numpy(), [[0.0, 2.0]])
    row = jt.array(np.array([[1.0, -3.0]], np.float32))
    np.testing.assert_array_equal(activation.add_relu(row, jt.array(np.float32([1.0]))).numpy(), [[2.0, 0.0]])


@pytest.mark.parametrize("shape", [(1, 7, 33, 5), (8, 64, 64, 96), (64, 8, 512, 17)])
def test_bmm_and_its_gradients_match_numpy(shape):
    """``bmm`` (oneDNN sgemm per batch entry where oneDNN is linked, else the OpenMP loops): the product and both
    gradients equal float64 numpy, for one product and for many small ones (the attention pool's shapes)."""
    b, n, k, m = shape
    rng = np.random.default_rng(3)
    a, w, g = (rng.normal(size=s).astype(np.float32) for s in ((b, n, k), (b, k, m), (b, n, m)))
    ja, jw = jt.array(a), jt.array(w)
    c = bmm(ja, jw)
    da, dw = jt.grad((c * jt.array(g)).sum(), [ja, jw])
    a64, w64, g64 = a.astype(np.float64), w.astype(np.float64), g.astype(np.float64)
    for got, want in ((c, a64 @ w64), (da, g64 @ w64.transpose(0, 2, 1)), (dw, a64.transpose(0, 2, 1) @ g64)):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
