"""Models; importing this package registers every model type in ``unidetector.registry.MODELS``."""
from . import backbones  # noqa: F401
from .roi_heads import shared_heads  # noqa: F401
