"""Box coders (mmdet 2.18): ``DeltaXYWHBBoxCoder`` and ``TBLRBBoxCoder``.

All boxes are ``[x1, y1, x2, y2]`` pixels without ``+1``. ``max_shape`` is the image
``(H, W)``: decoded x is clipped to ``[0, W]`` and y to ``[0, H]``.
"""
from __future__ import annotations

import math

import jittor as jt
import numpy as np

from ..registry import TASK_UTILS
from .boxes import as_var, clip_bboxes

__all__ = ["bbox2delta", "delta2bbox", "bboxes2tblr", "tblr2bboxes", "DeltaXYWHBBoxCoder", "TBLRBBoxCoder"]


def _centers_sizes(boxes: jt.Var):
    """``(cx, cy, w, h)``, each ``(N,)``, of ``(N, 4)`` boxes."""
    return ((boxes[:, 0] + boxes[:, 2]) * 0.5, (boxes[:, 1] + boxes[:, 3]) * 0.5,
            boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])


def bbox2delta(proposals, gt, means=(0.0, 0.0, 0.0, 0.0), stds=(1.0, 1.0, 1.0, 1.0)) -> jt.Var:
    """Encode ``gt`` w.r.t. ``proposals``: ``((dx, dy, dw, dh) - means) / stds``, ``(N, 4)``.

    ``dx = (gx - px) / pw``, ``dy = (gy - py) / ph``, ``dw = log(gw / pw)``, ``dh = log(gh / ph)``.
    """
    p, g = as_var(proposals), as_var(gt)
    if p.shape != g.shape:
        raise ValueError(f"bbox2delta: proposals {tuple(p.shape)} and gt {tuple(g.shape)} differ")
    px, py, pw, ph = _centers_sizes(p)
    gx, gy, gw, gh = _centers_sizes(g)
    deltas = jt.stack([(gx - px) / pw, (gy - py) / ph, jt.log(gw / pw), jt.log(gh / ph)], dim=-1)
    return (deltas - jt.array(np.float32(means))) / jt.array(np.float32(stds))


def delta2bbox(rois, deltas, means=(0.0, 0.0, 0.0, 0.0), stds=(1.0, 1.0, 1.0, 1.0), max_shape=None,
               wh_ratio_clip: float = 16 / 1000, clip_border: bool = True) -> jt.Var:
    """Apply ``(N, 4k)`` deltas (k = 1 or one set per class) to ``(N, 4)`` rois -> ``(N, 4k)`` boxes.

    ``dw, dh`` are de-normalised, then clamped to ``±|log(wh_ratio_clip)|``; no centre clamp.
    With ``max_shape=(H, W)`` and ``clip_border`` the boxes are clipped to the image.
    """
    r, d = as_var(rois), as_var(deltas)
    if d.ndim != 2 or d.shape[1] % 4 or r.shape[0] != d.shape[0]:
        raise ValueError(f"delta2bbox: rois {tuple(r.shape)} and deltas {tuple(d.shape)} do not match "
                         "(expected (N,4) and (N,4k))")
    k = d.shape[1] // 4
    d = d.reshape(-1, k, 4) * jt.array(np.float32(stds)) + jt.array(np.float32(means))
    px, py, pw, ph = (v[:, None] for v in _centers_sizes(r))
    max_ratio = float(np.float32(abs(math.log(wh_ratio_clip))))
    dw = jt.clamp(d[..., 2], -max_ratio, max_ratio)
    dh = jt.clamp(d[..., 3], -max_ratio, max_ratio)
    gw, gh = pw * jt.exp(dw), ph * jt.exp(dh)
    gx, gy = px + pw * d[..., 0], py + ph * d[..., 1]
    boxes = jt.stack([gx - gw * 0.5, gy - gh * 0.5, gx + gw * 0.5, gy + gh * 0.5], dim=-1).reshape(-1, 4 * k)
    if clip_border and max_shape is not None:
        boxes = clip_bboxes(boxes, max_shape)
    return boxes


def bboxes2tblr(priors, gts, normalizer=4.0, normalize_by_wh: bool = True) -> jt.Var:
    """Encode gts as distances ``(top, bottom, left, right)`` from the prior centre, ``(N, 4)``.

    Divided by the prior ``(h, h, w, w)`` when ``normalize_by_wh``, then by ``normalizer``
    (a float or 4 floats). GTs that do not contain the centre give negative distances.
    """
    p, g = as_var(priors), as_var(gts)
    if p.shape != g.shape:
        raise ValueError(f"bboxes2tblr: priors {tuple(p.shape)} and gts {tuple(g.shape)} differ")
    cx, cy = (p[:, 0] + p[:, 2]) / 2, (p[:, 1] + p[:, 3]) / 2
    loc = jt.stack([cy - g[:, 1], g[:, 3] - cy, cx - g[:, 0], g[:, 2] - cx], dim=1)
    if normalize_by_wh:
        w, h = p[:, 2] - p[:, 0], p[:, 3] - p[:, 1]
        loc = loc / jt.stack([h, h, w, w], dim=1)
    return loc / jt.array(np.float32(normalizer))


def tblr2bboxes(priors, tblr, normalizer=4.0, normalize_by_wh: bool = True, max_shape=None,
                clip_border: bool = True) -> jt.Var:
    """Decode ``(N, 4)`` ``(t, b, l, r)`` predictions into boxes around the prior centres."""
    p, t = as_var(priors), as_var(tblr)
    if p.shape != t.shape:
        raise ValueError(f"tblr2bboxes: priors {tuple(p.shape)} and tblr {tuple(t.shape)} differ")
    loc = t * jt.array(np.float32(normalizer))
    cx, cy = (p[:, 0] + p[:, 2]) / 2, (p[:, 1] + p[:, 3]) / 2
    if normalize_by_wh:
        w, h = p[:, 2] - p[:, 0], p[:, 3] - p[:, 1]
        loc = loc * jt.stack([h, h, w, w], dim=1)
    boxes = jt.stack([cx - loc[:, 2], cy - loc[:, 0], cx + loc[:, 3], cy + loc[:, 1]], dim=1)
    if clip_border and max_shape is not None:
        boxes = clip_bboxes(boxes, max_shape)
    return boxes


@TASK_UTILS.register_module()
class DeltaXYWHBBoxCoder:
    """mmdet ``DeltaXYWHBBoxCoder``: (dx, dy, dw, dh) deltas normalised by means/stds.

    Args:
        target_means, target_stds: 4 floats each.
        clip_border: clip decoded boxes to ``max_shape``.
        add_ctr_clamp, ctr_clamp: only the official default (no centre clamp) is supported.
    """

    def __init__(self, target_means=(0.0, 0.0, 0.0, 0.0), target_stds=(1.0, 1.0, 1.0, 1.0),
                 clip_border: bool = True, add_ctr_clamp: bool = False, ctr_clamp: int = 32):
        if add_ctr_clamp:
            raise NotImplementedError("DeltaXYWHBBoxCoder(add_ctr_clamp=True) is not used by UniDetector")
        self.means, self.stds = tuple(target_means), tuple(target_stds)
        self.clip_border = clip_border

    def encode(self, bboxes, gt_bboxes) -> jt.Var:
        """``(N, 4)`` proposals + ``(N, 4)`` matched GTs -> ``(N, 4)`` normalised deltas."""
        return bbox2delta(bboxes, gt_bboxes, self.means, self.stds)

    def decode(self, bboxes, pred_bboxes, max_shape=None, wh_ratio_clip: float = 16 / 1000) -> jt.Var:
        """``(N, 4)`` proposals + ``(N, 4k)`` deltas -> ``(N, 4k)`` boxes, clipped to ``max_shape=(H, W)``."""
        return delta2bbox(bboxes, pred_bboxes, self.means, self.stds, max_shape, wh_ratio_clip, self.clip_border)


@TASK_UTILS.register_module()
class TBLRBBoxCoder:
    """mmdet ``TBLRBBoxCoder``: distances to the box sides, in units of the prior size / normalizer."""

    def __init__(self, normalizer=4.0, clip_border: bool = True):
        self.normalizer = normalizer
        self.clip_border = clip_border

    def encode(self, bboxes, gt_bboxes) -> jt.Var:
        """``(N, 4)`` priors + ``(N, 4)`` GTs -> ``(N, 4)`` ``(t, b, l, r)`` targets."""
        return bboxes2tblr(bboxes, gt_bboxes, self.normalizer)

    def decode(self, bboxes, pred_bboxes, max_shape=None) -> jt.Var:
        """``(N, 4)`` priors + ``(N, 4)`` predictions -> ``(N, 4)`` boxes, clipped to ``max_shape=(H, W)``."""
        return tblr2bboxes(bboxes, pred_bboxes, self.normalizer, max_shape=max_shape, clip_border=self.clip_border)
