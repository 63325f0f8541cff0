"""Deterministic word-vector text encoder for the synthetic open world.

Each word gets a fixed random unit vector drawn from ``numpy.random.default_rng`` seeded with the
first 8 bytes of ``sha256(f"{seed}:{word}")``, so vectors are identical across runs, machines and
Python versions (no ``hash()`` randomisation). A phrase (class name) is the L2-normalised sum of its
words' vectors: ``"red star"`` shares a direction with ``"red circle"`` and with ``"blue star"``,
which is what makes zero-shot recognition of an unseen colour-shape pair possible through the text
space, exactly as CLIP embeddings make it possible for real class names.

Default dimension 1024 = the output of CLIP RN50's attention pool, so these files drop into the same
classifier (``zeroshot_path``) as the official CLIP embeddings. Files are ``.npy`` (C, D) float32,
rows in category-id order, like the CLIP embedding files.
"""
from __future__ import annotations

import hashlib
import re

import numpy as np


DEFAULT_DIM = 1024


def word_vector(word: str, dim: int = DEFAULT_DIM, seed: int = 0) -> np.ndarray:
    digest = hashlib.sha256(f"{seed}:{word.lower()}".encode("utf-8")).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    v = rng.standard_normal(dim)
    return v / np.linalg.norm(v)


def tokenize(phrase: str) -> list:
    words = re.findall(r"[a-z0-9]+", phrase.lower())
    if not words:
        raise ValueError(f"class name {phrase!r} has no words to encode")
    return words


class SyntheticTextEncoder:
    """``encode(names) -> (C, dim) float32`` unit rows; ``save(names, path)`` writes the ``.npy``."""

    def __init__(self, dim: int = DEFAULT_DIM, seed: int = 0):
        self.dim = int(dim)
        self.seed = int(seed)

    def encode(self, names) -> np.ndarray:
        rows = []
        for name in names:
            v = np.sum([word_vector(w, self.dim, self.seed) for w in tokenize(name)], axis=0)
            rows.append(v / np.linalg.norm(v))
        return np.asarray(rows, dtype=np.float32).reshape(len(rows), self.dim)

    def save(self, names, path: str) -> np.ndarray:
        emb = self.encode(names)
        np.save(path, emb)
        return emb
