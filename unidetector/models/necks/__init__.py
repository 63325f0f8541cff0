"""Necks (registered in ``unidetector.registry.MODELS``)."""
from .fpn import FPN

__all__ = ["FPN"]
