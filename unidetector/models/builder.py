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
    top_level = []
    for name, value in (("train_cfg", train_cfg), ("test_cfg", test_cfg)):
        if value is not None:
            if cfg.get(name) is not None:
                raise ConfigError(f"{filename or '<config>'}: {name} is given both at the top level and in model")
            cfg[name] = value
            top_level.append(name)
    try:
        return build(cfg, MODELS, key_path="model", filename=filename)
    except ConfigError as e:
        # the heads name their train/test settings model.train_cfg.*: say where this config has them
        message = str(e)
        for name in top_level:
            message = message.replace(f": model.{name}.", f": {name}.")
        if message == str(e):
            raise
        raise ConfigError(message) from e
