"""Models; importing this package registers every model type in ``unidetector.registry.MODELS``."""
from . import backbones  # noqa: F401
from .roi_heads import shared_heads  # noqa: F401
from . import detectors, roi_heads  # noqa: F401
from . import dense_heads, losses, necks  # noqa: F401
