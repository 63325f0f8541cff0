"""Detectors (registered in ``unidetector.registry.MODELS``)."""
from .fast_rcnn import FastRCNN
from .faster_rcnn import FasterRCNN
from .two_stage import TwoStageDetector, parse_losses

__all__ = ["FastRCNN", "FasterRCNN", "TwoStageDetector", "parse_losses"]
