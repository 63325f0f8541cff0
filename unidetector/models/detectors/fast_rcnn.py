"""``FastRCNN``: a two-stage detector fed with precomputed proposals (UniDetector stage 2).

``backbone`` (CLIPResNet → ``(C4,)``) [+ ``neck``] → ``roi_head`` (StandardRoIHead with the CLIP
``layer4`` shared head and a CLIP box head) on the proposals given with each image (the stage-1
proposal pickle, loaded by ``LoadProposals``). There is no RPN.
"""
from __future__ import annotations

from jittor import nn

from ...registry import MODELS, build

__all__ = ["FastRCNN"]


@MODELS.register_module()
class FastRCNN(nn.Module):
    """Detector on precomputed proposals.

    ``execute(img, img_metas, proposals, **targets)``: in training mode (``model.train()``) returns the
    loss dict of ``roi_head.forward_train``; in eval mode returns, per image, a list over classes of
    ``(n, 5)`` numpy arrays in original-image pixels (``rescale=True``).

    Args:
        backbone, roi_head, neck: configs (``roi_head`` receives ``train_cfg.rcnn``/``test_cfg.rcnn``).
        train_cfg, test_cfg: ``dict(rcnn=...)``.
        pretrained, init_cfg: accepted for config compatibility (weights come from ``load_from``).
    """

    def __init__(self, backbone, roi_head, train_cfg=None, test_cfg=None, neck=None, pretrained=None, init_cfg=None):
        super().__init__()
        self.backbone = build(backbone, MODELS, key_path="model.backbone")
        self.neck = None if neck is None else build(neck, MODELS, key_path="model.neck")
        self.train_cfg, self.test_cfg = train_cfg, test_cfg
        self.roi_head = build(dict(roi_head, train_cfg=(train_cfg or {}).get("rcnn"),
                                   test_cfg=(test_cfg or {}).get("rcnn")), MODELS, key_path="model.roi_head")

    def extract_feat(self, img):
        """``(B, 3, H, W)`` → tuple of feature maps (``(C4,)`` for CLIPResNet)."""
        x = self.backbone(img)
        return self.neck(x) if self.neck is not None else x

    def execute(self, img, img_metas, proposals=None, gt_bboxes=None, gt_labels=None, gt_bboxes_ignore=None,
                rescale: bool = True, **kwargs):
        if proposals is None:
            raise ValueError("FastRCNN needs proposals for every image (LoadProposals in the pipeline)")
        if self.is_training():
            return self.forward_train(img, img_metas, proposals, gt_bboxes, gt_labels, gt_bboxes_ignore)
        return self.simple_test(img, img_metas, proposals, rescale=rescale)

    def forward_train(self, img, img_metas, proposals, gt_bboxes, gt_labels, gt_bboxes_ignore=None) -> dict:
        x = self.extract_feat(img)
        return self.roi_head.forward_train(x, img_metas, proposals, gt_bboxes, gt_labels, gt_bboxes_ignore)

    def simple_test(self, img, img_metas, proposals, rescale: bool = False) -> list:
        x = self.extract_feat(img)
        return self.roi_head.simple_test(x, proposals, img_metas, rescale=rescale)
