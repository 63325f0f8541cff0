"""CLIP text tower in Jittor (OpenAI ``CLIP.encode_text``); parameter names equal OpenAI's keys
(``token_embedding.weight``, ``positional_embedding``, ``transformer.resblocks.{i}.attn.in_proj_weight``,
``ln_final.weight``, ``text_projection``, ...). RN50 sizes are the defaults."""
from __future__ import annotations

from collections import OrderedDict

import jittor as jt
import numpy as np
from jittor import nn



def eot_length(tokens) -> int:
    """Tokens a batch needs: 1 + the largest EOT position (the EOT is the row's largest id, read
    by :class:`CLIPTextEncoder`), ≥ 1. ``tokens``: (N, L) int array."""
    tokens = np.asarray(tokens)
    return int(tokens.argmax(axis=1).max()) + 1 if tokens.size else 1


class QuickGELU(nn.Module):
    def execute(self, x):
        return x * jt.sigmoid(1.702 * x)


class MultiheadSelfAttention(nn.Module):
    """``torch.nn.MultiheadAttention`` (packed ``in_proj_weight``/``in_proj_bias``, ``out_proj``),
    self-attention only, sequence-first inputs replaced by batch-first (N, L, D)."""

    def __init__(self, embed_dim: int, num_heads: int):
        super().__init__()
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.in_proj_weight = jt.randn(3 * embed_dim, embed_dim) * embed_dim ** -0.5
        self.in_proj_bias = jt.zeros(3 * embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)

    def execute(self, x, attn_mask=None):
        n, length, d = x.shape
        h, hd = self.num_heads, d // self.num_heads
        qkv = nn.matmul_transpose(x, self.in_proj_weight) + self.in_proj_bias       # (N, L, 3D)
        qkv = qkv.reshape(n, length, 3, h, hd).permute(2, 0, 3, 1, 4)                # (3, N, h, L, hd)
        q, k, v = qkv[0] * hd ** -0.5, qkv[1], qkv[2]
        scores = jt.matmul(q, k.transpose(0, 1, 3, 2))                                # (N, h, L, L)
        if attn_mask is not None:
            scores = scores + attn_mask
        out = jt.matmul(nn.softmax(scores, dim=-1), v)                                # (N, h, L, hd)
        return self.out_proj(out.transpose(0, 2, 1, 3).reshape(n, length, d))


class ResidualAttentionBlock(nn.Module):
    def __init__(self, d_model: int, n_head: int):
        super().__init__()
        self.attn = MultiheadSelfAttention(d_model, n_head)
        self.ln_1 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(OrderedDict([("c_fc", nn.Linear(d_model, d_model * 4)), ("gelu", QuickGELU()),
                                              ("c_proj", nn.Linear(d_model * 4, d_model))]))
        self.ln_2 = nn.LayerNorm(d_model)

    def execute(self, x, attn_mask=None):
        x = x + self.attn(self.ln_1(x), attn_mask)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int):
        super().__init__()
        self.width, self.layers = width, layers
        self.resblocks = nn.Sequential(*[ResidualAttentionBlock(width, heads) for _ in range(layers)])

    def execute(self, x, attn_mask=None):
        for block in self.resblocks:
            x = block(x, attn_mask)
        return x


class CLIPTextEncoder(nn.Module):
    """``encode_text``: token ids (N, L ≤ context_length) → (N, embed_dim), un-normalised.

    Defaults are CLIP RN50's text tower (width 512, 12 layers, 8 heads, context 77, vocabulary
    49,408, projection 1024). The feature is taken at the EOT token (the largest id per row).
    """

    def __init__(self, embed_dim: int = 1024, context_length: int = 77, vocab_size: int = 49408,
                 transformer_width: int = 512, transformer_heads: int = 8, transformer_layers: int = 12):
        super().__init__()
        self.context_length = context_length
        self.token_embedding = nn.Embedding(vocab_size, transformer_width)
        self.positional_embedding = jt.randn(context_length, transformer_width) * 0.01
        self.transformer = Transformer(transformer_width, transformer_layers, transformer_heads)
        self.ln_final = nn.LayerNorm(transformer_width)
        self.text_projection = jt.randn(transformer_width, embed_dim) * transformer_width ** -0.5
        mask = np.triu(np.full((context_length, context_length), -np.inf, np.float32), 1)
        self._attn_mask = jt.array(mask).stop_grad()   # leading "_": not a parameter / state-dict entry

    def execute(self, tokens, trim: bool = True):
        """(N, L) token ids → (N, embed_dim). With ``trim`` (exact), the batch runs only up to its
        longest prompt: the attention is causal and only the EOT position is read, so the tokens
        after the last EOT of the batch never change the result (see :func:`eot_length`)."""
        if trim:
            ids = tokens.numpy() if isinstance(tokens, jt.Var) else np.asarray(tokens, np.int64)
            tokens = ids[:, :eot_length(ids)]
        tokens = tokens if isinstance(tokens, jt.Var) else jt.array(np.asarray(tokens, np.int64))
        n, length = tokens.shape
        x = self.token_embedding(tokens) + self.positional_embedding[:length]
        x = self.transformer(x, self._attn_mask[:length, :length])
        x = self.ln_final(x)
        eot = jt.argmax(tokens, dim=-1)[0]
        return x[jt.arange(n), eot] @ self.text_projection
