"""``RegionTextRoIHead``: region-text contrastive pretraining of a CLIP image tower (the world-CLIP).

RegionCLIP pretrains CLIP's image tower on regions named by concepts (region-concept pairs from web
captions), which is what lets UniDetector's stage 2 recognise classes it never saw labelled. The
synthetic world's equivalent trains the same modules as the stage-2 detector (backbone → RoIAlign on
C4 → ``layer4`` shared head → attention pool) on the boxes of its web images, each named by its phrase,
against the **locked** text embeddings of every phrase (LiT-style; the synthetic text encoder has no
weights)::

    e      = normalize(attnpool(layer4(RoIAlign(C4, boxes))))      # (N, D) region embeddings
    logits = e @ normalize(T).T / temperature                        # (N, K) over the whole vocabulary
    loss   = cross_entropy(logits, phrase of each box)

The RoIs are the ground-truth boxes and their jittered copies (the proposal file, kept when their IoU
with a box is ≥ ``train_cfg.assigner.pos_iou_thr``): positives only, there is no background. Module names
are those of ``StandardRoIHead``, so the trained weights initialise stage 2 through ``load_from`` like a
RegionCLIP checkpoint (no box regression: the config sets ``with_reg=False``, as RegionCLIP has none).
"""
from __future__ import annotations

import jittor as jt
from jittor import nn

from ...ops import bbox2roi
from ...registry import MODELS
from ..layers.functional import l2_normalize
from .standard_roi_head import StandardRoIHead

__all__ = ["RegionTextRoIHead"]


@MODELS.register_module()
class RegionTextRoIHead(StandardRoIHead):
    """``StandardRoIHead`` whose training loss is region-text contrastive over the head's vocabulary.

    Args (besides ``StandardRoIHead``'s): ``temperature`` of the softmax over phrases (0.05).
    """

    def __init__(self, temperature: float = 0.05, **kwargs):
        super().__init__(**kwargs)
        self.temperature = float(temperature)

    def forward_train(self, x, img_metas, proposal_list, gt_bboxes, gt_labels, gt_bboxes_ignore=None, **kwargs):
        """``dict(loss_region_text, acc_region_text)`` over the positive RoIs of the batch."""
        sampling_results = self.sample(proposal_list, gt_bboxes, gt_labels, gt_bboxes_ignore)
        rois = bbox2roi([res.pos_bboxes for res in sampling_results])
        labels = jt.concat([res.pos_gt_labels.int64() for res in sampling_results])
        feats = self.bbox_roi_extractor(x[:self.bbox_roi_extractor.num_inputs], rois)
        if self.with_shared_head:
            feats = self.shared_head(feats)
        embeddings, _ = self.bbox_head.embed(feats)
        text = l2_normalize(self.bbox_head.own_vocabulary()[:, :-1], 0)            # (D, K), background dropped
        logits = jt.matmul(l2_normalize(embeddings, 1), text) / self.temperature
        loss = nn.cross_entropy_loss(logits, labels)
        acc = (logits.argmax(1)[0] == labels).float32().mean() * 100.0
        return dict(loss_region_text=loss, acc_region_text=acc.stop_grad())
