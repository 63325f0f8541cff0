"""``FastRCNN``: a two-stage detector fed with precomputed proposals (UniDetector stage 2).

``backbone`` (CLIPResNet → ``(C4,)``) [+ ``neck``] → ``roi_head`` (StandardRoIHead with the CLIP
``layer4`` shared head and a CLIP box head) on the proposals given with each image (the stage-1
proposal pickle, loaded by ``LoadProposals``). There is no RPN; everything else is
:class:`~.two_stage.TwoStageDetector`.
"""
from __future__ import annotations

from ...registry import MODELS
from .two_stage import TwoStageDetector

__all__ = ["FastRCNN"]


@MODELS.register_module()
class FastRCNN(TwoStageDetector):
    """Detector on precomputed proposals.

    ``execute(img, img_metas, proposals=..., **targets)``: in training mode (``model.train()``) the
    loss dict of ``roi_head.forward_train``; in eval mode, per image, a list over classes of ``(n, 5)``
    numpy arrays in original-image pixels (``rescale=True``). ``proposals``: per image ``(n_i, 4)``, or
    ``(n_i, 5)`` with the stage-1 score last (open-world inference, ``with_proposal_score``).

    Args:
        backbone, roi_head, neck: configs (``roi_head`` receives ``train_cfg.rcnn``/``test_cfg.rcnn``).
        train_cfg, test_cfg: ``dict(rcnn=...)``.
        pretrained, init_cfg: accepted for config compatibility (weights come from ``load_from``).
    """

    def __init__(self, backbone: dict, roi_head: dict, train_cfg: dict | None = None, test_cfg: dict | None = None,
                 neck: dict | None = None, pretrained=None, init_cfg=None):
        super().__init__(backbone, neck=neck, roi_head=roi_head, train_cfg=train_cfg, test_cfg=test_cfg,
                         pretrained=pretrained, init_cfg=init_cfg)
