"""The seed configs' ``jittor_config = dict(use_cuda=..., amp_level=..., compile_mode=...)`` block.

:func:`apply_jittor_config` honours each key or refuses it with a message that names the config file,
the key and what is supported; it is called by the runner before a training or test run is built.

* ``use_cuda``: ``True`` runs on the GPU (an error when Jittor has no usable CUDA device), ``False``
  on the CPU, ``'auto'``/``None`` on the GPU when there is one (``jt.flags.use_cuda``).
* ``amp_level``: Jittor's ``auto_mixed_precision_level``. ``0`` is fp32. ``1``-``3`` are Jittor's
  "preserve" levels: they keep the dtypes a model already has and introduce no fp16, so this fp32
  model computes in fp32 (the flag is set all the same). ``5`` is the engine's mixed precision
  (:mod:`unidetector.engine.amp`, = ``--amp``): fp16 ops on the GPU with fp32 master weights and
  dynamic loss scaling, unless the config sets ``fp16=dict(loss_scale=...)``. ``4`` and ``6`` are
  refused: the engine's loss-scaled AMP runs Jittor level 5.
* ``compile_mode``: ``'fast'`` (or ``'default'``/``None``) is Jittor's only compiled mode, lazy
  execution with fused kernels cached on disk (its default); ``'eager'`` runs every op at once
  (``jt.flags.lazy_execution=0``: slower, with tracebacks at the failing op, for debugging).
"""
from __future__ import annotations

from ..errors import UnidetError

SUPPORTED_KEYS = ("use_cuda", "amp_level", "compile_mode")
ENGINE_AMP_LEVEL = 5
PRESERVE_LEVELS = (0, 1, 2, 3)
COMPILE_MODES = {"fast": 1, "default": 1, None: 1, "eager": 0}  # -> jt.flags.lazy_execution


class JittorConfigError(UnidetError, ValueError):
    """A ``jittor_config`` entry that cannot be honoured; the message names the config and the key."""


def apply_jittor_config(cfg) -> None:
    """Honour ``cfg.jittor_config`` (see the module doc); nothing to do when the config has none.

    Sets ``jt.flags.use_cuda``, ``jt.flags.auto_mixed_precision_level`` and
    ``jt.flags.lazy_execution`` as asked, and for ``amp_level=5`` adds ``fp16=dict(loss_scale='dynamic')``
    to ``cfg`` (when it has no ``fp16``) so that training runs the engine's mixed precision.

    Raises:
        JittorConfigError: unknown key (the supported ones listed), a value of the wrong type or out of
            range, ``use_cuda=True`` without a CUDA device, ``amp_level`` 4 or 6, an unknown
            ``compile_mode``; the message names the config file and the key.
    """
    jc = cfg.get("jittor_config")
    if jc is None:
        return
    src = getattr(cfg, "filename", None) or "<config>"
    if not hasattr(jc, "keys"):
        raise JittorConfigError(f"{src}: jittor_config must be a dict(use_cuda=..., amp_level=..., "
                                f"compile_mode=...), got {jc!r}")
    unknown = sorted(set(jc.keys()) - set(SUPPORTED_KEYS))
    if unknown:
        raise JittorConfigError(f"{src}: jittor_config: unknown key(s) {', '.join(unknown)} "
                                f"(supported: {', '.join(SUPPORTED_KEYS)})")
    if "use_cuda" in jc:
        _apply_use_cuda(jc["use_cuda"], src)
    if "amp_level" in jc:
        _apply_amp_level(cfg, jc["amp_level"], src)
    if "compile_mode" in jc:
        _apply_compile_mode(jc["compile_mode"], src)


def cuda_available() -> bool:
    """True when Jittor can run on a CUDA device here (a driver with a device, and CUDA compiled in)."""
    import jittor as jt

    from ..runtime import STATE

    return bool(getattr(jt, "has_cuda", False)) and STATE.get("cuda_devices", 1) != 0


def _apply_use_cuda(value, src: str) -> None:
    import jittor as jt

    if value not in (True, False, "auto", None):  # 1 and 0 compare equal to True and False
        raise JittorConfigError(f"{src}: jittor_config.use_cuda={value!r}: expected True, False or 'auto'")
    has_cuda = cuda_available()
    if value is True or value == 1:
        if not has_cuda:
            from ..runtime import STATE

            raise JittorConfigError(
                f"{src}: jittor_config.use_cuda=True but Jittor has no usable CUDA device here "
                f"({STATE.get('cuda_devices', 0)} device(s) found by the driver; `unidet doctor` says why); "
                "set use_cuda='auto' (GPU when present) or False to run on the CPU")
        jt.flags.use_cuda = 1
    elif value is False or value == 0:
        jt.flags.use_cuda = 0
    else:
        jt.flags.use_cuda = 1 if has_cuda else 0


def _apply_amp_level(cfg, value, src: str) -> None:
    import jittor as jt

    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 6:
        raise JittorConfigError(f"{src}: jittor_config.amp_level={value!r}: expected an integer 0-6 "
                                "(Jittor's auto_mixed_precision_level; supported: 0-3 and 5)")
    if value in PRESERVE_LEVELS:
        jt.flags.auto_mixed_precision_level = value
        if value:
            print(f"jittor_config.amp_level={value}: Jittor levels 1-3 keep the model's dtypes and add no fp16, "
                  f"so this fp32 model computes in fp32 (amp_level={ENGINE_AMP_LEVEL} or --amp: mixed precision)")
        return
    if value != ENGINE_AMP_LEVEL:
        raise JittorConfigError(
            f"{src}: jittor_config.amp_level={value} is not supported: the engine's mixed precision (fp16 ops, "
            f"fp32 master weights, loss scaling) runs Jittor level {ENGINE_AMP_LEVEL}; use amp_level="
            f"{ENGINE_AMP_LEVEL} (or --amp / fp16=dict(loss_scale=...)), or 0-3 for fp32")
    if cfg.get("fp16") is None:
        cfg.fp16 = dict(loss_scale="dynamic")
    if jt.flags.use_cuda:
        jt.flags.auto_mixed_precision_level = ENGINE_AMP_LEVEL


def _apply_compile_mode(value, src: str) -> None:
    import jittor as jt

    if not isinstance(value, (str, type(None))) or value not in COMPILE_MODES:
        names = ", ".join(repr(k) for k in COMPILE_MODES if k is not None)
        raise JittorConfigError(f"{src}: jittor_config.compile_mode={value!r} is not supported (supported: {names}; "
                                "'fast' = Jittor's default lazy execution with fused, cached kernels, 'eager' = "
                                "lazy_execution=0 for debugging)")
    jt.flags.lazy_execution = COMPILE_MODES[value]
