"""UniDetector in pure Jittor.

``unidetector.runtime`` is imported first: it prepares the environment
(CPU/GPU choice, offline oneDNN, quiet logs) before Jittor is imported.
"""
from . import runtime  # noqa: F401  (must run before any `import jittor`)

__version__ = "0.1.0"

__all__ = ["Detector", "Detections"]


def __getattr__(name):  # lazy: `import unidetector` stays cheap (no Jittor until a Detector is used)
    if name in ("Detector", "Detections"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'unidetector' has no attribute {name!r}")
