"""Config files: mmengine ``Config`` (``_base_`` inheritance, ``--cfg-options``), with errors that name the file.

:func:`load_config` raises :class:`ConfigFileError` naming the file (and line) for a missing file,
a syntax error (in the file or one of its ``_base_`` files), an exception raised by the config's own
code, or an ``--cfg-options`` entry that cannot be applied. :func:`check_top_level_keys` turns a
top-level key that nothing reads but that is a near-miss of one that is read (``lr_confg``) into an
error with "did you mean"; other helper variables of MMDetection-style configs stay allowed.
"""
from __future__ import annotations

import ast
import difflib
from pathlib import Path

from mmengine.config import Config
from mmengine.config import DictAction as _MMEngineDictAction

from .errors import UnidetError

__all__ = ["Config", "ConfigFileError", "DictAction", "check_top_level_keys", "load_config", "resolve_paths"]

#: Config keys (at any depth) whose string values are file or folder paths.
PATH_KEYS = ("ann_file", "img_prefix", "proposal_file", "zeroshot_path", "cat_freq_path", "resultfile", "load_from",
             "resume_from", "work_dir")


class ConfigFileError(UnidetError, ValueError):
    """A config file (or a ``--cfg-options`` entry) that cannot be used; the message names it."""


class DictAction(_MMEngineDictAction):
    """mmengine's ``--cfg-options`` parser; an entry without ``=`` is a usage error, not a traceback."""

    def __call__(self, parser, namespace, values, option_string=None):
        for kv in values or ():
            if "=" not in kv:
                parser.error(f"{option_string}: {kv!r} has no '=' (expected KEY=VALUE, e.g. runner.max_epochs=1)")
        super().__call__(parser, namespace, values, option_string)


def _base_files(path: Path) -> list:
    """The ``_base_`` files named by a Python config (relative to it), when they can be read statically."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (SyntaxError, OSError, UnicodeDecodeError):
        return []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_base_" for t in node.targets):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                return []
            names = [value] if isinstance(value, str) else list(value)
            return [(path.parent / n) for n in names if isinstance(n, str)]
    return []


def _syntax_error(path: Path, seen=None) -> str | None:
    """``'FILE:LINE: message'`` for the first syntax error in ``path`` or its ``_base_`` chain."""
    seen = seen if seen is not None else set()
    if path in seen or not path.is_file():
        return None
    seen.add(path)
    try:
        ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError as e:
        return f"{path}:{e.lineno}: syntax error: {e.msg}" + (f"\n    {e.text.rstrip()}" if e.text else "")
    for base in _base_files(path):
        found = _syntax_error(base, seen)
        if found:
            return found
    return None


def load_config(path: str | Path, cfg_options: dict | None = None) -> Config:
    """Load an mmdet-style Python config and apply ``a.b.c=value`` overrides.

    Raises:
        ConfigFileError: naming the file (and line) for a missing file, syntax error, failing config
            code or a ``--cfg-options`` entry that does not apply.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigFileError(f"config file not found: {path} (cwd: {Path.cwd()})")
    try:
        cfg = Config.fromfile(str(path))
    except SyntaxError:
        raise ConfigFileError(_syntax_error(path) or f"{path}: syntax error in the config or its _base_ files") \
            from None
    except FileNotFoundError as e:
        raise ConfigFileError(f"{path}: {e}") from None
    except Exception as e:  # noqa: BLE001 - the config's own code failed: name the file
        raise ConfigFileError(f"{path}: cannot load the config ({type(e).__name__}: {e})") from None
    if cfg_options:
        try:
            cfg.merge_from_dict(cfg_options)
        except Exception as e:  # noqa: BLE001
            raise ConfigFileError(f"{path}: --cfg-options {cfg_options}: {type(e).__name__}: {e}") from None
    return cfg


def check_top_level_keys(cfg, known) -> None:
    """Refuse a top-level key that is a near-miss of a ``known`` key the config does not set.

    ``lr_confg = dict(...)`` next to no ``lr_config`` is almost surely a typo that would leave the
    default in force; ``img_norm_cfg``, ``train_pipeline`` and other helper variables are not
    near-misses of anything read, so they stay allowed.
    """
    known = set(known)
    problems = []
    for key in cfg.keys():
        if key in known or key.startswith("_"):
            continue
        close = [k for k in difflib.get_close_matches(key, known, n=3, cutoff=0.8) if k not in cfg]
        if close:
            problems.append(f"{key!r} is not a setting; did you mean {close[0]!r}?")
    if problems:
        src = getattr(cfg, "filename", None) or "<config>"
        raise ConfigFileError(f"{src}: " + "; ".join(problems))


def resolve_paths(cfg, base_dir) -> Config:
    """Make the relative paths of ``cfg`` (values of :data:`PATH_KEYS`, strings or lists of strings, at
    any depth) relative to ``base_dir`` instead of the current directory; returns ``cfg``."""
    base = Path(base_dir)

    def fix(value):
        if isinstance(value, str) and value and not Path(value).is_absolute():
            return str(base / value) + ("/" if value.endswith("/") else "")
        if isinstance(value, (list, tuple)):
            return type(value)(fix(v) for v in value)
        return value

    def walk(node):
        if isinstance(node, dict):
            for key in list(node.keys()):
                if key in PATH_KEYS:
                    node[key] = fix(node[key])
                else:
                    walk(node[key])
        elif isinstance(node, (list, tuple)):
            for item in node:
                walk(item)

    walk(cfg._cfg_dict if hasattr(cfg, "_cfg_dict") else cfg)
    return cfg
