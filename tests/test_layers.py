"""The CPU training kernels of the shared layers equal the plain formulas: batch-statistics
BatchNorm (forward, gradients, running statistics), block average pooling, batched matmul."""
import numpy as np
import pytest

import unidetector  # noqa: F401  (runtime bootstrap before jittor)
import jittor as jt
from jittor import nn

from unidetector.models.layers import BatchNorm2d, BlockAvgPool2d, block_mean, make_norm
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


@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (4, 16, 9, 12), (1, 8, 1, 1), (64, 32, 7, 7)])
def test_batch_norm_training_matches_formula(shape):
    rng = np.random.default_rng(0)
    x = (rng.normal(size=shape) * 3 + 2).astype(np.float32)
    dy = rng.normal(size=shape).astype(np.float32)
    gamma = rng.uniform(0.5, 1.5, shape[1]).astype(np.float32)
    beta = rng.normal(size=shape[1]).astype(np.float32)
    bn = BatchNorm2d(shape[1])
    bn.weight.assign(jt.array(gamma))
    bn.bias.assign(jt.array(beta))
    bn.train()
    xv = jt.array(x)
    y = bn(xv)
    grads = jt.grad((y * jt.array(dy)).sum(), [xv, bn.weight, bn.bias])
    want_y, want_dx, want_dg, want_db, mean, var = batch_norm_reference(x.astype(np.float64), gamma, beta, dy)
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


@pytest.mark.parametrize("shape,k", [((2, 3, 8, 6), 2), ((1, 4, 9, 11), 2), ((2, 2, 7, 10), 3)])
def test_block_mean_equals_avg_pool(shape, k):
    rng = np.random.default_rng(2)
    x = jt.array(rng.normal(size=shape).astype(np.float32))
    ref = nn.AvgPool2d(k)
    got, want = BlockAvgPool2d(k)(x), ref(x)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6, atol=1e-6)
    dy = jt.array(rng.normal(size=want.shape).astype(np.float32))
    np.testing.assert_allclose(jt.grad((got * dy).sum(), x).numpy(), jt.grad((want * dy).sum(), x).numpy(),
                               rtol=1e-6, atol=1e-6)
    nhwc = block_mean(x.transpose(0, 2, 3, 1), k, channels_last=True)
    np.testing.assert_allclose(nhwc.numpy().transpose(0, 3, 1, 2), want.numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("b,n,k,m", [(3, 4, 5, 6), (8, 1, 64, 33), (2, 17, 1, 3)])
def test_bmm_matches_numpy_with_gradients(b, n, k, m):
    rng = np.random.default_rng(3)
    a_np, b_np = rng.normal(size=(b, n, k)).astype(np.float32), rng.normal(size=(b, k, m)).astype(np.float32)
    g_np = rng.normal(size=(b, n, m)).astype(np.float32)
    a, bb = jt.array(a_np), jt.array(b_np)
    c = bmm(a, bb)
    np.testing.assert_allclose(c.numpy(), a_np @ b_np, rtol=1e-5, atol=1e-5)
    ga, gb = jt.grad((c * jt.array(g_np)).sum(), [a, bb])
    np.testing.assert_allclose(ga.numpy(), g_np @ b_np.transpose(0, 2, 1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gb.numpy(), a_np.transpose(0, 2, 1) @ g_np, rtol=1e-5, atol=1e-5)


def test_bmm_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"\(B, n, k\) @ \(B, k, m\)"):
        bmm(jt.zeros((2, 3, 4)), jt.zeros((2, 5, 6)))
    with pytest.raises(ValueError):
        bmm(jt.zeros((2, 3, 4)), jt.zeros((3, 4, 6)))
