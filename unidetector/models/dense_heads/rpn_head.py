"""mmdet 2.18 ``RPNHead``: the RPN of UniDetector's end-to-end variant (on CLIP C4, stride 16).

Per feature map ``x`` ``(B, C, H, W)``::

    t   = relu(rpn_conv(x))          # 3x3, C -> feat_channels
    cls = rpn_cls(t)  (B, A, H, W)   # objectness logit of anchor a at (y, x): channel a
    reg = rpn_reg(t)  (B, 4A, H, W)  # DeltaXYWH deltas (stds 1): channels 4a..4a+3

Anchors: ``AnchorGenerator(scales=[2, 4, 8, 16, 32], ratios=[.5, 1, 2], strides=[16])`` = 15 per
location, row ``(y * W + x) * A + a``.

Training: anchors inside the image (``allowed_border=0``, valid w.r.t. ``pad_shape``) are assigned
(``MaxIoUAssigner`` 0.7/0.3, low-quality matches) and sampled (``RandomSampler``); positives get
label 1 for the sigmoid CE and DeltaXYWH targets for the L1 loss; both losses are divided by
``Σ_img max(#pos, 1) + max(#neg, 1)``.

Proposals (test, and for the RoI head in training with ``train_cfg.rpn_proposal``): per level the
``nms_pre`` best anchors by ``sigmoid(cls)``, decoded and clipped to the image; boxes with
``w <= min_bbox_size`` or ``h <= min_bbox_size`` (strict, so empty boxes always go) are removed;
NMS at ``nms.iou_threshold`` per level; the first ``max_per_img`` are kept, as ``(n, 5)``
``[x1, y1, x2, y2, score]`` in network-input pixels.
"""
from __future__ import annotations

import jittor as jt
import numpy as np
from jittor import nn

from ...ops import anchor_inside_flags, batched_nms
from ...ops.boxes import as_var
from ...registry import MODELS, TASK_UTILS, build
from ..layers import channels_last

__all__ = ["RPNHead"]


@MODELS.register_module()
class RPNHead(nn.Module):
    """Anchor-based RPN head (official names ``rpn_conv``, ``rpn_cls``, ``rpn_reg``).

    Args:
        in_channels: channels of the input map(s) (1024 for CLIP C4).
        feat_channels: channels of ``rpn_conv`` (1024 in the end-to-end configs).
        anchor_generator, bbox_coder: configs (see the module doc for the official values).
        loss_cls: ``CrossEntropyLoss(use_sigmoid=True)``; loss_bbox: ``L1Loss``.
        train_cfg: ``assigner``, ``sampler``, ``allowed_border``, ``pos_weight``.
        test_cfg: ``nms_pre``, ``nms``, ``max_per_img``, ``min_bbox_size``.
    """

    def __init__(self, in_channels, feat_channels=256,
                 anchor_generator=dict(type="AnchorGenerator", scales=[8], ratios=[0.5, 1.0, 2.0],
                                       strides=[4, 8, 16, 32, 64]),
                 bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=(0.0, 0.0, 0.0, 0.0),
                                 target_stds=(1.0, 1.0, 1.0, 1.0)),
                 loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0),
                 loss_bbox=dict(type="L1Loss", loss_weight=1.0), train_cfg=None, test_cfg=None, init_cfg=None,
                 reg_decoded_bbox=False, num_classes=1):
        super().__init__()
        if not loss_cls.get("use_sigmoid", False) or num_classes != 1 or reg_decoded_bbox:
            raise NotImplementedError("RPNHead: only the mmdet RPN setting (sigmoid objectness, num_classes=1, "
                                      "delta targets) is supported")
        self.anchor_generator = build(anchor_generator, TASK_UTILS, key_path="model.rpn_head.anchor_generator")
        self.bbox_coder = build(bbox_coder, TASK_UTILS, key_path="model.rpn_head.bbox_coder")
        self.loss_cls = build(loss_cls, MODELS, key_path="model.rpn_head.loss_cls")
        self.loss_bbox = build(loss_bbox, MODELS, key_path="model.rpn_head.loss_bbox")
        self.train_cfg, self.test_cfg = train_cfg, test_cfg
        if train_cfg:
            self.assigner = build(train_cfg.get("assigner"), TASK_UTILS, key_path="model.train_cfg.rpn.assigner")
            self.sampler = build(train_cfg.get("sampler"), TASK_UTILS, key_path="model.train_cfg.rpn.sampler")
        num_anchors = self.anchor_generator.num_base_anchors[0]
        self.rpn_conv = nn.Conv2d(in_channels, feat_channels, 3, padding=1)
        self.rpn_cls = nn.Conv2d(feat_channels, num_anchors, 1)
        self.rpn_reg = nn.Conv2d(feat_channels, num_anchors * 4, 1)
        for conv in (self.rpn_conv, self.rpn_cls, self.rpn_reg):
            nn.init.gauss_(conv.weight, 0.0, 0.01)
            nn.init.constant_(conv.bias, 0.0)

    def forward_single(self, x: jt.Var):
        t = nn.relu(channels_last.conv2d(self.rpn_conv, x))
        return self.rpn_cls(t), self.rpn_reg(t)

    def execute(self, feats):
        """Tuple of maps → ``(cls_scores, bbox_preds)``, lists over levels."""
        outs = [self.forward_single(x) for x in feats]
        return [o[0] for o in outs], [o[1] for o in outs]

    # ------------------------------------------------------------------ proposals
    def _proposals_single(self, cls_scores, bbox_preds, anchors, img_shape, cfg) -> jt.Var:
        """``(n, 5)`` proposals of one image from per-level ``(A, H, W)`` / ``(4A, H, W)`` maps."""
        boxes, scores, level_ids = [], [], []
        for lvl, (cls, reg, anc) in enumerate(zip(cls_scores, bbox_preds, anchors)):
            score = jt.sigmoid(cls.permute(1, 2, 0).reshape(-1))
            deltas = reg.permute(1, 2, 0).reshape(-1, 4)
            nms_pre = cfg.get("nms_pre", -1)
            if 0 < nms_pre < score.shape[0]:
                order, _ = jt.argsort(score, descending=True)
                keep = order[:nms_pre]
                score, deltas, anc = score[keep], deltas[keep], anc[keep]
            boxes.append(self.bbox_coder.decode(anc, deltas, max_shape=img_shape))
            scores.append(score)
            level_ids.append(jt.full((score.shape[0],), lvl, dtype="int64"))
        boxes, scores, level_ids = jt.concat(boxes), jt.concat(scores), jt.concat(level_ids)
        min_size = cfg.get("min_bbox_size", 0)
        if min_size >= 0:
            w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
            valid = jt.where((w > min_size) & (h > min_size))[0]
            boxes, scores, level_ids = boxes[valid], scores[valid], level_ids[valid]
        if boxes.shape[0] == 0:
            return jt.zeros((0, 5))
        dets, _ = batched_nms(boxes, scores, level_ids, cfg["nms"])
        return dets[:cfg["max_per_img"]]

    def get_bboxes(self, cls_scores, bbox_preds, img_metas, cfg=None) -> list:
        """Per image ``(n, 5)`` proposals (``cfg`` defaults to ``test_cfg``)."""
        cfg = cfg if cfg is not None else self.test_cfg
        sizes = [tuple(c.shape[-2:]) for c in cls_scores]
        anchors = self.anchor_generator.grid_anchors(sizes)
        return [self._proposals_single([c[i] for c in cls_scores], [b[i] for b in bbox_preds], anchors,
                                       meta["img_shape"], cfg) for i, meta in enumerate(img_metas)]

    def simple_test_rpn(self, feats, img_metas) -> list:
        """Test-mode proposals of every image (``test_cfg``)."""
        cls_scores, bbox_preds = self(feats)
        return self.get_bboxes(cls_scores, bbox_preds, img_metas)

    # ------------------------------------------------------------------ training
    def _targets_single(self, flat_anchors, valid_flags, gt_bboxes, gt_bboxes_ignore, img_meta):
        """Labels (0 = object, 1 = background), label weights, box targets and weights of every anchor,
        and the numbers of sampled positives and negatives."""
        n = flat_anchors.shape[0]
        inside = anchor_inside_flags(flat_anchors, valid_flags, img_meta["img_shape"],
                                     self.train_cfg.get("allowed_border", 0))
        inside_inds = jt.where(inside)[0]
        anchors = flat_anchors[inside_inds]
        assign = self.assigner.assign(anchors, gt_bboxes, gt_bboxes_ignore, None)
        res = self.sampler.sample(assign, anchors, gt_bboxes)
        pos, neg = inside_inds[res.pos_inds], inside_inds[res.neg_inds]
        labels = np.ones(n, np.int64)
        label_w = np.zeros(n, np.float32)
        pos_np, neg_np = pos.numpy(), neg.numpy()
        pos_weight = self.train_cfg.get("pos_weight", -1)
        labels[pos_np] = 0
        label_w[pos_np] = 1.0 if pos_weight <= 0 else pos_weight
        label_w[neg_np] = 1.0
        targets, box_w = jt.zeros((n, 4)), jt.zeros((n, 4))
        if len(pos_np):
            targets[pos] = self.bbox_coder.encode(res.pos_bboxes, res.pos_gt_bboxes)
            box_w[pos] = jt.ones((len(pos_np), 4))
        return jt.array(labels), jt.array(label_w), targets, box_w, len(pos_np), len(neg_np)

    def loss(self, cls_scores, bbox_preds, gt_bboxes, img_metas, gt_bboxes_ignore=None) -> dict:
        """``dict(loss_rpn_cls=[per level], loss_rpn_bbox=[per level])``."""
        sizes = [tuple(c.shape[-2:]) for c in cls_scores]
        anchors = self.anchor_generator.grid_anchors(sizes)
        counts = [a.shape[0] for a in anchors]
        flat = jt.concat(anchors)
        per_image = []
        for i, meta in enumerate(img_metas):
            valid = jt.concat(self.anchor_generator.valid_flags(sizes, meta["pad_shape"]))
            ignore = None if gt_bboxes_ignore is None else gt_bboxes_ignore[i]
            per_image.append(self._targets_single(flat, valid, as_var(gt_bboxes[i]), ignore, meta))
        num_samples = float(sum(max(t[4], 1) + max(t[5], 1) for t in per_image))
        bounds = np.cumsum([0] + counts)
        losses_cls, losses_bbox = [], []
        for lvl, (cls, reg) in enumerate(zip(cls_scores, bbox_preds)):
            rows = slice(int(bounds[lvl]), int(bounds[lvl + 1]))
            labels, label_w, targets, box_w = (jt.concat([t[j][rows] for t in per_image]) for j in range(4))
            score = cls.permute(0, 2, 3, 1).reshape(-1, 1)
            deltas = reg.permute(0, 2, 3, 1).reshape(-1, 4)
            losses_cls.append(self.loss_cls(score, labels, label_w, avg_factor=num_samples))
            losses_bbox.append(self.loss_bbox(deltas, targets, box_w, avg_factor=num_samples))
        return dict(loss_rpn_cls=losses_cls, loss_rpn_bbox=losses_bbox)

    def forward_train(self, x, img_metas, gt_bboxes, gt_labels=None, gt_bboxes_ignore=None, proposal_cfg=None):
        """RPN losses and (with ``proposal_cfg``) the proposals for the RoI head."""
        cls_scores, bbox_preds = self(x)
        losses = self.loss(cls_scores, bbox_preds, gt_bboxes, img_metas, gt_bboxes_ignore)
        if proposal_cfg is None:
            return losses
        return losses, self.get_bboxes([c.detach() for c in cls_scores], [b.detach() for b in bbox_preds],
                                       img_metas, proposal_cfg)
