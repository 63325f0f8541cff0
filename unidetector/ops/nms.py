"""NMS family with mmcv 1.3.x / mmdet 2.18 semantics: ``nms``, ``soft_nms``, ``batched_nms``,
``multiclass_nms``.

Boxes are ``(N, 4)`` float32 ``[x1, y1, x2, y2]``; IoU uses ``w = x2 - x1 + offset`` with
``offset = 0`` (mmdet v2). Jittor's ``jt.nms`` uses ``+1`` and is not used.

How it runs: one ``jt.code`` kernel (CPU and CUDA) processes every class ("segment")
independently -- on the GPU one thread per class -- so the 1230 LVIS classes need no
Python loop. Per class it runs the exact mmcv CPU algorithm:

* hard NMS: visit boxes by descending score; drop a later box if ``IoU > thr`` (strict);
* soft-NMS (mmcv ``softnms_cpu``): repeatedly select the highest remaining score (the
  first one on ties), multiply every later score by ``exp(-IoU^2 / sigma)``
  (gaussian), ``1 - IoU`` if ``IoU >= thr`` (linear) or 0 if ``IoU >= thr`` (naive), and
  drop a box as soon as its score falls below ``min_score`` (swapping the last box in).

``batched_nms`` reproduces mmcv's float32 coordinate offset ``boxes + class * (max + 1)``
(computed without fused multiply-add), so IoUs -- and the gaussian decay -- are bit-for-bit
those of mmcv, on both of its paths (one call below ``split_thr`` candidates, one call per
class above it). Results are ordered by descending (decayed) score, ties by index.

Defined behaviour on bad input (documented deviations from mmcv):

* NaN scores: the box is dropped (never kept, never suppresses others). mmcv's output is
  undefined for them.
* Two zero-area boxes have IoU 0 (mmcv computes 0/0 = NaN).
* Empty inputs return empty ``(0, 5)`` dets and ``(0,)`` int64 indices.
"""
from __future__ import annotations

import warnings

import jittor as jt
import numpy as np

from . import kernel_source
from .boxes import as_var

__all__ = ["nms", "soft_nms", "batched_nms", "multiclass_nms"]

_METHODS = {"naive": 0, "linear": 1, "gaussian": 2, "hard": 3}

# Kernel sources: kernels/nms_sort.{cc,cu} (orderings) and kernels/nms.{h,cc,cu} (per-class NMS).
_SORT_CODE = kernel_source.KernelCode(kernel_source.load("nms_sort.cc"), "", kernel_source.load("nms_sort.cu"), "")
_NMS_CPU_SOURCE = kernel_source.load("nms.cc")
_NMS_CUDA_SOURCE = kernel_source.load("nms.cu")

# Kernel 1: argsort by (primary ascending, secondary descending, index ascending), or only its first
# `topk` entries (CPU; CUDA sorts all). in0 primary (N,) int32, in1 secondary (N,) float32, in2 [k] int32.
LEXSORT_CODE = _SORT_CODE._replace(cpu_src="unidet::lexsort_cpu(in0_p, in1_p, in0_shape0, in2_p[0], out0_p);",
                                   cuda_src="unidet::lexsort_cuda(in0_p, in1_p, in0_shape0, out0_p);")

# Grouping by class with index order kept (soft-NMS visits a class in index order): a stable
# counting sort on the CPU, a stable radix sort on the GPU. in0 class ids (N,) int32 -> out0 order,
# out1 scratch.
GROUP_CODE = _SORT_CODE._replace(cpu_src="unidet::group_by_class_cpu(in0_p, in0_shape0, out0_p);",
                                 cuda_src="unidet::group_by_class_cuda(in0_p, in0_shape0, out0_p, out1_p);")


def _lexsort(primary: jt.Var, secondary: jt.Var, topk: int = -1) -> jt.Var:
    """``(N,)`` int32 permutation by primary asc, secondary desc, index asc (first ``topk`` if > 0)."""
    n = primary.shape[0]
    k = n if topk <= 0 else min(topk, n)
    order = jt.code((n,), "int32", [primary.int32(), secondary.float32(), jt.array([k]).int32()],
                    **LEXSORT_CODE.kwargs())
    return order[:k] if k < n else order


def _group_by_class(class_ids: jt.Var) -> jt.Var:
    """``(N,)`` int32 permutation grouping equal class ids (ascending), index order within a class."""
    n = class_ids.shape[0]
    order, _ = jt.code([(n,), (n,)], ["int32", "int32"], [class_ids.int32()], **GROUP_CODE.kwargs())
    return order


# Kernel 2: per-segment NMS / soft-NMS.
# in0 boxes (N,4), in1 scores (N,), in2 class id (N,) int32 (coordinate offset multiplier),
# in3 max_coordinate + 1 (1,), in4 order (N,) int32: positions grouped by class; within a
# class by descending score (hard NMS) or by index (soft-NMS, mmcv processes in index order).
# out0 decayed score (N,), out1 rank in the class's processing order or -1 (dropped),
# out2/out3 scratch (N,6) float / (N,) int.
_NMS_CALL = "unidet::segment_nms_%s(in0_shape0, in0_p, in1_p, in2_p, in3_p, in4_p, out0_p, out1_p, out2_p, out3_p);"


def _c_float(x: float) -> str:
    return f"((float){float(x)!r})"


def nms_kernel_code(method: str, iou_threshold: float, sigma: float = 0.5, min_score: float = 1e-3,
                    offset: int = 0) -> kernel_source.KernelCode:
    """``jt.code`` sources of the per-class NMS kernel with these (static) settings."""
    macros = {"NMS_METHOD": _METHODS[method], "NMS_IOU_THRESHOLD": _c_float(iou_threshold),
              "NMS_SIGMA": _c_float(sigma), "NMS_MIN_SCORE": _c_float(min_score), "NMS_OFFSET": f"{int(offset)}.f"}
    return kernel_source.KernelCode(kernel_source.header(_NMS_CPU_SOURCE, macros), _NMS_CALL % "cpu",
                                    kernel_source.header(_NMS_CUDA_SOURCE, macros), _NMS_CALL % "cuda")


def _segment_nms(boxes, scores, class_ids, mc1, order, method: str, iou_threshold: float, sigma: float = 0.5,
                 min_score: float = 1e-3, offset: int = 0):
    """Run the NMS kernel; returns ``(new_scores (N,), rank (N,))``, rank -1 = dropped."""
    code = nms_kernel_code(method, iou_threshold, sigma, min_score, offset)
    n = boxes.shape[0]
    new_scores, rank, _, _ = jt.code(
        [(n,), (n,), (n, 6), (n,)], ["float32", "int32", "float32", "int32"],
        [boxes, scores, class_ids, mc1, order], **code.kwargs())
    return new_scores, rank


def _prepare(boxes, scores, name: str):
    """Validate ``(N, 4)`` boxes and ``(N,)`` scores; return them as float32 Vars."""
    boxes, scores = as_var(boxes), as_var(scores)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name}: boxes must have shape (N, 4), got {tuple(boxes.shape)}")
    if scores.shape != (boxes.shape[0],):
        raise ValueError(f"{name}: scores must have shape ({boxes.shape[0]},), got {tuple(scores.shape)}")
    return boxes, scores


def _empty():
    return jt.zeros((0, 5), dtype="float32"), jt.zeros((0,), dtype="int64")


def _run(boxes, scores, class_ids, nms_type: str, order_by_rank: bool, iou_threshold: float, offset: int = 0,
         sigma: float = 0.5, min_score: float = 1e-3, method: str = "gaussian", max_num: int = -1,
         score_threshold: float = 0):
    """Per-class NMS of (N,4) boxes; returns ``(dets (k,5), keep (k,) int64)``.

    ``class_ids=None`` means one class and no coordinate offset. NaN scores are dropped first,
    and so are scores ``<= score_threshold`` when it is > 0 (mmcv ``nms``). The class offset
    ``max(boxes) + 1`` is taken over ALL input boxes, before this filtering, as mmcv's
    ``batched_nms`` computes it before calling ``nms``.
    """
    if boxes.shape[0] == 0:
        return _empty()
    n = boxes.shape[0]
    if class_ids is None:
        class_ids, mc1 = jt.zeros((n,), dtype="int32"), jt.zeros((1,), dtype="float32")
    else:
        class_ids = class_ids.int32()
        mc1 = (boxes.max() + 1.0).reshape(1)  # mmcv: max_coordinate + 1, in float32
    keep_mask = jt.logical_not(jt.isnan(scores))
    if score_threshold > 0:
        keep_mask = keep_mask & (scores > score_threshold)
    finite = jt.where(keep_mask)[0]
    subset = finite.shape[0] < n
    if subset:
        boxes, scores, class_ids = boxes[finite], scores[finite], class_ids[finite]
    if boxes.shape[0] == 0:
        return _empty()
    hard = nms_type == "nms"
    order = _lexsort(class_ids, scores) if hard else _group_by_class(class_ids)
    new_scores, rank = _segment_nms(boxes, scores, class_ids, mc1, order, "hard" if hard else method,
                                    iou_threshold, sigma, min_score, offset)
    kept = jt.where(rank >= 0)[0]
    if kept.shape[0] == 0:
        return _empty()
    if order_by_rank:  # processing order of a single class
        perm = _lexsort(rank[kept], jt.zeros(kept.shape, dtype="float32"), max_num)
    else:
        perm = _lexsort(jt.zeros(kept.shape, dtype="int32"), new_scores[kept], max_num)
    keep = kept[perm]
    dets = jt.concat([boxes[keep], new_scores[keep][:, None]], dim=1)
    return dets, (finite[keep] if subset else keep).int64()


def nms(boxes, scores, iou_threshold: float, offset: int = 0, score_threshold: float = 0, max_num: int = -1):
    """mmcv ``nms``: greedy NMS, keeping box j unless ``IoU > iou_threshold`` with a kept box.

    Args:
        boxes: ``(N, 4)`` float32.
        scores: ``(N,)`` float32.
        iou_threshold: IoU above which a lower-scored box is suppressed.
        offset: 0 (mmdet v2) or 1 (``+1`` widths).
        score_threshold: if > 0, only boxes with ``score > score_threshold`` take part.
        max_num: if > 0, keep at most this many.

    Returns:
        ``dets`` ``(k, 5)`` ``[x1, y1, x2, y2, score]`` by descending score, and
        ``keep`` ``(k,)`` int64 indices into the input.
    """
    boxes, scores = _prepare(boxes, scores, "nms")
    return _run(boxes, scores, None, "nms", True, iou_threshold, offset, max_num=max_num,
                score_threshold=score_threshold)


def soft_nms(boxes, scores, iou_threshold: float = 0.3, sigma: float = 0.5, min_score: float = 1e-3,
             method: str = "linear", offset: int = 0):
    """mmcv ``soft_nms`` (defaults as mmcv: linear, sigma 0.5, min_score 1e-3).

    Args:
        boxes: ``(N, 4)``; scores: ``(N,)``.
        iou_threshold: used by the linear and naive methods only.
        sigma: gaussian ``exp(-IoU^2 / sigma)``.
        min_score: a box whose decayed score falls below it is dropped.
        method: ``'gaussian'``, ``'linear'`` or ``'naive'``.

    Returns:
        ``dets`` ``(k, 5)`` with the DECAYED scores in processing (descending) order, and
        ``inds`` ``(k,)`` int64 indices into the input.
    """
    if method not in ("naive", "linear", "gaussian"):
        raise ValueError(f"soft_nms method must be 'naive', 'linear' or 'gaussian', got {method!r}")
    boxes, scores = _prepare(boxes, scores, "soft_nms")
    return _run(boxes, scores, None, "soft_nms", True, iou_threshold, offset, sigma, min_score, method)


# nms_cfg keys each NMS type takes (mmcv >= 1.3.8 ``nms`` / ``soft_nms`` keyword arguments), besides
# ``type``, ``class_agnostic`` and ``split_thr``, which ``batched_nms`` itself reads. ``max_num`` with
# soft-NMS is an extension (mmcv's ``soft_nms`` has no ``max_num``): ``multiclass_nms`` uses it to truncate.
_NMS_CFG_KEYS = {"nms": ("iou_threshold", "offset", "score_threshold", "max_num"),
                 "soft_nms": ("iou_threshold", "sigma", "min_score", "method", "offset", "max_num")}


def _nms_cfg(nms_cfg: dict, class_agnostic: bool):
    """Parse an mmcv ``nms_cfg`` dict; returns ``(nms_type, class_agnostic, kwargs)``.

    ``iou_thr`` is mmcv's deprecated name of ``iou_threshold`` (renamed with a warning; giving
    both is an error). ``split_thr`` only selects mmcv's code path, whose results are identical,
    so it is checked and ignored. Any other key raises ``ValueError`` naming it.
    """
    if not isinstance(nms_cfg, dict):
        raise ValueError(f"batched_nms: nms_cfg must be a dict, got {type(nms_cfg).__name__}")
    cfg = dict(nms_cfg)
    class_agnostic = bool(cfg.pop("class_agnostic", class_agnostic))
    nms_type = cfg.pop("type", "nms")
    if nms_type not in _NMS_CFG_KEYS:
        raise ValueError(f"batched_nms: nms type must be 'nms' or 'soft_nms', got {nms_type!r}")
    split_thr = cfg.pop("split_thr", 10000)
    if isinstance(split_thr, bool) or not isinstance(split_thr, (int, float)):
        raise ValueError(f"batched_nms: nms_cfg split_thr must be a number, got {split_thr!r}")
    if "iou_thr" in cfg:
        if "iou_threshold" in cfg:
            raise ValueError("batched_nms: nms_cfg has both iou_thr and iou_threshold; keep iou_threshold")
        warnings.warn("batched_nms: nms_cfg key 'iou_thr' is deprecated (as in mmcv), use 'iou_threshold'",
                      stacklevel=3)
        cfg["iou_threshold"] = cfg.pop("iou_thr")
    if nms_type == "soft_nms" and "score_threshold" in cfg:
        raise ValueError("batched_nms: score_threshold is an option of type='nms' only (mmcv's soft_nms has none); "
                         "soft-NMS drops boxes below min_score")
    unknown = sorted(set(cfg) - set(_NMS_CFG_KEYS[nms_type]))
    if unknown:
        raise ValueError(f"batched_nms: unsupported nms_cfg keys {unknown} for type={nms_type!r} "
                         f"(accepted: type, class_agnostic, split_thr, iou_thr, {', '.join(_NMS_CFG_KEYS[nms_type])})")
    if "iou_threshold" not in cfg:
        if nms_type == "nms":
            raise ValueError("batched_nms: nms_cfg needs iou_threshold")
        cfg["iou_threshold"] = 0.3  # mmcv soft_nms default
    for key in ("iou_threshold", "score_threshold", "sigma", "min_score"):
        if key in cfg and (isinstance(cfg[key], bool) or not isinstance(cfg[key], (int, float, np.number))):
            raise ValueError(f"batched_nms: nms_cfg {key} must be a number, got {cfg[key]!r}")
    if cfg.get("offset", 0) not in (0, 1):
        raise ValueError(f"batched_nms: nms_cfg offset must be 0 or 1, got {cfg['offset']!r}")
    return nms_type, class_agnostic, cfg


def batched_nms(boxes, scores, idxs, nms_cfg: dict, class_agnostic: bool = False):
    """mmcv ``batched_nms`` (mmcv >= 1.3.8): NMS within each class of ``idxs``.

    Args:
        boxes: ``(N, 4)``; scores: ``(N,)``; idxs: ``(N,)`` int class of each box.
        nms_cfg: ``dict(type='nms' | 'soft_nms', iou_threshold=..., ...)``. Keys as in mmcv:
            ``class_agnostic``, ``split_thr`` (selects mmcv's code path, which here gives
            identical results), ``iou_thr`` (deprecated alias of ``iou_threshold``),
            ``offset`` (0 or 1) and ``max_num`` (keep at most this many; ``-1`` all); for
            ``'nms'`` also ``score_threshold`` (if > 0, boxes with ``score <= score_threshold``
            are removed before NMS; the class offset still uses the max over all boxes, as
            mmcv); for ``'soft_nms'`` also ``sigma``, ``min_score``, ``method``. Other keys
            raise ``ValueError``.
        class_agnostic: one NMS over all boxes.

    Returns:
        ``dets`` ``(k, 5)`` (original boxes, decayed scores for soft-NMS) by descending
        score, and ``keep`` ``(k,)`` int64 indices into the input.
    """
    nms_type, class_agnostic, cfg = _nms_cfg(nms_cfg, class_agnostic)
    boxes, scores = _prepare(boxes, scores, "batched_nms")
    idxs = as_var(idxs, "int64")
    if idxs.shape != (boxes.shape[0],):
        raise ValueError(f"batched_nms: idxs must have shape ({boxes.shape[0]},), got {tuple(idxs.shape)}")
    iou_threshold = cfg.pop("iou_threshold")
    extra = dict(offset=int(cfg.pop("offset", 0)), max_num=int(cfg.pop("max_num", -1)),
                 score_threshold=float(cfg.pop("score_threshold", 0)))
    if nms_type == "soft_nms":
        extra.update(sigma=cfg.pop("sigma", 0.5), min_score=cfg.pop("min_score", 1e-3),
                     method=cfg.pop("method", "linear"))
        if extra["method"] not in ("naive", "linear", "gaussian"):
            raise ValueError(f"batched_nms: soft_nms method must be 'naive', 'linear' or 'gaussian', "
                             f"got {extra['method']!r}")
    return _run(boxes, scores, None if class_agnostic else idxs, nms_type, class_agnostic, iou_threshold, **extra)


def multiclass_nms(multi_bboxes, multi_scores, score_thr: float, nms_cfg: dict, max_num: int = -1,
                   score_factors=None, return_inds: bool = False):
    """mmdet ``multiclass_nms``: per-class NMS over every (box, class) pair above ``score_thr``.

    Args:
        multi_bboxes: ``(n, 4)`` class-agnostic or ``(n, 4 * C)`` class-specific boxes.
        multi_scores: ``(n, C + 1)``; the last (background) column is ignored.
        score_thr: keep pairs with ``score > score_thr`` (strict; NaN is dropped).
        nms_cfg: as in :func:`batched_nms`.
        max_num: keep at most this many detections (``-1``: all).
        score_factors: ``(n,)`` multiplied into the scores *after* thresholding.
        return_inds: also return the index of each detection in the flattened ``n * C``
            candidate list (row-major: proposal i, class c -> ``i * C + c``).

    Returns:
        ``dets`` ``(k, 5)``, ``labels`` ``(k,)`` int64 (and ``inds`` ``(k,)`` int64).
    """
    scores_all = as_var(multi_scores)
    if scores_all.ndim != 2 or scores_all.shape[1] < 2:
        raise ValueError(f"multiclass_nms: multi_scores must be (n, C+1) with C >= 1, got {tuple(scores_all.shape)}")
    n, num_classes = scores_all.shape[0], scores_all.shape[1] - 1
    bboxes = as_var(multi_bboxes)
    if bboxes.ndim != 2 or bboxes.shape[0] != n or bboxes.shape[1] not in (4, 4 * num_classes):
        raise ValueError(f"multiclass_nms: multi_bboxes must be ({n}, 4) or ({n}, {4 * num_classes}), "
                         f"got {tuple(bboxes.shape)}")
    scores = scores_all[:, :-1].reshape(-1)
    valid = jt.where((scores > score_thr) & jt.logical_not(jt.isnan(scores)))[0]
    if score_factors is not None:
        factors = as_var(score_factors).reshape(-1)
        if factors.shape[0] != n:
            raise ValueError(f"multiclass_nms: score_factors must have {n} entries, got {factors.shape[0]}")
        scores = (scores.reshape(n, num_classes) * factors[:, None]).reshape(-1)
    if valid.shape[0] == 0:
        dets, labels, inds = jt.zeros((0, 5), dtype="float32"), jt.zeros((0,), dtype="int64"), \
            jt.zeros((0,), dtype="int64")
    else:
        rows = valid // num_classes
        labels = (valid % num_classes).int64()
        if bboxes.shape[1] == 4:
            cand_boxes = bboxes[rows]
        else:
            cand_boxes = bboxes.reshape(n * num_classes, 4)[valid]
        if max_num > 0:  # truncating inside batched_nms gives the same result, faster
            inner = nms_cfg.get("max_num", -1)
            nms_cfg = dict(nms_cfg, max_num=max_num if inner <= 0 else min(inner, max_num))
        dets, keep = batched_nms(cand_boxes, scores[valid], labels, nms_cfg)
        labels, inds = labels[keep], valid[keep].int64()
    return (dets, labels, inds) if return_inds else (dets, labels)
