"""``TwoStageDetector`` (mmdet 2.18): backbone [+ neck] [+ RPN head] + RoI head.

Training (``model.train()``)::

    x = neck(backbone(img))                                     # tuple of feature maps
    rpn_losses, proposals = rpn_head.forward_train(x, ...)      # or the given ``proposals``
    losses = {**rpn_losses, **roi_head.forward_train(x, img_metas, proposals, gt_bboxes, gt_labels)}

Testing (``model.eval()``): ``roi_head.simple_test(x, proposals, img_metas, rescale)`` with the RPN's
test proposals (``test_cfg.rpn``) unless ``proposals`` are given. Subclasses: :class:`FasterRCNN`
(RPN + RoI head), the stage-2 ``FastRCNN`` (no RPN, precomputed proposals).
"""
from __future__ import annotations

import jittor as jt
from jittor import nn

from ...registry import MODELS, build

__all__ = ["TwoStageDetector", "parse_losses"]


def parse_losses(losses: dict):
    """mmdet ``BaseDetector._parse_losses``: ``(total, log_vars)``.

    Each value is a Var (its mean is taken) or a list of Vars (e.g. one per FPN level: the sum of
    their means). ``total`` sums the entries whose key contains ``'loss'`` (``acc`` is only
    logged). ``log_vars`` maps every key, and ``'loss'``, to a Var (call ``.item()`` to log; no sync here).
    """
    log_vars = {}
    for name, value in losses.items():
        if isinstance(value, jt.Var):
            log_vars[name] = value.mean()
        elif isinstance(value, (list, tuple)):
            log_vars[name] = sum(v.mean() for v in value)
        else:
            raise TypeError(f"loss {name!r} is {type(value).__name__}, expected a jt.Var or a list of them")
    loss_keys = [k for k in log_vars if "loss" in k]
    if not loss_keys:
        raise ValueError(f"the model returned no entry whose name contains 'loss': {list(log_vars)}")
    total = sum(log_vars[k] for k in loss_keys)
    log_vars["loss"] = total
    return total, log_vars


@MODELS.register_module()
class TwoStageDetector(nn.Module):
    """Backbone + optional neck + optional RPN head + RoI head.

    Args:
        backbone, neck, rpn_head, roi_head: module configs. The RPN head gets ``train_cfg.rpn`` /
            ``test_cfg.rpn`` and the RoI head ``train_cfg.rcnn`` / ``test_cfg.rcnn``.
        train_cfg: ``dict(rpn=..., rpn_proposal=..., rcnn=...)`` (``None`` for test-only models).
        test_cfg: ``dict(rpn=..., rcnn=...)``.
        pretrained, init_cfg: accepted for config compatibility (weights come from checkpoints,
            ``load_from`` or the backbone's own ``init_cfg``).
    """

    def __init__(self, backbone: dict, neck: dict | None = None, rpn_head: dict | None = None,
                 roi_head: dict | None = None, train_cfg: dict | None = None, test_cfg: dict | None = None,
                 pretrained=None, init_cfg=None):
        super().__init__()
        train_cfg, test_cfg = train_cfg or {}, test_cfg or {}
        self.train_cfg, self.test_cfg = train_cfg, test_cfg
        self.backbone = build(backbone, MODELS, key_path="model.backbone")
        self.neck = None if neck is None else build(neck, MODELS, key_path="model.neck")
        self.rpn_head = None
        if rpn_head is not None:
            self.rpn_head = build(dict(rpn_head, train_cfg=train_cfg.get("rpn"), test_cfg=test_cfg.get("rpn")),
                                  MODELS, key_path="model.rpn_head")
        self.roi_head = None
        if roi_head is not None:
            self.roi_head = build(dict(roi_head, train_cfg=train_cfg.get("rcnn"), test_cfg=test_cfg.get("rcnn")),
                                  MODELS, key_path="model.roi_head")

    @property
    def with_rpn(self) -> bool:
        return self.rpn_head is not None

    def init_weights(self):
        """Load the backbone's pretrained weights, if its config names any."""
        if hasattr(self.backbone, "init_weights"):
            self.backbone.init_weights()

    def extract_feat(self, img):
        """``(B, 3, H, W)`` -> tuple of feature maps (P2..P6 with an FPN)."""
        x = self.backbone(img)
        return self.neck(x) if self.neck is not None else x

    def execute(self, img, img_metas, gt_bboxes=None, gt_labels=None, gt_bboxes_ignore=None, proposals=None,
                rescale: bool = True, **kwargs):
        """Training mode: dict of named losses (see :func:`parse_losses`). Eval mode: per-image results
        (``roi_head.simple_test``), in original-image pixels when ``rescale``."""
        if self.is_training():
            return self.forward_train(img, img_metas, gt_bboxes, gt_labels, gt_bboxes_ignore, proposals, **kwargs)
        return self.simple_test(img, img_metas, proposals=proposals, rescale=rescale)

    def forward_train(self, img, img_metas, gt_bboxes, gt_labels, gt_bboxes_ignore=None, proposals=None,
                      **kwargs) -> dict:
        """Losses of the RPN (if any) and the RoI head.

        Args:
            img: ``(B, 3, H, W)`` normalised, padded batch.
            img_metas: per image ``img_shape``, ``pad_shape``, ``scale_factor``, ...
            gt_bboxes: per image ``(G_i, 4)``; gt_labels: per image ``(G_i,)`` int64.
            proposals: per image ``(n_i, 4|5)``, used when the detector has no RPN.
        """
        x = self.extract_feat(img)
        losses = {}
        if self.with_rpn:
            proposal_cfg = self.train_cfg.get("rpn_proposal", self.test_cfg.get("rpn"))
            rpn_losses, proposals = self.rpn_head.forward_train(x, img_metas, gt_bboxes, gt_labels=None,
                                                                gt_bboxes_ignore=gt_bboxes_ignore,
                                                                proposal_cfg=proposal_cfg)
            losses.update(rpn_losses)
        elif proposals is None:
            raise ValueError(f"{type(self).__name__} has no RPN: pass proposals for every image")
        losses.update(self.roi_head.forward_train(x, img_metas, proposals, gt_bboxes, gt_labels,
                                                  gt_bboxes_ignore, **kwargs))
        return losses

    def _test_proposals(self, x, img_metas, proposals):
        if proposals is not None:
            return proposals
        if not self.with_rpn:
            raise ValueError(f"{type(self).__name__} has no RPN: pass proposals for every image")
        return self.rpn_head.simple_test_rpn(x, img_metas)

    def simple_test(self, img, img_metas, proposals=None, rescale: bool = False) -> list:
        """Per-image results of ``roi_head.simple_test`` (RPN test proposals unless ``proposals``)."""
        x = self.extract_feat(img)
        return self.roi_head.simple_test(x, self._test_proposals(x, img_metas, proposals), img_metas, rescale=rescale)

    def region_embeddings(self, img, img_metas, proposals=None) -> list:
        """Per image, the RoI head's :class:`~unidetector.models.roi_heads.regions.Regions` (region embeddings
        and box deltas, before any vocabulary): the proposals given (``(n, 5)`` network-input pixels) or,
        for a detector with an RPN (end-to-end), its own. Score them with ``roi_head.score_regions``."""
        x = self.extract_feat(img)
        return self.roi_head.region_embeddings(x, self._test_proposals(x, img_metas, proposals), img_metas)
