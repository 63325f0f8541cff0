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
Testing is two steps, so that the vocabulary is a runtime input (UniDetector's open-world idea: it
enters only after the attention pool)::

    regions = roi_head.region_embeddings(x, proposals, img_metas)   # per image: (N, D) embeddings, deltas
    dets, labels = roi_head.score_regions(regions[i], vocabulary)   # any (C, D) text/exemplar embeddings

``simple_test`` is their composition with the head's own vocabulary (a partitioned head: the first one,
as officially) and its own calibration prior. With ``with_proposal_score=True`` the proposals carry their
stage-1 score in the last column and the head fuses it into the class scores (open-world inference).
"""
from __future__ import annotations

import jittor as jt
from jittor import nn

import numpy as np

from ...ops import bbox2result, bbox2roi
from ...ops.boxes import as_var
from ...registry import MODELS, TASK_UTILS, build
from .bbox_heads.bbox_head_clip import HEAD_PRIOR
from .regions import Regions

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
        self.bbox_roi_extractor = build(bbox_roi_extractor, MODELS, key_path="model.roi_head.bbox_roi_extractor")
        self.shared_head = None
        if shared_head is not None:
            self.shared_head = build(shared_head, MODELS, key_path="model.roi_head.shared_head")
        self.bbox_head = build(bbox_head, MODELS, key_path="model.roi_head.bbox_head")
        self.train_cfg, self.test_cfg = train_cfg, test_cfg
        self.with_proposal_score = with_proposal_score
        self.bbox_assigner = self.bbox_sampler = None
        if train_cfg:
            self.bbox_assigner = build(train_cfg.get("assigner"), TASK_UTILS, key_path="model.train_cfg.rcnn.assigner")
            self.bbox_sampler = build(train_cfg.get("sampler"), TASK_UTILS, key_path="model.train_cfg.rcnn.sampler")

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

    def region_embeddings(self, x, proposals, img_metas) -> list:
        """One :class:`Regions` per image: RoIAlign → shared head → ``bbox_head.embed`` (attention-pool
        embeddings and box deltas). ``proposals``: per image ``(n_i, 5)`` ``[x1, y1, x2, y2, score]`` in
        network-input pixels (a 4-column array gets score 1)."""
        proposals = [as_var(p) for p in proposals]
        rois = bbox2roi(proposals)
        if rois.shape[0]:
            feats = self.bbox_roi_extractor(x[:self.bbox_roi_extractor.num_inputs], rois)
            if self.with_shared_head:
                feats = self.shared_head(feats)
            features, deltas = (v.numpy() for v in self.bbox_head.embed(feats))
        else:
            features, deltas = np.zeros((0, self.bbox_head.embed_dim), np.float32), np.zeros((0, 4), np.float32)
        rois = rois.numpy()
        out, start = [], 0
        for p, meta in zip(proposals, img_metas):
            rows = slice(start, start + p.shape[0])
            start += p.shape[0]
            scores = p[:, 4].numpy() if p.shape[1] > 4 else np.ones(p.shape[0], np.float32)
            out.append(Regions(features[rows], deltas[rows], rois[rows], scores, tuple(meta["img_shape"]),
                               np.asarray(meta["scale_factor"], np.float32), tuple(meta.get("ori_shape", ()))))
        return out

    def score_regions(self, regions: Regions, vocabulary=None, calibration=None, cfg="test_cfg", rescale=True):
        """Detections of one image's ``regions`` under ``vocabulary``: ``(dets (k, 5), labels (k,))`` (boxes
        in original-image pixels with ``rescale``), or ``(boxes, scores)`` when ``cfg`` is None.

        ``vocabulary``: ``(C, D)`` text or exemplar embeddings (None: the head's own); ``calibration``:
        ``(C,)`` weights ``w / mean(w)``, None for raw scores, or ``HEAD_PRIOR`` (the head's own prior);
        ``cfg``: the rcnn test cfg (default ``self.test_cfg``). Proposal scores are fused when the head
        fuses them (``BBoxHeadCLIPInference``) and ``with_proposal_score`` is set.
        """
        cfg = self.test_cfg if isinstance(cfg, str) and cfg == "test_cfg" else cfg
        scores = regions.proposal_scores if self.with_proposal_score else None
        return self.bbox_head.score(regions.features, regions.deltas, regions.rois, scores, vocabulary,
                                    regions.img_meta, calibration=calibration, cfg=cfg, rescale=rescale)

    def simple_test_bboxes(self, x, img_metas, proposals, rcnn_test_cfg, rescale=False):
        """Per-image ``det_bboxes (k, 5)`` and ``det_labels (k,)`` (or boxes and scores when
        ``rcnn_test_cfg`` is None): :meth:`region_embeddings` scored with the head's own vocabulary and prior."""
        det_bboxes, det_labels = [], []
        for regions in self.region_embeddings(x, proposals, img_metas):
            dets, labels = self.score_regions(regions, None, HEAD_PRIOR, rcnn_test_cfg, rescale)
            det_bboxes.append(dets)
            det_labels.append(labels)
        return det_bboxes, det_labels

    def simple_test(self, x, proposal_list, img_metas, proposals=None, rescale=False) -> list:
        """Per image, a list over classes of ``(n_c, 5)`` numpy arrays (mmdet ``bbox2result``)."""
        det_bboxes, det_labels = self.simple_test_bboxes(x, img_metas, proposal_list, self.test_cfg, rescale)
        return [bbox2result(b, l, self.bbox_head.num_classes) for b, l in zip(det_bboxes, det_labels)]
