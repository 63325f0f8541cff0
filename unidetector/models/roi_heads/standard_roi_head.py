"""``StandardRoIHead`` (mmdet 2.18 + the official UniDetector changes), box branch only.

Training, per image: assign the proposals (``(n, 4)``, or ``(n, 5)`` with a score column that is
ignored) to the GTs with ``MaxIoUAssigner``, sample with ``RandomSampler`` (GTs prepended as
proposals), then for the whole batch::

    rois  = bbox2roi([sampled boxes of each image])          # (N, 5) [img, x1, y1, x2, y2]
    feats = roi_extractor(x, rois)                           # (N, C4, 14, 14) RoIAlign on C4
    feats = shared_head(feats)                               # (N, C5, 7, 7)  CLIP layer4
    cls_score, bbox_pred = bbox_head(feats)
    losses = bbox_head.loss(...)                             # a partitioned head also gets
                                                             # img_metas and sampling_results
Testing: the same forward on all proposals; per image ``bbox_head.get_bboxes`` (decode, rescale,
NMS) and ``bbox2result``. With ``with_proposal_score=True`` the proposals carry their stage-1 score in
the last column and the head receives ``(cls_score, proposals[:, -1])`` (open-world inference). A
partitioned head (list of logits) is tested with the first vocabulary, as officially.
"""
from __future__ import annotations

import jittor as jt
from jittor import nn

from ...ops import bbox2result, bbox2roi
from ...ops.boxes import as_var
from ...registry import MODELS, TASK_UTILS, build

__all__ = ["StandardRoIHead"]


@MODELS.register_module()
class StandardRoIHead(nn.Module):
    """RoI head = RoI extractor + optional shared head + box head.

    Args:
        bbox_roi_extractor: ``SingleRoIExtractor`` config.
        bbox_head: box head config (``BBoxHeadCLIP*``).
        shared_head: e.g. ``CLIPResLayer`` config.
        train_cfg: rcnn train cfg (``assigner``, ``sampler``, ``pos_weight``).
        test_cfg: rcnn test cfg (``score_thr``, ``nms``, ``max_per_img``).
        with_proposal_score: fuse the proposals' last column into the test scores.
        mask_roi_extractor, mask_head: not supported (UniDetector has no masks).
    """

    def __init__(self, bbox_roi_extractor=None, bbox_head=None, mask_roi_extractor=None, mask_head=None,
                 shared_head=None, train_cfg=None, test_cfg=None, pretrained=None, init_cfg=None,
                 with_proposal_score=False):
        super().__init__()
        if mask_head is not None or mask_roi_extractor is not None:
            raise NotImplementedError("StandardRoIHead: mask heads are not supported")
        if bbox_head is None or bbox_roi_extractor is None:
            raise ValueError("StandardRoIHead needs bbox_roi_extractor and bbox_head")
        self.bbox_roi_extractor = build(bbox_roi_extractor, MODELS, key_path="roi_head.bbox_roi_extractor")
        self.shared_head = None if shared_head is None else build(shared_head, MODELS, key_path="roi_head.shared_head")
        self.bbox_head = build(bbox_head, MODELS, key_path="roi_head.bbox_head")
        self.train_cfg, self.test_cfg = train_cfg, test_cfg
        self.with_proposal_score = with_proposal_score
        self.bbox_assigner = self.bbox_sampler = None
        if train_cfg:
            self.bbox_assigner = build(train_cfg["assigner"], TASK_UTILS, key_path="train_cfg.rcnn.assigner")
            self.bbox_sampler = build(train_cfg["sampler"], TASK_UTILS, key_path="train_cfg.rcnn.sampler")

    @property
    def with_shared_head(self) -> bool:
        return self.shared_head is not None

    def _bbox_forward(self, x, rois: jt.Var) -> dict:
        """Box-head forward on ``(N, 5)`` RoIs: ``cls_score``, ``bbox_pred``, ``bbox_feats``."""
        bbox_feats = self.bbox_roi_extractor(x[:self.bbox_roi_extractor.num_inputs], rois)
        if self.with_shared_head:
            bbox_feats = self.shared_head(bbox_feats)
        cls_score, bbox_pred = self.bbox_head(bbox_feats)
        return dict(cls_score=cls_score, bbox_pred=bbox_pred, bbox_feats=bbox_feats)

    def sample(self, proposal_list, gt_bboxes, gt_labels, gt_bboxes_ignore=None) -> list:
        """Per image: assign the proposals to the GTs and sample (``SamplingResult`` list)."""
        if self.bbox_assigner is None:
            raise RuntimeError("StandardRoIHead: training needs train_cfg (assigner and sampler)")
        results = []
        for i, proposals in enumerate(proposal_list):
            proposals = as_var(proposals)[:, :4]
            ignore = None if gt_bboxes_ignore is None else gt_bboxes_ignore[i]
            assign = self.bbox_assigner.assign(proposals, gt_bboxes[i], ignore, gt_labels[i])
            results.append(self.bbox_sampler.sample(assign, proposals, gt_bboxes[i], gt_labels[i]))
        return results

    def forward_train(self, x, img_metas, proposal_list, gt_bboxes, gt_labels, gt_bboxes_ignore=None, **kwargs):
        """Losses of the box branch (``dict`` of named ``jt.Var``)."""
        sampling_results = self.sample(proposal_list, gt_bboxes, gt_labels, gt_bboxes_ignore)
        return self._bbox_forward_train(x, sampling_results, gt_bboxes, gt_labels, img_metas)["loss_bbox"]

    def _bbox_forward_train(self, x, sampling_results, gt_bboxes, gt_labels, img_metas) -> dict:
        rois = bbox2roi([res.bboxes for res in sampling_results])
        results = self._bbox_forward(x, rois)
        targets = self.bbox_head.get_targets(sampling_results, gt_bboxes, gt_labels, self.train_cfg)
        if isinstance(results["cls_score"], list):  # partitioned head: per-image vocabularies
            loss = self.bbox_head.loss(results["cls_score"], results["bbox_pred"], rois, img_metas,
                                       sampling_results, *targets)
        else:
            loss = self.bbox_head.loss(results["cls_score"], results["bbox_pred"], rois, *targets)
        results.update(loss_bbox=loss, rois=rois, targets=targets)
        return results

    def simple_test_bboxes(self, x, img_metas, proposals, rcnn_test_cfg, rescale=False):
        """Per-image ``det_bboxes (k, 5)`` and ``det_labels (k,)`` (or boxes and scores when
        ``rcnn_test_cfg`` is None)."""
        proposals = [as_var(p) for p in proposals]
        rois = bbox2roi(proposals)
        counts = [p.shape[0] for p in proposals]
        if rois.shape[0] == 0:
            return ([jt.zeros((0, 5))] * len(proposals), [jt.zeros((0,), dtype="int64")] * len(proposals))
        results = self._bbox_forward(x, rois)
        cls_score = results["cls_score"]
        if isinstance(cls_score, list):
            cls_score = cls_score[0]
        det_bboxes, det_labels = [], []
        start = 0
        for i, n in enumerate(counts):
            rows = slice(start, start + n)
            start += n
            if n == 0:
                det_bboxes.append(jt.zeros((0, 5)))
                det_labels.append(jt.zeros((0,), dtype="int64"))
                continue
            score_i = (cls_score[rows], proposals[i][:, -1]) if self.with_proposal_score else cls_score[rows]
            det_bbox, det_label = self.bbox_head.get_bboxes(
                rois[rows], score_i, results["bbox_pred"][rows], img_metas[i]["img_shape"],
                img_metas[i]["scale_factor"], rescale=rescale, cfg=rcnn_test_cfg)
            det_bboxes.append(det_bbox)
            det_labels.append(det_label)
        return det_bboxes, det_labels

    def simple_test(self, x, proposal_list, img_metas, proposals=None, rescale=False) -> list:
        """Per image, a list over classes of ``(n_c, 5)`` numpy arrays (mmdet ``bbox2result``)."""
        det_bboxes, det_labels = self.simple_test_bboxes(x, img_metas, proposal_list, self.test_cfg, rescale)
        return [bbox2result(b, l, self.bbox_head.num_classes) for b, l in zip(det_bboxes, det_labels)]
