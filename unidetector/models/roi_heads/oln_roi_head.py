"""``OlnRoIHead``: the stage-1 (CLN) RoI head, official ``mmdet/models/roi_heads/oln_roi_head.py``.

Same flow as :class:`StandardRoIHead` (assign/sample proposals, RoIAlign on P2–P5, box head), with
the three-output :class:`Shared2FCBBoxScoreHead`. At test time each proposal's RPN objectness (its
5th column) enters the CLN score ``fg^alpha * (objectness * iou)^(1 - alpha)``; after
``multiclass_nms`` (hard NMS 0.9, ``max_per_img`` 1500 officially) the single class is stacked
into one ``(n, 5)`` array per image: exactly what the proposal pickle stores.
"""
from __future__ import annotations

import jittor as jt
import numpy as np

from ...ops import bbox2result, bbox2roi
from ...ops.boxes import as_var
from ...registry import MODELS
from .standard_roi_head import StandardRoIHead

__all__ = ["OlnRoIHead"]


@MODELS.register_module()
class OlnRoIHead(StandardRoIHead):
    """RoI head of the CLN (see the module docstring; arguments as :class:`StandardRoIHead`)."""

    def _bbox_forward(self, x, rois: jt.Var) -> dict:
        """``(K, 5)`` RoIs -> ``cls_score (K, 2)``, ``bbox_pred (K, 4)``, ``bbox_score (K, 1)``, ``bbox_feats``."""
        bbox_feats = self.bbox_roi_extractor(x[:self.bbox_roi_extractor.num_inputs], rois)
        if self.with_shared_head:
            bbox_feats = self.shared_head(bbox_feats)
        cls_score, bbox_pred, bbox_score = self.bbox_head(bbox_feats)
        return dict(cls_score=cls_score, bbox_pred=bbox_pred, bbox_score=bbox_score, bbox_feats=bbox_feats)

    def _bbox_forward_train(self, x, sampling_results, gt_bboxes, gt_labels, img_metas) -> dict:
        """Forward on the sampled RoIs; adds ``rois``, ``targets`` and the ``loss_bbox`` dict."""
        rois = bbox2roi([res.bboxes for res in sampling_results])
        results = self._bbox_forward(x, rois)
        targets = self.bbox_head.get_targets(sampling_results, gt_bboxes, gt_labels, self.train_cfg)
        loss = self.bbox_head.loss(results["cls_score"], results["bbox_pred"], results["bbox_score"], rois, *targets)
        results.update(loss_bbox=loss, rois=rois, targets=targets)
        return results

    def simple_test_bboxes(self, x, img_metas, proposals, rcnn_test_cfg, rescale: bool = False):
        """Per image ``det_bboxes (k, 5)``/``det_labels (k,)``; with ``rcnn_test_cfg=None`` the
        pre-NMS ``bboxes (n, 4)``/``scores (n, 2)`` instead.

        ``proposals``: per image ``(n_i, 5)`` RPN output (boxes + objectness) in input pixels.
        """
        proposals = [as_var(p) for p in proposals]
        rois = bbox2roi(proposals)
        results = self._bbox_forward(x, rois)
        det_bboxes, det_labels = [], []
        start = 0
        for props, meta in zip(proposals, img_metas):
            rows = slice(start, start + props.shape[0])
            start += props.shape[0]
            det_bbox, det_label = self.bbox_head.get_bboxes(
                rois[rows], results["cls_score"][rows], results["bbox_pred"][rows], results["bbox_score"][rows],
                props[:, -1:], meta["img_shape"], meta["scale_factor"], rescale=rescale, cfg=rcnn_test_cfg)
            det_bboxes.append(det_bbox)
            det_labels.append(det_label)
        return det_bboxes, det_labels

    def simple_test(self, x, proposal_list, img_metas, proposals=None, rescale: bool = False) -> list:
        """Per image one float32 ``(n, 5)`` numpy array ``[x1, y1, x2, y2, CLN score]`` sorted by score
        (original-image pixels with ``rescale=True``)."""
        det_bboxes, det_labels = self.simple_test_bboxes(x, img_metas, proposal_list, self.test_cfg, rescale)
        return [np.vstack(bbox2result(b, l, self.bbox_head.num_classes)) for b, l in zip(det_bboxes, det_labels)]
