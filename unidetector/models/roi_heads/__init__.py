"""RoI heads, RoI extractors, shared heads and box heads."""
from . import roi_extractors  # noqa: F401  (registers SingleRoIExtractor)
