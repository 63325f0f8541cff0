"""``build_detector``: a detector from the ``model`` section of a config (mmdet 2.x API)."""
from __future__ import annotations

from .. import models  # noqa: F401  (registers every model type)
from ..registry import MODELS, ConfigError, build

__all__ = ["build_detector"]


def build_detector(cfg: dict, train_cfg: dict | None = None, test_cfg: dict | None = None,
                   filename: str | None = None):
    """Build ``cfg`` (e.g. ``config.model``) from ``MODELS``.

    ``train_cfg``/``test_cfg`` are the old top-level config fields; they are passed to the detector
    unless the model config has its own (giving both is an error, as in mmdet).
    """
    cfg = dict(cfg)
    for name, value in (("train_cfg", train_cfg), ("test_cfg", test_cfg)):
        if value is not None:
            if cfg.get(name) is not None:
                raise ConfigError(f"{filename or '<config>'}: {name} is given both at the top level and in model")
            cfg[name] = value
    return build(cfg, MODELS, key_path="model", filename=filename)
