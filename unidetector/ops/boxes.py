"""Box utilities with mmdet v2 conventions.

Boxes are ``(..., 4)`` float32 ``[x1, y1, x2, y2]`` in pixels; width is ``x2 - x1``
(no ``+1``). RoIs are ``(K, 5)`` ``[batch_idx, x1, y1, x2, y2]``. Functions take
Jittor Vars (numpy arrays are converted) and return Jittor Vars, except
:func:`bbox2result`, which builds the numpy result lists of the mmdet API.
"""
from __future__ import annotations

from typing import Sequence

import jittor as jt
import numpy as np

__all__ = ["as_var", "bbox_overlaps", "clip_bboxes", "rescale_bboxes", "bbox2roi", "roi2bbox", "bbox2result"]


def as_var(x, dtype: str = "float32") -> jt.Var:
    """``x`` as a Jittor Var of ``dtype`` (numpy arrays, lists and Vars accepted)."""
    if isinstance(x, jt.Var):
        return x if str(x.dtype) == dtype else x.cast(dtype)
    return jt.array(np.asarray(x, dtype=dtype))


def bbox_overlaps(bboxes1, bboxes2, mode: str = "iou", is_aligned: bool = False, eps: float = 1e-6) -> jt.Var:
    """mmdet ``bbox_overlaps``: IoU or IoF between two box sets.

    Args:
        bboxes1: ``(M, 4)`` boxes.
        bboxes2: ``(N, 4)`` boxes (``(M, 4)`` when ``is_aligned``).
        mode: ``'iou'`` (intersection / union) or ``'iof'`` (intersection / area of bboxes1).
        is_aligned: if True, compare row i with row i only.
        eps: lower bound of the denominator (degenerate boxes give 0, not NaN).

    Returns:
        ``(M, N)`` float32, or ``(M,)`` when ``is_aligned``.
    """
    if mode not in ("iou", "iof"):
        raise ValueError(f"bbox_overlaps mode must be 'iou' or 'iof', got {mode!r}")
    b1, b2 = as_var(bboxes1), as_var(bboxes2)
    if b1.ndim != 2 or b1.shape[-1] != 4 or b2.ndim != 2 or b2.shape[-1] != 4:
        raise ValueError(f"bbox_overlaps expects (M,4) and (N,4) boxes, got {tuple(b1.shape)} and {tuple(b2.shape)}")
    M, N = b1.shape[0], b2.shape[0]
    if is_aligned and M != N:
        raise ValueError(f"is_aligned=True needs the same number of boxes, got {M} and {N}")
    if M == 0 or N == 0:
        return jt.zeros((M,) if is_aligned else (M, N), dtype="float32")
    area1 = (b1[:, 2] - b1[:, 0]) * (b1[:, 3] - b1[:, 1])
    area2 = (b2[:, 2] - b2[:, 0]) * (b2[:, 3] - b2[:, 1])
    if is_aligned:
        lt = jt.maximum(b1[:, :2], b2[:, :2])
        rb = jt.minimum(b1[:, 2:], b2[:, 2:])
        union_extra = area2
    else:
        lt = jt.maximum(b1[:, None, :2], b2[None, :, :2])  # (M, N, 2)
        rb = jt.minimum(b1[:, None, 2:], b2[None, :, 2:])
        area1, union_extra = area1[:, None], area2[None, :]
    wh = jt.maximum(rb - lt, 0.0)
    overlap = wh[..., 0] * wh[..., 1]
    union = area1 + union_extra - overlap if mode == "iou" else area1
    return overlap / jt.maximum(union, eps)


def clip_bboxes(bboxes, max_shape) -> jt.Var:
    """Clip x to ``[0, W]`` and y to ``[0, H]`` (mmdet v2 clips to W/H, not W-1/H-1).

    Args:
        bboxes: ``(..., 4k)`` boxes.
        max_shape: ``(H, W)`` (extra entries, e.g. channels, are ignored).
    """
    b = as_var(bboxes)
    h, w = float(max_shape[0]), float(max_shape[1])
    k = b.shape[-1] // 4
    hi = jt.array(np.tile(np.array([w, h, w, h], np.float32), k))
    return jt.minimum(jt.maximum(b, 0.0), hi)


def rescale_bboxes(bboxes, scale_factor) -> jt.Var:
    """Map boxes from the resized image back to the original: ``bboxes / scale_factor``.

    Args:
        bboxes: ``(N, 4k)`` boxes in resized-image pixels (extra columns, e.g. a score, are kept).
        scale_factor: float or ``(w, h, w, h)`` as stored in ``img_metas``.
    """
    b = as_var(bboxes)
    sf = np.broadcast_to(np.asarray(scale_factor, np.float32).reshape(-1), (4,))
    n_box_cols = b.shape[-1] - b.shape[-1] % 4
    sf_row = np.ones(b.shape[-1], np.float32)
    sf_row[:n_box_cols] = np.tile(sf, n_box_cols // 4)
    return b / jt.array(sf_row)


def bbox2roi(bbox_list: Sequence) -> jt.Var:
    """Pack per-image ``(n_i, 4+)`` boxes into ``(sum n_i, 5)`` RoIs ``[img_idx, x1, y1, x2, y2]``."""
    rois = []
    for img_id, bboxes in enumerate(bbox_list):
        b = as_var(bboxes)
        b = b.reshape(-1, b.shape[-1] if b.ndim > 1 else 4)[:, :4]
        rois.append(jt.concat([jt.full((b.shape[0], 1), float(img_id), dtype="float32"), b], dim=1))
    if not rois:
        return jt.zeros((0, 5), dtype="float32")
    return jt.concat(rois, dim=0)


def roi2bbox(rois) -> list:
    """Split ``(K, 5)`` RoIs into a list over images of ``(n_i, 4)`` boxes (index order)."""
    rois = as_var(rois)
    img_ids = rois[:, 0].numpy().astype(np.int64)
    num_images = int(img_ids.max()) + 1 if img_ids.size else 0
    order = np.argsort(img_ids, kind="stable")
    bounds = np.searchsorted(img_ids[order], np.arange(num_images + 1))
    boxes = rois[:, 1:]
    return [boxes[jt.array(order[bounds[i]:bounds[i + 1]])] if bounds[i + 1] > bounds[i]
            else jt.zeros((0, 4), dtype="float32") for i in range(num_images)]


def bbox2result(bboxes, labels, num_classes: int) -> list:
    """mmdet ``bbox2result``: detections to a list over classes of ``(n_c, 5)`` float32 numpy arrays.

    Args:
        bboxes: ``(n, 5)`` ``[x1, y1, x2, y2, score]``.
        labels: ``(n,)`` class index in ``[0, num_classes)``.
        num_classes: number of classes (background excluded).

    Rows keep their input order within each class.
    """
    b = np.asarray(bboxes.numpy() if isinstance(bboxes, jt.Var) else bboxes, np.float32).reshape(-1, 5)
    lab = np.asarray(labels.numpy() if isinstance(labels, jt.Var) else labels, np.int64).reshape(-1)
    if b.shape[0] != lab.shape[0]:
        raise ValueError(f"bbox2result: {b.shape[0]} boxes but {lab.shape[0]} labels")
    order = np.argsort(lab, kind="stable")
    bounds = np.searchsorted(lab[order], np.arange(num_classes + 1))
    sorted_b = b[order][bounds[0]:bounds[-1]]  # labels outside [0, num_classes) are dropped
    return np.split(sorted_b, bounds[1:-1] - bounds[0]) if num_classes > 0 else []
