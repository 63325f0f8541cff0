"""On-disk cache of class-name text embeddings.

``<cache>/embeddings/<sha1>.npy`` with ``sha1`` over the encoder id, the names and the prompt
templates, where ``<cache>`` is ``$UNIDET_CACHE_DIR`` or ``~/.cache/unidetector``. A second request
for the same (encoder, names, templates) loads the file instead of encoding again. Files are written
atomically (temporary file + rename), so concurrent writers never leave a partial file.

Encoders read from a weights file (``clip:RN50.pt``) are identified by the file's *content*
(:func:`file_digest`, sha1), so a copied, moved or touched ``RN50.pt`` still finds its embeddings. The
digest of a file is computed once and remembered in ``<cache>/file_digests.json`` under its path, size
and modification time (hashing a 244 MB ``RN50.pt`` takes about a second, encoding LVIS minutes).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np


def cache_root() -> Path:
    env = os.environ.get("UNIDET_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "unidetector"


def file_digest(path) -> str:
    """sha1 (hex) of the contents of ``path``, remembered in ``<cache>/file_digests.json`` keyed by
    the resolved path, size and ``st_mtime_ns``: a file is read in full once, not at every run. A
    cache folder that cannot be written only loses the memo."""
    path = Path(path).expanduser().resolve()
    st = path.stat()
    memo_key = f"{path}|{st.st_size}|{st.st_mtime_ns}"
    memo_path = cache_root() / "file_digests.json"
    try:
        memo = json.loads(memo_path.read_text(encoding="utf-8"))
        if not isinstance(memo, dict):
            memo = {}
    except (OSError, ValueError):
        memo = {}
    if isinstance(memo.get(memo_key), str):
        return memo[memo_key]
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    digest = h.hexdigest()
    memo = {k: v for k, v in memo.items() if not k.startswith(f"{path}|")}  # older versions of this file
    memo[memo_key] = digest
    try:
        _atomic_write(memo_path, json.dumps(memo, indent=0).encode("utf-8"))
    except OSError:
        pass
    return digest


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


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
    buf = io.BytesIO()
    np.save(buf, emb)
    try:
        _atomic_write(path, buf.getvalue())
    except OSError:
        pass
    return emb, False
