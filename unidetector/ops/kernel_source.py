"""The C++ / CUDA sources of the ``jt.code`` kernels, kept as ``.h`` / ``.cc`` / ``.cu`` files in
``unidetector/ops/kernels/`` (package data), beside the Python modules that run them.

Convention (one idea per place):

* ``kernels/<op>.cc`` holds the CPU code and ``kernels/<op>.cu`` the CUDA code of ``ops/<op>.py``;
  ``kernels/<op>.h`` the code both share (``UNIDET_HD`` functions, from ``common.h``). Each file
  is a complete translation unit: typed functions in ``namespace unidet``, no Jittor names, so an
  editor and ``g++ -fsyntax-only`` (``tests/test_kernel_sources.py``) check it as it is.
* Settings that the Python side chooses per call (output size, thresholds, ``eps``...) are
  macros. :func:`header` writes them as ``#define NAME value`` lines in front of the source;
  each file also carries example defaults under ``#ifndef``, for editors and the syntax check.
* ``jt.code`` gets that text as ``cpu_header`` / ``cuda_header``; its ``cpu_src`` / ``cuda_src``
  is a one-line call, written in the Python module, that binds Jittor's ``in0_p``,
  ``in0_shape0``, ``out0_p``... to the function's parameters.

Jittor compiles a kernel in its cache folder, where ``#include "..."`` finds nothing: quoted
includes of files in ``kernels/`` are therefore inlined here (each file once, like include
guards). Jittor keys its compiled kernels by this text: editing a file recompiles its kernels.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

from ..errors import UnidetError

KERNEL_DIR = Path(__file__).resolve().parent / "kernels"

_LOCAL_INCLUDE = re.compile(r'^#include "([^"]+)"[ \t]*$', re.MULTILINE)


class KernelSourceError(UnidetError):
    """A kernel source file of the installed package is missing or unreadable."""


class KernelCode(NamedTuple):
    """The four source arguments of one ``jt.code`` call (empty strings: no such variant)."""

    cpu_header: str
    cpu_src: str
    cuda_header: str = ""
    cuda_src: str = ""

    def kwargs(self) -> dict:
        """``jt.code`` keyword arguments, the empty variants left out."""
        return {key: value for key, value in self._asdict().items() if value}


def read(name: str) -> str:
    """Text of ``kernels/<name>`` (ASCII: Jittor puts it in its kernel key)."""
    path = KERNEL_DIR / name
    try:
        return path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as e:
        raise KernelSourceError(f"{path}: cannot read this kernel source of the installed package "
                                f"({type(e).__name__}: {e}); reinstall jittor-unidetector") from e


def load(name: str) -> str:
    """``kernels/<name>`` with its quoted includes from ``kernels/`` inlined, each file once."""
    return _inline(name, [])


def files(name: str) -> list:
    """The files :func:`load` puts together for ``name``, in order of first inclusion."""
    seen: list = []
    _inline(name, seen)
    return seen


def _inline(name: str, seen: list) -> str:
    if name in seen:
        return ""
    seen.append(name)
    return _LOCAL_INCLUDE.sub(lambda m: _inline(m.group(1), seen), read(name))


def defines(macros: dict) -> str:
    """``#define NAME value`` lines, one per entry, in order."""
    bad = [name for name in macros if not re.fullmatch(r"[A-Z][A-Z0-9_]*", name)]
    if bad:
        raise ValueError(f"kernel_source.defines: macro names must be upper-case C identifiers, got {bad}")
    return "".join(f"#define {name} {value}\n" for name, value in macros.items())


def header(source: str, macros: dict | None = None) -> str:
    """A ``jt.code`` header: the ``macros`` as ``#define`` lines, then ``source`` (from :func:`load`)."""
    return defines(macros or {}) + source
