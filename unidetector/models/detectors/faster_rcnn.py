"""``FasterRCNN``: a :class:`TwoStageDetector` with an RPN head (UniDetector stage 1 uses ResNet +
FPN + ``OlnRPNHead`` + ``OlnRoIHead``; the end-to-end variant a C4 ``RPNHead``)."""
from __future__ import annotations

from ...registry import MODELS
from .two_stage import TwoStageDetector

__all__ = ["FasterRCNN"]


@MODELS.register_module()
class FasterRCNN(TwoStageDetector):
    """Two-stage detector whose proposals come from its own RPN (``rpn_head`` is required)."""

    def __init__(self, backbone: dict, rpn_head: dict, roi_head: dict, train_cfg: dict | None = None,
                 test_cfg: dict | None = None, neck: dict | None = None, pretrained=None, init_cfg=None):
        super().__init__(backbone, neck=neck, rpn_head=rpn_head, roi_head=roi_head, train_cfg=train_cfg,
                         test_cfg=test_cfg, pretrained=pretrained, init_cfg=init_cfg)
