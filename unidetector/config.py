"""Config files: mmengine ``Config`` (``_base_`` inheritance, ``--cfg-options``)."""
from __future__ import annotations

from pathlib import Path

from mmengine.config import Config, DictAction

__all__ = ["Config", "DictAction", "load_config"]


def load_config(path: str | Path, cfg_options: dict | None = None) -> Config:
    """Load an mmdet-style Python config and apply ``a.b.c=value`` overrides.

    Raises FileNotFoundError naming the path when the file does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path} (cwd: {Path.cwd()})")
    cfg = Config.fromfile(str(path))
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg
