"""AttentionPool2d (key/value projections folded into the query and the output) equals CLIP's
plain multi-head attention over all HW+1 tokens, outputs and gradients."""
import numpy as np
import pytest

import unidetector  # noqa: F401  (runtime bootstrap before jittor)
import jittor as jt
from jittor import nn

from unidetector.models.layers import AttentionPool2d


def plain_attention_pool(pool: AttentionPool2d, x):
    """CLIP's formula written out: project every token to q/k/v, attend, keep token 0."""
    n, c, h, w = x.shape
    heads, d = pool.num_heads, c // pool.num_heads
    tokens = x.reshape(n, c, h * w).transpose(0, 2, 1)
    tokens = jt.concat([tokens.mean(dim=1, keepdims=True), tokens], dim=1) + pool.positional_embedding
    split = lambda t: t.reshape(n, h * w + 1, heads, d).transpose(0, 2, 1, 3)  # (N, heads, L, d)
    q, k, v = split(pool.q_proj(tokens)) * d ** -0.5, split(pool.k_proj(tokens)), split(pool.v_proj(tokens))
    attn = nn.softmax(jt.matmul(q, k.transpose(0, 1, 3, 2)), dim=-1)
    out = jt.matmul(attn, v).transpose(0, 2, 1, 3).reshape(n, h * w + 1, c)[:, 0]
    return pool.c_proj(out)


@pytest.mark.parametrize("heads", [1, 4])
def test_folded_attention_pool_matches_plain_attention(heads):
    jt.set_global_seed(0)
    pool = AttentionPool2d(spacial_dim=3, embed_dim=32, num_heads=heads, output_dim=24)
    rng = np.random.default_rng(1)
    for lin in (pool.q_proj, pool.k_proj, pool.v_proj, pool.c_proj):
        lin.bias.assign(jt.array(rng.normal(size=lin.bias.shape).astype(np.float32)))
    x = jt.array(rng.normal(size=(5, 32, 3, 3)).astype(np.float32))
    got, want = pool(x), plain_attention_pool(pool, x)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-5)

    params = [x, pool.positional_embedding, pool.q_proj.weight, pool.k_proj.weight, pool.v_proj.weight,
              pool.v_proj.bias, pool.c_proj.weight]
    weights = jt.array(rng.normal(size=got.shape).astype(np.float32))
    for g_got, g_want in zip(jt.grad((got * weights).sum(), params), jt.grad((want * weights).sum(), params)):
        np.testing.assert_allclose(g_got.numpy(), g_want.numpy(), rtol=1e-3, atol=1e-5)


def test_attention_pool_rejects_wrong_input_size():
    pool = AttentionPool2d(spacial_dim=3, embed_dim=32, num_heads=4)
    with pytest.raises(ValueError, match="3x3 positional embedding"):
        pool(jt.zeros((1, 32, 4, 4)))
