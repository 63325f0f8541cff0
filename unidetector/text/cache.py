"""On-disk cache of class-name text embeddings.

``<cache>/embeddings/<sha1>.npy`` with ``sha1`` over the encoder id, the names and the prompt
templates, where ``<cache>`` is ``$UNIDET_CACHE_DIR`` or ``~/.cache/unidetector``. A second request
for the same (encoder, names, templates) loads the file instead of encoding again. Files are written
atomically (temporary file + rename), so concurrent writers never leave a partial file.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np


def cache_root() -> Path:
    env = os.environ.get("UNIDET_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "unidetector"


def embedding_key(encoder_id: str, names, templates=()) -> str:
    payload = json.dumps({"encoder": encoder_id, "names": list(names), "templates": list(templates or ())},
                         ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha1(payload.encode("utf-8")).hexdigest()


def embedding_path(encoder_id: str, names, templates=()) -> Path:
    return cache_root() / "embeddings" / f"{embedding_key(encoder_id, names, templates)}.npy"


def cached_embeddings(encoder_id: str, names, encode, templates=()):
    """``(embeddings (C, D) float32, hit)``: the cached array, or ``encode(names)`` saved to the cache.

    A cache that cannot be written (read-only home) only loses the caching, never the result.
    """
    path = embedding_path(encoder_id, names, templates)
    if path.is_file():
        try:
            emb = np.load(path)
            if emb.ndim == 2 and emb.shape[0] == len(names):
                return emb.astype(np.float32), True
        except (OSError, ValueError):
            pass  # unreadable cache entry: encode again and overwrite it
    emb = np.asarray(encode(list(names)), dtype=np.float32)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        with open(tmp, "wb") as f:
            np.save(f, emb)
        os.replace(tmp, path)
    except OSError:
        pass
    return emb, False
