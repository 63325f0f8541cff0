"""mmdet ``MaxIoUAssigner`` (vectorised over GTs) and its ``AssignResult``."""
from __future__ import annotations

import jittor as jt

from ..registry import TASK_UTILS
from .boxes import as_var, bbox_overlaps

__all__ = ["AssignResult", "MaxIoUAssigner"]


class AssignResult:
    """Assignment of N boxes to G GTs.

    Attributes:
        num_gts: G.
        gt_inds: ``(N,)`` int64: 0 = negative, -1 = ignored, k+1 = assigned to GT k.
        max_overlaps: ``(N,)`` float32 IoU with the best GT (0 without GTs).
        labels: ``(N,)`` int64 GT label of positives, -1 elsewhere (None without ``gt_labels``).
    """

    def __init__(self, num_gts: int, gt_inds: jt.Var, max_overlaps: jt.Var, labels: jt.Var | None = None):
        self.num_gts, self.gt_inds, self.max_overlaps, self.labels = num_gts, gt_inds, max_overlaps, labels

    @property
    def num_preds(self) -> int:
        return self.gt_inds.shape[0]

    def add_gt_(self, gt_labels) -> None:
        """Prepend the GTs as boxes assigned to themselves (IoU 1), as mmdet does for proposals."""
        gt_labels = as_var(gt_labels, "int64")
        g = gt_labels.shape[0]
        self.gt_inds = jt.concat([jt.arange(1, g + 1).int64(), self.gt_inds])
        self.max_overlaps = jt.concat([jt.ones((g,), dtype="float32"), self.max_overlaps])
        if self.labels is not None:
            self.labels = jt.concat([gt_labels, self.labels])

    def __repr__(self):
        return f"AssignResult(num_gts={self.num_gts}, num_preds={self.num_preds})"


@TASK_UTILS.register_module()
class MaxIoUAssigner:
    """Assign each box to the GT of highest IoU (mmdet 2.18 ``MaxIoUAssigner``).

    * negative (0) if ``0 <= max IoU < neg_iou_thr`` (or within a ``(lo, hi)`` tuple);
    * positive (k+1) if ``max IoU >= pos_iou_thr``, k = the *first* GT reaching the max;
    * ``match_low_quality``: every GT whose best IoU is ``>= min_pos_iou`` also takes the
      box(es) where it reaches that IoU (all of them when ``gt_max_assign_all``); GTs are
      applied in index order, so a later GT wins a box both claim (mmdet's loop order);
    * boxes whose IoF with an ignored GT exceeds ``ignore_iof_thr`` (> 0) are ignored (-1).

    Only IoU (``BboxOverlaps2D``) is supported as ``iou_calculator``.
    """

    def __init__(self, pos_iou_thr: float, neg_iou_thr, min_pos_iou: float = 0.0, gt_max_assign_all: bool = True,
                 ignore_iof_thr: float = -1, ignore_wrt_candidates: bool = True, match_low_quality: bool = True,
                 gpu_assign_thr: float = -1, iou_calculator: dict | None = None):
        if iou_calculator not in (None, dict(type="BboxOverlaps2D")):
            raise NotImplementedError(f"MaxIoUAssigner iou_calculator={iou_calculator}: only BboxOverlaps2D")
        self.pos_iou_thr, self.neg_iou_thr, self.min_pos_iou = pos_iou_thr, neg_iou_thr, min_pos_iou
        self.gt_max_assign_all, self.match_low_quality = gt_max_assign_all, match_low_quality
        self.ignore_iof_thr, self.ignore_wrt_candidates = ignore_iof_thr, ignore_wrt_candidates
        self.gpu_assign_thr = gpu_assign_thr  # accepted for config compatibility; Jittor picks the device

    def assign(self, bboxes, gt_bboxes, gt_bboxes_ignore=None, gt_labels=None) -> AssignResult:
        """Assign ``(N, 4+)`` boxes to ``(G, 4)`` GTs (``gt_labels``: ``(G,)`` int, optional)."""
        bboxes, gt_bboxes = as_var(bboxes)[:, :4], as_var(gt_bboxes)
        gt_labels = None if gt_labels is None else as_var(gt_labels, "int64")
        if gt_labels is not None and gt_labels.shape[0] != gt_bboxes.shape[0]:
            raise ValueError(f"{gt_bboxes.shape[0]} GT boxes but {gt_labels.shape[0]} GT labels")
        overlaps = bbox_overlaps(gt_bboxes, bboxes)  # (G, N)
        if (self.ignore_iof_thr > 0 and gt_bboxes_ignore is not None and len(gt_bboxes_ignore) > 0
                and bboxes.shape[0] > 0 and gt_bboxes.shape[0] > 0):
            gt_ignore = as_var(gt_bboxes_ignore)
            if self.ignore_wrt_candidates:
                ignore_max = bbox_overlaps(bboxes, gt_ignore, mode="iof").max(dim=1)
            else:
                ignore_max = bbox_overlaps(gt_ignore, bboxes, mode="iof").max(dim=0)
            overlaps = jt.where((ignore_max > self.ignore_iof_thr)[None, :], -1.0, overlaps)
        return self.assign_wrt_overlaps(overlaps, gt_labels)

    def assign_wrt_overlaps(self, overlaps: jt.Var, gt_labels: jt.Var | None = None) -> AssignResult:
        """Assign from a ``(G, N)`` IoU matrix (see the class docstring for the rules)."""
        num_gts, num_bboxes = overlaps.shape
        if num_gts == 0 or num_bboxes == 0:
            gt_inds = jt.full((num_bboxes,), 0 if num_gts == 0 else -1, dtype="int64")
            labels = None if gt_labels is None else jt.full((num_bboxes,), -1, dtype="int64")
            return AssignResult(num_gts, gt_inds, jt.zeros((num_bboxes,), dtype="float32"), labels)

        gt_index = jt.arange(num_gts).int64()[:, None]  # (G, 1)
        max_overlaps = overlaps.max(dim=0)  # (N,)
        # first GT reaching the max (torch.max returns the first index on ties)
        argmax = jt.where(overlaps == max_overlaps[None, :], gt_index, num_gts).min(dim=0)

        gt_inds = jt.full((num_bboxes,), -1, dtype="int64")
        if isinstance(self.neg_iou_thr, (tuple, list)):
            neg = (max_overlaps >= self.neg_iou_thr[0]) & (max_overlaps < self.neg_iou_thr[1])
        else:
            neg = (max_overlaps >= 0) & (max_overlaps < self.neg_iou_thr)
        gt_inds = jt.where(neg, jt.zeros_like(gt_inds), gt_inds)
        gt_inds = jt.where(max_overlaps >= self.pos_iou_thr, argmax + 1, gt_inds)

        if self.match_low_quality:
            gt_max = overlaps.max(dim=1)[:, None]  # (G, 1) best IoU of each GT
            if self.gt_max_assign_all:
                claims = overlaps == gt_max  # every box where the GT reaches its best IoU
            else:  # only the first such box
                first = jt.where(overlaps == gt_max, jt.arange(num_bboxes).int64()[None, :], num_bboxes).min(dim=1)
                claims = jt.arange(num_bboxes).int64()[None, :] == first[:, None]
            claims = claims & (gt_max >= self.min_pos_iou)
            last_claim = jt.where(claims, gt_index + 1, 0).max(dim=0)  # later GTs overwrite earlier ones
            gt_inds = jt.where(last_claim > 0, last_claim, gt_inds)

        labels = None
        if gt_labels is not None:
            labels = jt.where(gt_inds > 0, gt_labels[jt.maximum(gt_inds - 1, 0)], -1).int64()
        return AssignResult(num_gts, gt_inds, max_overlaps, labels)
