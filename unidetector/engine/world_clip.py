"""The world-CLIP's image tower: export, cache key and cache (``unidet experiment``'s ``world_clip`` step).

Training is ``configs/synthetic/world_clip.py`` through the ordinary trainer. What stage 2 loads is the
image tower only — ``backbone.*``, ``roi_head.shared_head.*`` and ``roi_head.bbox_head.attnpool.*``, the
keys of a RegionCLIP checkpoint — so it takes the path a real user's RegionCLIP initialisation takes
(``load_from`` + ``allow_partial_load``).

The cache (``<cache>/world_clip/<key>.pkl``, ``<cache>`` = ``$UNIDET_CACHE_DIR`` or ``~/.cache/unidetector``)
is keyed by everything the weights depend on: the world version and seed, the web set's size and the
embedding dimension, the pretraining config (model, data pipeline, optimiser, schedule), the training
convolutions' operand type where it is not float32 (``--amp``, ``UNIDET_TRAIN_DTYPE``) and the software's version,
so a second experiment with the same world pays nothing for it (``unidet experiment`` draws the web scenes only
when the tower is trained).
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

IMAGE_TOWER = ("backbone.", "roi_head.shared_head.", "roi_head.bbox_head.attnpool.")


def image_tower(state_dict: dict) -> dict:
    """The image-tower entries of a detector state dict (see the module doc)."""
    return {k: v for k, v in state_dict.items() if k.startswith(IMAGE_TOWER)}


def export_image_tower(checkpoint, out, meta: dict | None = None) -> Path:
    """Write the image tower of a trained world-CLIP ``checkpoint`` as an mmdet-style ``{'state_dict', 'meta'}``."""
    from .checkpoint import atomic_save, load_checkpoint_file

    ckpt = load_checkpoint_file(checkpoint)
    tower = image_tower(ckpt["state_dict"])
    if not tower:
        raise ValueError(f"{checkpoint}: no image-tower weights ({', '.join(IMAGE_TOWER)}*)")
    return atomic_save({"state_dict": tower, "meta": dict(meta or {}, source=str(checkpoint))}, out)


def cache_key(world: dict, cfg, epochs: int) -> str:
    """sha1 over what the world-CLIP's weights depend on (module doc)."""
    from .. import __version__
    from ..models.layers import channels_last

    recipe = {k: cfg.get(k) for k in ("model", "data", "optimizer", "optimizer_config", "lr_config", "runner")}
    recipe["data"] = {k: v for k, v in (recipe["data"] or {}).items() if k in ("train", "samples_per_gpu")}
    # the web set is a function of (version, seed, number of scenes): known before its scenes are drawn
    key = dict(version=world.get("version"), seed=world["seed"], web=world["stats"].get("web_images"),
               embed_dim=world.get("embed_dim"), epochs=int(epochs), recipe=_plain(recipe), software=__version__)
    compute = channels_last.train_dtype()
    if compute != "float32":  # bfloat16 training convolutions (UNIDET_TRAIN_DTYPE); float32 keys stay as they were
        key["train_dtype"] = compute
    return hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _plain(obj):
    """Config values as JSON-able plain data, with file paths reduced to their names (the work dir may differ)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, str) and "/" in obj:
        return Path(obj).name
    return obj


def cache_file(key: str) -> Path:
    from ..text.cache import cache_root

    return cache_root() / "world_clip" / f"{key}.pkl"


def store(path, key: str) -> Path | None:
    """Copy ``path`` into the cache (atomically); None when the cache folder cannot be written."""
    target = cache_file(key)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        shutil.copyfile(path, tmp)
        tmp.replace(target)
    except OSError:
        return None
    return target
