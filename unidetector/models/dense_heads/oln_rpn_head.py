"""``OlnRPNHead``: the stage-1 RPN of UniDetector's CLN (OLN-RPN, Kim et al. 2021), SPEC §2.2.

Per FPN level ``P`` (``(N, C, H, W)``)::

    x   = relu(rpn_conv(P));  x = x / max(||x||_2 over channels, 1e-12)     # per-location L2 norm
    cls = rpn_cls(x)  (N, 1, H, W)    trained with loss weight 0 (official), unused at test
    reg = rpn_reg(x)  (N, 4, H, W)    TBLR distances (t, b, l, r) / anchor size
    obj = rpn_obj(x)  (N, 1, H, W)    localisation quality logit; sigmoid = predicted centerness

One square anchor per location (``scales=[8], ratios=[1]``), anchor ``k`` of a level with
``W`` columns at ``(x, y) = (k % W, k // W) * stride`` (mmdet v2, centre offset 0).

Official quirks kept on purpose (SPEC §2.2, goldens README):

* **No NMS on the RPN output**: the top ``nms_pre`` anchors by objectness per level are decoded
  and all of them go to the RoI head; ``nms_thr``/``max_num``/``nms_post`` are ignored. Levels
  with at most ``nms_pre`` anchors keep their anchor order (they are not sorted).
* ``rpn_cls`` is trained with ``loss_weight=0`` (its gradient is exactly 0).
* With ``reg_decoded_bbox=True`` the sanity check ``min(target) > 0`` runs on the absolute GT
  coordinates, so positives whose GT has ``x1 == 0`` or ``y1 == 0`` get no box loss.
* The objectness pass uses ``pos_fraction=1.0`` but mmdet's sampler fills the remaining
  ``num - #pos`` slots with negatives, so negatives ARE trained (target 0, weight 1).
* Every loss is divided by ``Σ_img max(#pos, 1) + max(#neg, 1)`` of the regression-pass sampler,
  the objectness loss included.
"""
from __future__ import annotations

import jittor as jt
from jittor import nn

from ...ops import anchor_inside_flags, bbox_overlaps, bboxes2tblr
from ...ops.boxes import as_var
from ...registry import MODELS, TASK_UTILS, build
from ..layers import channels_last
from ..layers.functional import l2_normalize


def index_mask(num: int, inds: jt.Var) -> jt.Var:
    """``(num,)`` bool, True at ``inds``."""
    mask = jt.zeros((num,), dtype="bool")
    if inds.shape[0] > 0:
        mask[inds] = True
    return mask


def centerness_targets(anchors: jt.Var, gt_bboxes: jt.Var) -> jt.Var:
    """``(N,)`` centerness of each anchor centre w.r.t. its ``(N, 4)`` GT (OLN objectness target).

    ``(t, b, l, r)`` = distances from the anchor centre to the GT sides; a centre outside the GT
    (any distance <= 0) gets 0, else ``sqrt(min(t,b)/max(t,b) * min(l,r)/max(l,r))``. The
    normalisation by the anchor size cancels in the ratios; it is kept to match float32 rounding
    of the official ``TBLRBBoxCoder(normalizer=1).encode``.
    """
    tblr = bboxes2tblr(anchors, gt_bboxes, normalizer=1.0)
    tblr = jt.where((tblr.min(dim=1) > 0)[:, None], tblr, 0.0)
    tb, lr = tblr[:, 0:2], tblr[:, 2:4]
    return jt.sqrt(tb.min(dim=1) / (tb.max(dim=1) + 1e-12) * (lr.min(dim=1) / (lr.max(dim=1) + 1e-12)))


@MODELS.register_module()
class OlnRPNHead(nn.Module):
    """OLN-RPN head (official ``mmdet/models/dense_heads/oln_rpn_head.py``); see the module docstring.

    Args:
        in_channels: channels of the FPN maps.
        feat_channels: channels of ``rpn_conv``.
        anchor_generator, bbox_coder: ``TASK_UTILS`` configs (``AnchorGenerator``, ``TBLRBBoxCoder``).
        loss_cls: sigmoid ``CrossEntropyLoss`` of ``rpn_cls`` (weight 0 officially).
        loss_bbox: ``IoULoss(linear=True, loss_weight=10)`` on decoded boxes (``reg_decoded_bbox``).
        loss_objectness: ``L1Loss`` between ``sigmoid(rpn_obj)`` and the centerness target.
        objectness_type: ``'Centerness'`` (official) or ``'BoxIoU'`` (IoU of anchor and GT).
        reg_decoded_bbox: must be True (the IoU loss compares decoded boxes with GT boxes).
        train_cfg: ``assigner``, ``sampler``, ``objectness_assigner``, ``objectness_sampler``,
            ``allowed_border``, ``pos_weight`` (the detector passes ``train_cfg.rpn``).
        test_cfg: ``nms_pre`` (per level), ``min_bbox_size`` (the detector passes ``test_cfg.rpn``).
        num_classes: 1 (class-agnostic RPN).
    """

    def __init__(self, in_channels: int, anchor_generator: dict, bbox_coder: dict, loss_cls: dict, loss_bbox: dict,
                 loss_objectness: dict, feat_channels: int = 256, objectness_type: str = "Centerness",
                 reg_decoded_bbox: bool = True, num_classes: int = 1, train_cfg: dict | None = None,
                 test_cfg: dict | None = None, init_cfg=None):
        super().__init__()
        if not reg_decoded_bbox:
            raise NotImplementedError("OlnRPNHead: only reg_decoded_bbox=True (the official setting)")
        if objectness_type not in ("Centerness", "BoxIoU"):
            raise ValueError(f"objectness_type must be 'Centerness' or 'BoxIoU', got {objectness_type!r}")
        if num_classes != 1 or not loss_cls.get("use_sigmoid", False):
            raise ValueError("OlnRPNHead: num_classes must be 1 with a sigmoid loss_cls")
        self.in_channels, self.feat_channels, self.num_classes = in_channels, feat_channels, num_classes
        self.anchor_generator = build(anchor_generator, TASK_UTILS, key_path="model.rpn_head.anchor_generator")
        if self.anchor_generator.num_base_anchors[0] != 1:
            raise ValueError("OlnRPNHead: exactly one anchor per location (one scale, one ratio)")
        self.bbox_coder = build(bbox_coder, TASK_UTILS, key_path="model.rpn_head.bbox_coder")
        self.loss_cls = build(loss_cls, MODELS, key_path="model.rpn_head.loss_cls")
        self.loss_bbox = build(loss_bbox, MODELS, key_path="model.rpn_head.loss_bbox")
        self.loss_objectness = build(loss_objectness, MODELS, key_path="model.rpn_head.loss_objectness")
        self.objectness_type = objectness_type
        self.train_cfg, self.test_cfg = train_cfg, test_cfg
        if train_cfg is not None:
            self.assigner = build(train_cfg.get("assigner"), TASK_UTILS, key_path="model.train_cfg.rpn.assigner")
            self.sampler = build(train_cfg.get("sampler"), TASK_UTILS, key_path="model.train_cfg.rpn.sampler")
            self.objectness_assigner = build(train_cfg.get("objectness_assigner"), TASK_UTILS,
                                             key_path="model.train_cfg.rpn.objectness_assigner")
            self.objectness_sampler = build(train_cfg.get("objectness_sampler"), TASK_UTILS,
                                            key_path="model.train_cfg.rpn.objectness_sampler")

        self.rpn_conv = nn.Conv2d(in_channels, feat_channels, 3, padding=1)
        self.rpn_cls = nn.Conv2d(feat_channels, 1, 1)
        self.rpn_reg = nn.Conv2d(feat_channels, 4, 1)
        self.rpn_obj = nn.Conv2d(feat_channels, 1, 1)
        for conv in (self.rpn_conv, self.rpn_cls, self.rpn_reg, self.rpn_obj):  # official init: N(0, 0.01), bias 0
            nn.init.gauss_(conv.weight, 0.0, 0.01)
            nn.init.constant_(conv.bias, 0.0)

    # ------------------------------------------------------------------ forward
    def forward_single(self, x: jt.Var):
        """One level ``(N, C, H, W)`` -> ``cls (N,1,H,W)``, ``reg (N,4,H,W)``, ``obj (N,1,H,W)``."""
        x = l2_normalize(nn.relu(channels_last.conv2d(self.rpn_conv, x)))
        return self.rpn_cls(x), self.rpn_reg(x), self.rpn_obj(x)

    def execute(self, feats):
        """FPN maps -> ``(cls_scores, bbox_preds, objectness_scores)``, each a list over levels."""
        outs = [self.forward_single(x) for x in feats]
        return tuple([o[k] for o in outs] for k in range(3))

    @staticmethod
    def _flatten(pred: jt.Var, channels: int) -> jt.Var:
        """``(N, A*c, H, W)`` -> ``(N, H*W*A, c)`` in anchor order."""
        n = pred.shape[0]
        return pred.permute(0, 2, 3, 1).reshape(n, -1, channels)

    # ------------------------------------------------------------------ targets
    def get_targets(self, anchors: jt.Var, valid_flags: list, gt_bboxes: list, img_metas: list,
                    gt_bboxes_ignore: list | None = None) -> dict:
        """Targets of every anchor of every image (two assign/sample passes per image).

        Args:
            anchors: ``(A, 4)`` anchors of all levels (same for every image).
            valid_flags: per image ``(A,)`` bool (inside the image's padded area).
            gt_bboxes: per image ``(G_i, 4)``.

        Returns:
            dict of ``(B, A)`` ``labels`` (0 = positive, 1 = other), ``label_weights``,
            ``bbox_targets`` ``(B, A, 4)`` (absolute GT boxes), ``bbox_weights`` ``(B, A, 4)``,
            ``objectness_targets``, ``objectness_weights``, and the int ``num_total_samples``.
        """
        if gt_bboxes_ignore is not None and any(g is not None and len(g) for g in gt_bboxes_ignore):
            raise NotImplementedError("OlnRPNHead: gt_bboxes_ignore is not supported (the official configs have none)")
        per_image, num_total_samples = [], 0
        for valid, gts, meta in zip(valid_flags, gt_bboxes, img_metas):
            targets, num_samples = self._get_targets_single(anchors, valid, as_var(gts).reshape(-1, 4), meta)
            per_image.append(targets)
            num_total_samples += num_samples
        out = {k: jt.stack([t[k] for t in per_image]) for k in per_image[0]}
        out["num_total_samples"] = num_total_samples
        return out

    def _assign_and_sample(self, assigner, sampler, anchors, inside, gt_bboxes):
        """Assign/sample the anchors inside the image; anchors outside are ignored (``gt_inds = -1``),
        which is what mmdet's assignment of the inside subset followed by ``unmap`` gives."""
        overlaps = jt.where(inside[None, :], bbox_overlaps(gt_bboxes, anchors), -1.0)  # (G, A)
        result = assigner.assign_wrt_overlaps(overlaps)
        result.gt_inds = jt.where(inside, result.gt_inds, -1)
        return result, sampler.sample(result, anchors, gt_bboxes)

    def _get_targets_single(self, anchors, valid, gt_bboxes, img_meta):
        num_anchors = anchors.shape[0]
        inside = anchor_inside_flags(anchors, valid, img_meta["img_shape"][:2], self.train_cfg["allowed_border"])
        has_gt = gt_bboxes.shape[0] > 0

        # pass 1 (regression / cls): positives carry the absolute GT box if it passes the check
        assign, sampled = self._assign_and_sample(self.assigner, self.sampler, anchors, inside, gt_bboxes)
        pos = index_mask(num_anchors, sampled.pos_inds)
        neg = index_mask(num_anchors, sampled.neg_inds)
        matched = gt_bboxes[jt.maximum(assign.gt_inds - 1, 0)] if has_gt else jt.zeros((num_anchors, 4))
        reg_valid = pos & (matched.min(dim=1) > 0)  # official "sanity check" on absolute coordinates
        pos_weight = self.train_cfg.get("pos_weight", -1)
        label_weights = jt.where(pos, 1.0 if pos_weight <= 0 else float(pos_weight), neg.float32())

        # pass 2 (objectness): centerness (or IoU) target for positives, 0 for sampled negatives
        obj_assign, obj_sampled = self._assign_and_sample(self.objectness_assigner, self.objectness_sampler,
                                                          anchors, inside, gt_bboxes)
        obj_pos = index_mask(num_anchors, obj_sampled.pos_inds)
        obj_neg = index_mask(num_anchors, obj_sampled.neg_inds)
        if has_gt:
            obj_matched = gt_bboxes[jt.maximum(obj_assign.gt_inds - 1, 0)]
            if self.objectness_type == "Centerness":
                quality = centerness_targets(anchors, obj_matched)
            else:
                quality = bbox_overlaps(anchors, obj_matched, is_aligned=True)
            obj_targets = jt.where(obj_pos, quality, 0.0)
        else:
            obj_targets = jt.zeros((num_anchors,))

        targets = dict(
            labels=jt.where(pos, 0, self.num_classes).int64(),
            label_weights=label_weights.float32(),
            bbox_targets=jt.where(reg_valid[:, None], matched, 0.0),
            bbox_weights=reg_valid.float32()[:, None].broadcast((num_anchors, 4)),
            objectness_targets=obj_targets.float32(),
            objectness_weights=(obj_pos | obj_neg).float32(),
        )
        num_samples = max(len(sampled.pos_inds), 1) + max(len(sampled.neg_inds), 1)
        return targets, num_samples

    # ------------------------------------------------------------------ losses
    def get_anchors(self, featmap_sizes, img_metas):
        """``(A, 4)`` anchors of all levels, per-level counts, and per image ``(A,)`` valid flags."""
        mlvl = self.anchor_generator.grid_anchors(featmap_sizes)
        valid = [jt.concat(self.anchor_generator.valid_flags(featmap_sizes, meta["pad_shape"][:2]))
                 for meta in img_metas]
        return jt.concat(mlvl), [a.shape[0] for a in mlvl], valid

    def loss(self, cls_scores, bbox_preds, objectness_scores, gt_bboxes, img_metas, gt_bboxes_ignore=None,
             return_targets: bool = False):
        """Losses per level: ``{'loss_rpn_cls': [L0..L4], 'loss_rpn_bbox': [...], 'loss_rpn_obj': [...]}``.

        Each level's loss is computed over the ``B * A_l`` anchors of that level and divided by
        ``num_total_samples`` (see the module docstring). ``return_targets`` also returns the
        target dict of :meth:`get_targets`.
        """
        featmap_sizes = [c.shape[-2:] for c in cls_scores]
        anchors, level_sizes, valid = self.get_anchors(featmap_sizes, img_metas)
        t = self.get_targets(anchors, valid, gt_bboxes, img_metas, gt_bboxes_ignore)
        avg = t["num_total_samples"]
        losses = dict(loss_rpn_cls=[], loss_rpn_bbox=[], loss_rpn_obj=[])
        start = 0
        for cls, reg, obj, size in zip(cls_scores, bbox_preds, objectness_scores, level_sizes):
            sl = slice(start, start + size)
            start += size
            lvl_anchors = anchors[sl].reshape(1, -1, 4).broadcast((cls.shape[0], size, 4)).reshape(-1, 4)
            losses["loss_rpn_cls"].append(self.loss_cls(
                self._flatten(cls, 1).reshape(-1, 1), t["labels"][:, sl].reshape(-1),
                t["label_weights"][:, sl].reshape(-1), avg_factor=avg))
            boxes = self.bbox_coder.decode(lvl_anchors, self._flatten(reg, 4).reshape(-1, 4))
            losses["loss_rpn_bbox"].append(self.loss_bbox(
                boxes, t["bbox_targets"][:, sl].reshape(-1, 4), t["bbox_weights"][:, sl].reshape(-1, 4),
                avg_factor=avg))
            losses["loss_rpn_obj"].append(self.loss_objectness(
                self._flatten(obj, 1).reshape(-1).sigmoid(), t["objectness_targets"][:, sl].reshape(-1),
                t["objectness_weights"][:, sl].reshape(-1), avg_factor=avg))
        return (losses, t) if return_targets else losses

    # ------------------------------------------------------------------ proposals
    def get_bboxes(self, cls_scores, bbox_preds, objectness_scores, img_metas, cfg: dict | None = None):
        """Proposals per image: ``(n, 5)`` ``[x1, y1, x2, y2, sigmoid(obj)]`` in input pixels.

        A level with more than ``cfg['nms_pre']`` anchors keeps its top ``nms_pre`` by objectness
        (sorted, descending); smaller levels keep all anchors in anchor order (official). Boxes are
        decoded with the TBLR coder and clipped to ``img_shape``; levels are concatenated and NOT
        suppressed. Boxes smaller than ``min_bbox_size`` are dropped if it is > 0.
        """
        cfg = self.test_cfg if cfg is None else cfg
        nms_pre = cfg.get("nms_pre", -1)
        featmap_sizes = [c.shape[-2:] for c in cls_scores]
        mlvl_anchors = self.anchor_generator.grid_anchors(featmap_sizes)
        batch = cls_scores[0].shape[0]
        scores, preds, anchors = [], [], []
        for reg, obj, lvl_anchors in zip(bbox_preds, objectness_scores, mlvl_anchors):
            s = self._flatten(obj.detach(), 1).reshape(batch, -1).sigmoid()  # (B, A_l)
            p = self._flatten(reg.detach(), 4)  # (B, A_l, 4)
            a = lvl_anchors.reshape(1, -1, 4).broadcast((batch,) + tuple(lvl_anchors.shape))
            if 0 < nms_pre < s.shape[1]:
                order, s = jt.argsort(s, dim=1, descending=True)
                order, s = order[:, :nms_pre], s[:, :nms_pre]
                flat = (order + jt.arange(batch).int32()[:, None] * p.shape[1]).reshape(-1)
                p = p.reshape(-1, 4)[flat].reshape(batch, nms_pre, 4)
                a = a.reshape(-1, 4)[flat].reshape(batch, nms_pre, 4)
            scores.append(s)
            preds.append(p)
            anchors.append(a)
        scores, preds, anchors = jt.concat(scores, 1), jt.concat(preds, 1), jt.concat(anchors, 1)
        proposals = []
        for i, meta in enumerate(img_metas):
            boxes = self.bbox_coder.decode(anchors[i], preds[i], max_shape=meta["img_shape"][:2])
            dets = jt.concat([boxes, scores[i][:, None]], dim=1)
            min_size = cfg.get("min_bbox_size", 0)
            if min_size > 0:
                keep = jt.where(((boxes[:, 2] - boxes[:, 0]) >= min_size) & ((boxes[:, 3] - boxes[:, 1]) >= min_size))[0]
                dets = dets[keep]
            proposals.append(dets)
        return proposals

    def simple_test_rpn(self, feats, img_metas):
        """Test-time proposals (``test_cfg``), one ``(n, 5)`` Var per image."""
        return self.get_bboxes(*self(feats), img_metas)

    def forward_train(self, feats, img_metas, gt_bboxes, gt_labels=None, gt_bboxes_ignore=None,
                      proposal_cfg: dict | None = None):
        """Losses and (detached) proposals for the RoI head. ``gt_labels`` is unused (class-agnostic)."""
        outs = self(feats)
        losses = self.loss(*outs, gt_bboxes, img_metas, gt_bboxes_ignore=gt_bboxes_ignore)
        return losses, self.get_bboxes(*outs, img_metas, cfg=proposal_cfg)
