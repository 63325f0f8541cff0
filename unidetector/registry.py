"""Registries (mmengine ``Registry``) and ``build`` with errors that say where.

Config schema and type names follow MMDetection 2.x / the official UniDetector
code, so ``dict(type='CLIPResNet', layers=[3, 4, 6, 3])`` builds our Jittor
``CLIPResNet``. Every ``build`` failure names the config file, the key path in
the config, and the registered alternatives.
"""
from __future__ import annotations

import contextlib
import contextvars
import difflib
import inspect

from mmengine.registry import Registry

from .errors import UnidetError

MODELS = Registry("model")          # backbones, necks, heads, detectors, losses
TASK_UTILS = Registry("task util")  # coders, anchor generators, assigners, samplers
DATASETS = Registry("dataset")
TRANSFORMS = Registry("transform")


class ConfigError(UnidetError, ValueError):
    """A config names an unknown type or passes arguments a type does not take."""


#: the config file of the outermost build with a ``filename``: the nested builds of a model's parts (heads, losses,
#: coders) name it in their errors too
_CONFIG_FILE = contextvars.ContextVar("unidet_config_file", default=None)


@contextlib.contextmanager
def _config_file(path):
    token = _CONFIG_FILE.set(path or _CONFIG_FILE.get())
    try:
        yield
    finally:
        _CONFIG_FILE.reset(token)


def build(cfg: dict, registry: Registry, *, key_path: str = "", filename: str | None = None, **default_args):
    """Build ``cfg['type']`` from ``registry`` with the remaining keys as kwargs.

    Args:
        cfg: dict with a ``type`` key (an mmengine ``ConfigDict`` works).
        registry: where ``type`` is looked up.
        key_path: dotted position of ``cfg`` inside the whole config, for errors
            (e.g. ``"model.roi_head.bbox_head"``).
        filename: the config file, for errors (default: the enclosing build's); nested builds inherit it.
        default_args: extra kwargs (config values win).
    """
    where = f"{filename or _CONFIG_FILE.get() or '<config>'}: {key_path or '<root>'}"
    if not isinstance(cfg, dict) or "type" not in cfg:
        raise ConfigError(f"{where}: expected a dict with a 'type' key, got {cfg!r}")
    args = dict(cfg)
    type_name = args.pop("type")
    for k, v in default_args.items():
        args.setdefault(k, v)
    cls = registry.get(type_name) if isinstance(type_name, str) else type_name
    if cls is None:
        known = sorted(registry.module_dict)
        close = difflib.get_close_matches(str(type_name), known, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"{where}.type: '{type_name}' is not a registered {registry.name}.{hint} "
                          f"Registered: {', '.join(known) or '(none)'}")
    params = inspect.signature(cls).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unexpected = sorted(set(args) - set(params))
        if unexpected:
            accepted = sorted(k for k, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
            raise ConfigError(f"{where}: {cls.__name__} does not take {', '.join(map(repr, unexpected))}. "
                              f"It accepts: {', '.join(accepted)}")
    try:
        with _config_file(filename):
            return cls(**args)
    except ValueError as err:  # a constructor's own check: say where in the config it failed
        if isinstance(err, UnidetError):
            raise
        raise ConfigError(f"{where}: {err}") from err
