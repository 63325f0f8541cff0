"""CLIP's ``AttentionPool2d`` (the QKV attention that replaces global average pooling)."""
from __future__ import annotations

import jittor as jt
from jittor import nn

from ...ops.bmm import bmm


class AttentionPool2d(nn.Module):
    """Attention pooling of a (N, C, H, W) map to (N, output_dim), as in CLIP ModifiedResNet.

    Tokens are ``[mean over the H·W positions; the H·W positions] + positional_embedding``;
    separate ``q_proj``/``k_proj``/``v_proj`` (C→C), ``num_heads`` heads with scale
    ``1/sqrt(C/num_heads)``, output projection ``c_proj`` (C→output_dim). Only the token-0
    (mean-token) output is returned, so only its query is computed (a 1×(HW+1) attention), and
    the key/value projections are folded into that query and the pooled output (see ``execute``).

    Parameter names equal the official ones (``positional_embedding``, ``q_proj``, ``k_proj``,
    ``v_proj``, ``c_proj``); official sizes: ``AttentionPool2d(7, 2048, 32, 1024)``.
    The input must have exactly ``spacial_dim²`` positions (no interpolation, as in the
    official RoI head and in CLIP's ``encode_image`` at the native resolution).
    """

    def __init__(self, spacial_dim: int, embed_dim: int, num_heads: int, output_dim: int | None = None):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"AttentionPool2d: embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.spacial_dim = spacial_dim
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.output_dim = output_dim or embed_dim
        self.positional_embedding = jt.randn(spacial_dim ** 2 + 1, embed_dim) / embed_dim ** 0.5
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.c_proj = nn.Linear(embed_dim, self.output_dim)

    def execute(self, x):
        n, c, h, w = x.shape
        length = h * w + 1
        if length != self.positional_embedding.shape[0] or c != self.embed_dim:
            raise ValueError(f"AttentionPool2d: input (N, {c}, {h}, {w}) does not fit embed_dim {self.embed_dim} "
                             f"and a {self.spacial_dim}x{self.spacial_dim} positional embedding")
        heads, head_dim = self.num_heads, c // self.num_heads
        flat = x.reshape(n, c, h * w)
        tokens_t = jt.concat([flat.mean(dim=2, keepdims=True), flat], dim=2)   # (N, C, L)
        tokens_t = tokens_t + self.positional_embedding.transpose(1, 0).unsqueeze(0)
        tokens = tokens_t.transpose(0, 2, 1)                                    # (N, L, C)
        q = self.q_proj(tokens[:, 0]).reshape(n, heads, head_dim) * (head_dim ** -0.5)
        # The key and value projections are moved onto the one query and the one output:
        #   q_h·(W_k,h t_l + b_k,h) = (W_k,hᵀ q_h)·t_l + const_h   (softmax ignores the constant)
        #   Σ_l a_hl (W_v,h t_l + b_v,h) = W_v,h (Σ_l a_hl t_l) + b_v,h   (Σ_l a_hl = 1)
        # which is exact and costs O(C²) per RoI instead of O(L·C²) for projecting all L tokens.
        w_k = self.k_proj.weight.reshape(heads, head_dim, c)
        w_v = self.v_proj.weight.reshape(heads, head_dim, c)
        q_k = bmm(q.transpose(1, 0, 2), w_k).transpose(1, 0, 2)                 # (N, h, C)
        attn = nn.softmax(bmm(q_k, tokens_t), dim=-1)                           # (N, h, L)
        pooled = bmm(attn, tokens)                                              # (N, h, C)
        out = bmm(pooled.transpose(1, 0, 2), w_v.transpose(0, 2, 1))            # (h, N, d)
        out = out.transpose(1, 0, 2).reshape(n, c) + self.v_proj.bias
        return self.c_proj(out)
