"""Class-agnostic proposal recall (mmdet ``eval_recalls`` semantics, no ``+1`` in areas).

For each image and proposal budget ``k`` the top-``k`` proposals (by score when there is a score
column) are matched greedily one-to-one with the GT boxes (highest IoU pair first); a GT is recalled at
threshold ``t`` if its matched IoU ≥ ``t``. AR@k = mean recall over ``iou_thrs`` (default
0.50:0.05:0.95), as mmdet's ``CocoDataset.evaluate(metric='proposal_fast')``.
"""
from __future__ import annotations

import numpy as np

DEFAULT_IOU_THRS = np.arange(0.5, 0.96, 0.05)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of xyxy boxes, mmdet v2 convention (w = x2 - x1)."""
    a = np.asarray(a, dtype=np.float64)[:, :4]
    b = np.asarray(b, dtype=np.float64)[:, :4]
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), dtype=np.float64)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = np.maximum(area_a[:, None] + area_b[None, :] - inter, np.finfo(np.float32).eps)
    return inter / union


def _matched_ious(ious: np.ndarray) -> np.ndarray:
    """mmdet greedy one-to-one matching: for each GT the IoU it gets (0 if none)."""
    ious = ious.copy()
    out = np.zeros(ious.shape[0])
    if ious.size == 0:
        return out
    for j in range(ious.shape[0]):
        gt_best = ious.argmax(axis=1)
        best = ious[np.arange(ious.shape[0]), gt_best]
        g = best.argmax()
        out[j] = best[g]
        ious[g, :] = -1
        ious[:, gt_best[g]] = -1
    return out


def eval_recalls(gts, proposals, proposal_nums=(100, 300, 1000), iou_thrs=None) -> np.ndarray:
    """Recall matrix (len(proposal_nums), len(iou_thrs)) over all GT boxes of all images."""
    nums = np.array(sorted(proposal_nums) if np.ndim(proposal_nums) else [proposal_nums], dtype=np.int64)
    thrs = DEFAULT_IOU_THRS if iou_thrs is None else np.atleast_1d(np.asarray(iou_thrs, dtype=np.float64))
    if len(gts) != len(proposals):
        raise ValueError(f"{len(gts)} GT entries but {len(proposals)} proposal entries")
    all_ious = []
    for gt, prop in zip(gts, proposals):
        prop = np.asarray(prop, dtype=np.float32)
        if prop.ndim == 2 and prop.shape[1] == 5:
            prop = prop[np.argsort(prop[:, 4], kind="stable")[::-1]]
        prop = prop.reshape(-1, prop.shape[-1] if prop.size else 4)[: nums[-1]]
        gt = np.zeros((0, 4)) if gt is None else np.asarray(gt).reshape(-1, 4)
        all_ious.append(box_iou(gt, prop))
    total = sum(i.shape[0] for i in all_ious)
    matched = np.zeros((len(nums), total))
    for k, n in enumerate(nums):
        matched[k] = np.concatenate([_matched_ious(i[:, :n]) for i in all_ious]) if total else []
    if total == 0:
        return np.zeros((len(nums), len(thrs)))
    return (matched[:, :, None] >= thrs[None, None, :]).sum(axis=1) / float(total)


def gt_boxes_from_coco(data: dict, img_ids, cat_ids=None, with_labels: bool = False) -> list:
    """Per image (n, 4) xyxy boxes of non-crowd, non-ignored annotations (of ``cat_ids`` if given); with
    ``with_labels`` per image ``(boxes, (n,) category ids)``."""
    keep = None if cat_ids is None else set(cat_ids)
    by_img = {i: [] for i in img_ids}
    for a in data["annotations"]:
        if a["image_id"] not in by_img or a.get("ignore", False) or a.get("iscrowd", 0):
            continue
        if keep is not None and a["category_id"] not in keep:
            continue
        x, y, w, h = a["bbox"]
        by_img[a["image_id"]].append([x, y, x + w, y + h, a["category_id"]])
    rows = [np.asarray(by_img[i], dtype=np.float64).reshape(-1, 5) for i in img_ids]
    boxes = [r[:, :4].astype(np.float32) for r in rows]
    return [(b, r[:, 4].astype(np.int64)) for b, r in zip(boxes, rows)] if with_labels else boxes


def proposal_recall_report(data: dict, img_ids, proposals, proposal_nums=(100, 300, 1000), iou_thrs=None,
                           cat_subsets=None) -> dict:
    """``{'AR@k': ...}`` over all GT, plus ``'<name>_AR@k'`` for each ``cat_subsets`` entry
    (``{'seen': [cat ids], 'novel': [cat ids]}``), e.g. seen vs novel classes of the synthetic world."""
    props = [p if isinstance(p, np.ndarray) else np.concatenate([np.asarray(c).reshape(-1, 5) for c in p])
             for p in proposals]
    out = {}
    subsets = [("", None)] + sorted((cat_subsets or {}).items())
    for name, cats in subsets:
        rec = eval_recalls(gt_boxes_from_coco(data, img_ids, cats), props, proposal_nums, iou_thrs)
        for k, n in enumerate(sorted(proposal_nums)):
            out[f"{name + '_' if name else ''}AR@{n}"] = float(rec[k].mean())
    return out
