"""``Shared2FCBBoxScoreHead``: the CLN box head (OLN-Box + a re-introduced fg/bg classifier), SPEC §2.3.

``(K, C, 7, 7)`` RoI features -> flatten -> FC -> ReLU -> FC -> ReLU -> three parallel linears::

    fc_cls        (K, num_classes + 1)  softmax fg/bg logits (background = last index)
    fc_reg        (K, 4 * num_classes)  DeltaXYWH deltas (class-specific unless reg_class_agnostic)
    fc_bbox_score (K, 1)                logit of the predicted IoU with the matched GT

Test-time score of a proposal (``alpha = 0.3``)::

    score = softmax(cls)[:, 0] ** alpha * (rpn_objectness * sigmoid(bbox_score)) ** (1 - alpha)
"""
from __future__ import annotations

import jittor as jt
from jittor import nn

from ....ops import bbox_overlaps, multiclass_nms, rescale_bboxes
from ....registry import MODELS, TASK_UTILS, build
from ...dense_heads.oln_rpn_head import centerness_targets
from ...losses import accuracy


@MODELS.register_module()
class Shared2FCBBoxScoreHead(nn.Module):
    """mmdet ``ConvFCBBoxScoreHead`` with two shared FCs (official ``convfc_bbox_score_head.py``).

    Args:
        in_channels: channels of the RoI features.
        fc_out_channels: width of ``shared_fcs.0`` and ``shared_fcs.1`` (1024 officially).
        roi_feat_size: RoI feature side (7).
        num_classes: foreground classes (1 for the class-agnostic CLN).
        bbox_coder: ``DeltaXYWHBBoxCoder`` config (stds .1, .1, .2, .2).
        reg_class_agnostic: one box per RoI instead of one per class.
        loss_cls: softmax ``CrossEntropyLoss``, averaged over RoIs with positive label weight.
        loss_bbox: ``L1Loss`` on the deltas of positives, divided by the number of sampled RoIs.
        loss_bbox_score: ``L1Loss`` between ``sigmoid(bbox_score)`` and the target of positives,
            divided by the number of sampled RoIs.
        bbox_score_type: ``'BoxIoU'`` (IoU of proposal and matched GT, official) or ``'Centerness'``.
        alpha: exponent of the classification probability in the test score.
    """

    def __init__(self, num_classes: int, bbox_coder: dict, loss_cls: dict, loss_bbox: dict, in_channels: int = 256,
                 fc_out_channels: int = 1024, roi_feat_size: int = 7, reg_class_agnostic: bool = False,
                 reg_decoded_bbox: bool = False, with_avg_pool: bool = False, with_bbox_score: bool = True,
                 bbox_score_type: str = "BoxIoU", loss_bbox_score: dict | None = None, alpha: float = 0.3,
                 init_cfg=None):
        super().__init__()
        if reg_decoded_bbox or with_avg_pool or not with_bbox_score:
            raise NotImplementedError("Shared2FCBBoxScoreHead: reg_decoded_bbox/with_avg_pool/without bbox score "
                                      "are not used by UniDetector")
        if bbox_score_type not in ("BoxIoU", "Centerness"):
            raise ValueError(f"bbox_score_type must be 'BoxIoU' or 'Centerness', got {bbox_score_type!r}")
        self.num_classes, self.reg_class_agnostic = num_classes, reg_class_agnostic
        self.bbox_score_type, self.alpha = bbox_score_type, alpha
        self.bbox_coder = build(bbox_coder, TASK_UTILS, key_path="model.roi_head.bbox_head.bbox_coder")
        self.loss_cls = build(loss_cls, MODELS, key_path="model.roi_head.bbox_head.loss_cls")
        self.loss_bbox = build(loss_bbox, MODELS, key_path="model.roi_head.bbox_head.loss_bbox")
        self.loss_bbox_score = build(loss_bbox_score or dict(type="L1Loss", loss_weight=1.0), MODELS,
                                     key_path="model.roi_head.bbox_head.loss_bbox_score")
        if getattr(self.loss_cls, "use_sigmoid", False):
            raise NotImplementedError("Shared2FCBBoxScoreHead: loss_cls must be a softmax CrossEntropyLoss")

        flat = in_channels * roi_feat_size * roi_feat_size
        self.shared_fcs = nn.ModuleList([nn.Linear(flat, fc_out_channels), nn.Linear(fc_out_channels, fc_out_channels)])
        self.fc_cls = nn.Linear(fc_out_channels, num_classes + 1)
        self.fc_reg = nn.Linear(fc_out_channels, 4 if reg_class_agnostic else 4 * num_classes)
        self.fc_bbox_score = nn.Linear(fc_out_channels, 1)
        # mmdet init: shared FCs Xavier-uniform; fc_cls N(0, .01); fc_reg N(0, .001); fc_bbox_score N(0, .01)
        for fc in self.shared_fcs:
            nn.init.xavier_uniform_(fc.weight)
        for fc, std in ((self.fc_cls, 0.01), (self.fc_reg, 0.001), (self.fc_bbox_score, 0.01)):
            nn.init.gauss_(fc.weight, 0.0, std)
        for fc in list(self.shared_fcs) + [self.fc_cls, self.fc_reg, self.fc_bbox_score]:
            nn.init.constant_(fc.bias, 0.0)

    def execute(self, x: jt.Var):
        """``(K, C, S, S)`` -> ``cls_score (K, C+1)``, ``bbox_pred (K, 4C)``, ``bbox_score (K, 1)``."""
        x = x.reshape(x.shape[0], -1)
        for fc in self.shared_fcs:
            x = nn.relu(fc(x))
        return self.fc_cls(x), self.fc_reg(x), self.fc_bbox_score(x)

    # ------------------------------------------------------------------ training
    def _score_targets(self, pos_bboxes: jt.Var, pos_gt_bboxes: jt.Var) -> jt.Var:
        if self.bbox_score_type == "BoxIoU":
            return bbox_overlaps(pos_bboxes, pos_gt_bboxes, is_aligned=True)
        return centerness_targets(pos_bboxes, pos_gt_bboxes)

    def get_targets(self, sampling_results, gt_bboxes, gt_labels, rcnn_train_cfg) -> tuple:
        """Targets of the sampled RoIs of all images, concatenated (positives first per image).

        Returns ``labels (R,)`` (background = ``num_classes``), ``label_weights (R,)``,
        ``bbox_targets (R, 4)`` deltas, ``bbox_weights (R, 4)``, ``bbox_score_targets (R,)``,
        ``bbox_score_weights (R,)``.
        """
        pos_weight = rcnn_train_cfg.get("pos_weight", -1)
        pos_weight = 1.0 if pos_weight <= 0 else float(pos_weight)
        parts = []
        for res in sampling_results:
            num_pos, num_neg = res.pos_bboxes.shape[0], res.neg_bboxes.shape[0]
            if num_pos:
                parts.append((res.pos_gt_labels.int64(), jt.full((num_pos,), pos_weight),
                              self.bbox_coder.encode(res.pos_bboxes, res.pos_gt_bboxes), jt.ones((num_pos, 4)),
                              self._score_targets(res.pos_bboxes, res.pos_gt_bboxes), jt.ones((num_pos,))))
            if num_neg:
                parts.append((jt.full((num_neg,), self.num_classes, dtype="int64"), jt.ones((num_neg,)),
                              jt.zeros((num_neg, 4)), jt.zeros((num_neg, 4)), jt.zeros((num_neg,)),
                              jt.zeros((num_neg,))))
        return tuple(jt.concat([p[k] for p in parts]) for k in range(6))

    def loss(self, cls_score, bbox_pred, bbox_score, rois, labels, label_weights, bbox_targets, bbox_weights,
             bbox_score_targets, bbox_score_weights) -> dict:
        """``loss_cls``, ``acc`` (percent, logging only), ``loss_bbox``, ``loss_bbox_score``.

        The box losses run over all ``R`` RoIs with zero weight on negatives, which equals the
        official sum over positives divided by ``R``.
        """
        num_rois = cls_score.shape[0]
        avg_factor = max(float((label_weights > 0).sum().item()), 1.0)
        losses = dict(loss_cls=self.loss_cls(cls_score, labels, label_weights, avg_factor=avg_factor),
                      acc=accuracy(cls_score, labels))
        if self.reg_class_agnostic:
            pred = bbox_pred
        else:  # the 4 deltas of each RoI's own class (any class for background rows: weight 0)
            cls_idx = jt.minimum(labels, self.num_classes - 1)
            pred = bbox_pred.reshape(-1, 4)[jt.arange(num_rois).int64() * self.num_classes + cls_idx]
        pos = ((labels >= 0) & (labels < self.num_classes)).float32()[:, None]
        losses["loss_bbox"] = self.loss_bbox(pred, bbox_targets, bbox_weights * pos, avg_factor=num_rois)
        losses["loss_bbox_score"] = self.loss_bbox_score(bbox_score.reshape(-1).sigmoid(), bbox_score_targets,
                                                         bbox_score_weights, avg_factor=num_rois)
        return losses

    # ------------------------------------------------------------------ testing
    def get_bboxes(self, rois, cls_score, bbox_pred, bbox_score, rpn_score, img_shape, scale_factor,
                   rescale: bool = False, cfg: dict | None = None):
        """Boxes and CLN scores of one image's RoIs.

        Args:
            rois: ``(n, 5)``; cls_score ``(n, C+1)``; bbox_pred ``(n, 4C)``; bbox_score ``(n, 1)``;
            rpn_score: ``(n, 1)`` RPN objectness of each proposal (its 5th column).
            img_shape: ``(H, W)`` to clip to; scale_factor ``(w, h, w, h)``.
            rescale: divide the boxes by ``scale_factor`` (original-image pixels).
            cfg: ``score_thr``, ``nms``, ``max_per_img``; ``None`` returns the pre-NMS
                ``bboxes (n, 4C)`` and ``scores (n, 2)`` = ``[CLN score, 0]``.

        Returns:
            ``det_bboxes (k, 5)`` and ``det_labels (k,)`` after ``multiclass_nms``.
        """
        probs = nn.softmax(cls_score, dim=1)
        bboxes = self.bbox_coder.decode(rois[:, 1:], bbox_pred, max_shape=img_shape[:2])
        if rescale and bboxes.shape[0] > 0:
            bboxes = rescale_bboxes(bboxes, scale_factor)
        scores = probs[:, 0:1].pow(self.alpha) * (rpn_score * bbox_score.sigmoid()).pow(1 - self.alpha)
        scores = jt.concat([scores, jt.zeros_like(scores)], dim=1)
        if cfg is None:
            return bboxes, scores
        return multiclass_nms(bboxes, scores, cfg["score_thr"], cfg["nms"], cfg["max_per_img"])
