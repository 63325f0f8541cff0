"""Jittor bootstrap: import this module before ``jittor`` anywhere.

What it does, once per process, *before* Jittor is imported:

* **GPU or CPU.** Jittor compiles CUDA whenever it finds ``nvcc``; on a machine
  with ``nvcc`` but no GPU driver the import fails. We ask the driver
  (``libcuda`` → ``cuInit`` → device count) and set ``nvcc_path=""`` when no
  GPU can be used, so Jittor takes the CPU path.
* **oneDNN offline.** Jittor's default downloads oneDNN on first import and
  fails offline; without it convolutions are ~100x slower. Debian's
  ``libdnnl-dev`` works when linked into the cache folder Jittor looks in
  (see ``shared/DESIGN.md``). We create those links; if the library is absent
  we set ``use_mkl=0`` and warn once, loudly.
* **One interpreter path.** Jittor keys its kernel cache by ``sys.executable``; we use the
  ``pythonX.Y`` spelling for ``python``/``python3`` so that every launcher shares one cache
  (:func:`canonical_interpreter`).
* **Quiet logs** (``log_silent=1`` unless ``UNIDET_VERBOSE`` is set), the CPU
  thread count, and offline-safe flags for optional CUDA libraries.
* **python3.X-config of a virtual environment.** Jittor asks ``python3.X-config`` for the include flags and the
  extension suffix and looks for it beside ``sys.executable`` and in ``/usr/bin``, ``/usr/local/bin``: a virtual
  environment made from a pyenv / conda / self-built Python has none there, and the import failed. We point
  ``python_config_path`` at the base interpreter's (``sys.base_prefix/bin``), or, where there is none but Python's
  headers are installed, at a stand-in in the cache that answers from this interpreter's ``sysconfig``
  (:func:`python_config`).
* **Python 3.12+: kernels compiled one at a time** (``use_parallel_op_compiler=0``): Jittor 1.3.11's
  parallel op compiler segfaults there (address 0x10 in a compile thread; Python 3.12.1, 2026-12-01, on the first
  compile of a fused ``logical_not(isnan(x))`` and of the goldens' NMS, while simpler expressions compiled), and
  compiling serially gives the same kernels.

Every decision is recorded in :data:`STATE` so that ``unidet doctor`` can
report it.
"""
from __future__ import annotations

import ctypes
import os
import random
import sys
import warnings
from pathlib import Path

import numpy as np

#: Where Jittor 1.3.11 looks for its oneDNN ("mkl") package (``~/.cache/jittor/mkl``,
#: independent of ``cache_path``).
ONEDNN_DIR = Path.home() / ".cache" / "jittor" / "mkl" / "dnnl_lnx_2.2.0_cpu_gomp"
DEBIAN_DNNL_INCLUDE = Path("/usr/include/oneapi/dnnl")
DEBIAN_DNNL_LIBS = [Path("/usr/lib/x86_64-linux-gnu/libdnnl.so"), Path("/usr/lib/aarch64-linux-gnu/libdnnl.so"),
                    Path("/lib/x86_64-linux-gnu/libdnnl.so")]

#: What the bootstrap found and decided (read by ``unidet doctor``).
STATE: dict = {}


def cuda_device_count() -> int:
    """Number of CUDA devices the driver reports; 0 without a usable driver."""
    for name in ("libcuda.so.1", "libcuda.so"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        if lib.cuInit(0) != 0:
            return 0
        count = ctypes.c_int(0)
        if lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return 0
        return count.value
    return 0


def canonical_interpreter(executable: str) -> str:
    """``executable``'s ``pythonX.Y`` sibling when that is the same interpreter (``.venv/bin/python`` and
    ``python3`` are links to it), else ``executable`` unchanged.

    Jittor writes ``sys.executable`` into the compile command that keys every cached kernel, so without
    this ``python -m pytest`` and the ``unidet`` script (``#!.../python3``) would each compile their own copy
    of every kernel, overwriting the other's: minutes of recompilation whenever the two alternate.
    """
    path = Path(executable)
    sibling = path.with_name(f"python{sys.version_info.major}.{sys.version_info.minor}")
    if sibling != path and sibling.is_file() and os.path.realpath(sibling) == os.path.realpath(path):
        return str(sibling)
    return executable


def link_debian_onednn(target: Path = ONEDNN_DIR) -> bool:
    """Make Debian's oneDNN visible as Jittor's ``dnnl_lnx_2.2.0_cpu_gomp``.

    Returns True when the folder holds a usable header + library afterwards.
    Existing files are left alone (a real Jittor download or earlier link).
    """
    include, lib = target / "include", target / "lib" / "libmkldnn.so"
    if (include / "dnnl.h").exists() and lib.exists():
        return True
    debian_lib = next((p for p in DEBIAN_DNNL_LIBS if p.exists()), None)
    if not (DEBIAN_DNNL_INCLUDE / "dnnl.h").exists() or debian_lib is None:
        return False
    try:
        lib.parent.mkdir(parents=True, exist_ok=True)
        if not include.exists():
            include.symlink_to(DEBIAN_DNNL_INCLUDE)
        if not lib.exists():
            lib.symlink_to(debian_lib)
    except OSError as e:  # read-only home, race with another process, ...
        warnings.warn(f"unidetector: could not link oneDNN into {target}: {e}")
    return (include / "dnnl.h").exists() and lib.exists()


def python_config(executable: str = sys.executable, base_prefix: str = sys.base_prefix, version=sys.version_info,
                  include: str | None = None, cache: Path | None = None) -> Path | None:
    """What ``python_config_path`` should name where Jittor's own search (``python3.X-config`` beside ``executable``,
    in ``/usr/bin`` and ``/usr/local/bin``; ``python3-config`` beside ``executable``) finds nothing: the base
    interpreter's ``python3.X-config`` (``base_prefix/bin``), or else, where Python's headers are there
    (``include``/Python.h, default this interpreter's), a stand-in written to ``<cache>/python_config/`` that
    answers ``--includes``, ``--extension-suffix`` and ``--ldflags`` from ``sysconfig``. None where Jittor finds its
    own or where nothing can help (no headers: Jittor's error then names python3.X-dev)."""
    import sysconfig

    name = f"python{version[0]}.{version[1]}-config"
    here = Path(executable).parent
    searched = [here / name, Path("/usr/bin") / name, Path("/usr/local/bin") / name, here / "python3-config"]
    if any(p.is_file() for p in searched):
        return None
    base = Path(base_prefix) / "bin" / name
    if base.is_file():
        return base
    include = include or sysconfig.get_path("include")
    if not (Path(include) / "Python.h").is_file():
        return None
    if cache is None:
        from .text.cache import cache_root

        cache = cache_root()
    var = sysconfig.get_config_var
    answers = {"--includes": f"-I{include}", "--extension-suffix": var("EXT_SUFFIX") or "",
               "--ldflags": f"-L{var('LIBDIR') or ''} {var('LIBS') or ''} {var('SYSLIBS') or ''}".strip()}
    cases = "".join(f"        {flag}) out=\"$out {value}\" ;;\n" for flag, value in answers.items())
    text = (f"#!/bin/sh\n# {name} of {executable}: a stand-in written by unidetector.runtime (sysconfig)\n"
            f"out=\nfor a in \"$@\"; do\n    case \"$a\" in\n{cases}    esac\ndone\necho $out\n")
    import hashlib

    stand_in = cache / "python_config" / f"{name}-{hashlib.sha1(executable.encode()).hexdigest()[:10]}"
    try:
        if not stand_in.is_file() or stand_in.read_text() != text:
            stand_in.parent.mkdir(parents=True, exist_ok=True)
            tmp = stand_in.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(text)
            tmp.chmod(0o755)
            os.replace(tmp, stand_in)
    except OSError:
        return None
    return stand_in


#: the first Python on which Jittor 1.3.11's parallel op compiler crashes
SERIAL_COMPILE_FROM = (3, 12)


def bootstrap(env=None, state=None, onednn_dir: Path = ONEDNN_DIR, python=None) -> dict:
    """Prepare ``env`` (default ``os.environ``) for ``import jittor``; idempotent.

    ``env``, ``state``, ``onednn_dir`` and ``python`` (the version, default this interpreter's) are parameters
    so that tests can run the decisions on a scratch environment.
    """
    env = os.environ if env is None else env
    state = STATE if state is None else state
    if state.get("done"):
        return state
    if "jittor" in sys.modules and env is os.environ:
        state["imported_too_late"] = True  # flags are already fixed; report, don't fail
    elif env is os.environ:
        canonical = canonical_interpreter(sys.executable)
        if canonical != sys.executable:
            state["python_path"] = f"{canonical}  (instead of {sys.executable}: one kernel cache for every launcher)"
            sys.executable = canonical

    def setdefault_env(key: str, value: str, why: str) -> None:
        if key not in env:
            env[key] = value
            state.setdefault("env_set", {})[key] = f"{value}  ({why})"

    state["cuda_devices"] = n_gpu = cuda_device_count()
    if n_gpu == 0:
        setdefault_env("nvcc_path", "", "no CUDA device: use the CPU")
    else:
        # Offline, these would be downloaded on first use.
        for flag in ("use_cutt", "use_cutlass", "use_nccl"):
            setdefault_env(flag, "0", "offline-safe default")

    if env.get("use_mkl") == "0":
        state["onednn"] = False
        state["onednn_reason"] = "disabled by use_mkl=0 in the environment"
    elif link_debian_onednn(onednn_dir):
        state["onednn"] = True
        state["onednn_reason"] = f"linked at {onednn_dir}"
    else:
        state["onednn"] = False
        state["onednn_reason"] = "Debian libdnnl-dev not installed"
        env["use_mkl"] = "0"
        warnings.warn(
            "\n" + "!" * 78 + "\n"
            "unidetector: oneDNN is NOT available, so Jittor convolutions will be ~100x slower.\n"
            "  Fix: sudo apt-get install libdnnl-dev   (then re-run; the link is made for you)\n"
            + "!" * 78, RuntimeWarning, stacklevel=2)

    config = None if "python_config_path" in env else python_config()
    if config is not None:
        setdefault_env("python_config_path", str(config), "Jittor's search finds no python3.X-config here")
    if tuple(python or sys.version_info[:2]) >= SERIAL_COMPILE_FROM:
        setdefault_env("use_parallel_op_compiler", "0",
                       "Python 3.12+: Jittor 1.3.11's parallel op compiler segfaults there")
    if not env.get("UNIDET_VERBOSE"):
        setdefault_env("log_silent", "1", "quiet Jittor logs; UNIDET_VERBOSE=1 shows them")
    state["threads"] = int(env.get("OMP_NUM_THREADS", os.cpu_count() or 1))
    state["done"] = True
    return state


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and Jittor RNGs."""
    import jittor as jt

    random.seed(seed)
    np.random.seed(seed)
    jt.set_global_seed(seed)


bootstrap()
