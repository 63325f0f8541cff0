"""RoI shared heads (registered in ``unidetector.registry.MODELS``)."""
from .clip_res_layer import CLIPResLayer

__all__ = ["CLIPResLayer"]
