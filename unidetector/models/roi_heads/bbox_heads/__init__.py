"""Box heads (registered in ``unidetector.registry.MODELS``)."""
from .bbox_head_clip import BBoxHeadCLIP, BBoxHeadCLIPInference
from .bbox_head_clip_partitioned import BBoxHeadCLIPPartitioned
from .convfc_bbox_score_head import Shared2FCBBoxScoreHead

__all__ = ["BBoxHeadCLIP", "BBoxHeadCLIPInference", "BBoxHeadCLIPPartitioned", "Shared2FCBBoxScoreHead"]
