"""UniDetector in pure Jittor.

``unidetector.runtime`` is imported first: it prepares the environment
(CPU/GPU choice, offline oneDNN, quiet logs) before Jittor is imported.
"""
from . import runtime  # noqa: F401  (must run before any `import jittor`)

__version__ = "0.1.0"
