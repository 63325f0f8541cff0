"""Paired bootstrap over test images for LVIS-style bbox AP (AP, AP50, AP75, APr, APc, APf).

Re-running :func:`~unidetector.evaluation.lvis.lvis_bbox_eval` per resample is too slow, so the LVIS matching
is computed once per result set (:func:`match_detections`: per-image cap to ``max_dets`` first, federated
filter, greedy matching at IoU .50:.05:.95 exactly as pycocotools/LVIS, crowd and not-exhaustive ignores),
and a resample only re-weights images: an image drawn twice counts twice. Per category, precision and
recall are accumulated with COCO's rules (stable sort by score, precision envelope, 101 recall points;
categories without ground truth in the resample are left out), only at the detections that are a true
positive at some IoU threshold: the precision envelope and the recall steps live there, and the weighted
false positives before them are one matrix product ``counts (B, N) @ cumulative counts (N, T*U)``.

The full test set (every image once) gives ``lvis_bbox_eval``'s numbers; ``tests/test_bootstrap.py`` checks
that, a resample with duplicates against duplicating those images under new ids, and the interval against a
direct loop of ``lvis_bbox_eval``. Ties in score between detections of *different* images are broken by image
order (sorted ids) in every resample, where duplicated images under new ids would order them by the new ids.
"""
from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from .lvis import _load_gt, limit_dets_per_image

IOU_THRS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)  # pycocotools' params
REC_THRS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
AREA_ALL = (0.0 ** 2, 1e5 ** 2)
METRICS = ("AP", "AP50", "AP75", "APr", "APc", "APf")


@dataclass
class GroundTruth:
    """An LVIS-format ground truth as arrays. ``N`` images (sorted ids), ``K`` categories (sorted ids).

    ``n_gt (N, K)``: non-ignored objects; ``allowed (N, K)``: categories whose detections are evaluated on
    the image (annotated or in ``neg_category_ids``); ``not_exhaustive (N, K)``; ``frequency (K,)`` 'r'/'c'/'f';
    ``objects``: ``{(image index, category index): (boxes (G, 4) xywh, crowd (G,), ignore (G,))}``, the
    non-ignored objects first (LVIS/pycocotools order).
    """
    image_ids: np.ndarray
    category_ids: np.ndarray
    frequency: np.ndarray
    n_gt: np.ndarray
    allowed: np.ndarray
    not_exhaustive: np.ndarray
    objects: dict

    @classmethod
    def from_lvis(cls, gt) -> "GroundTruth":
        gt = _load_gt(gt)
        image_ids = np.array(sorted({im["id"] for im in gt["images"]}))
        cats = sorted(gt["categories"], key=lambda c: c["id"])
        category_ids = np.array([c["id"] for c in cats])
        ii = {int(i): n for n, i in enumerate(image_ids)}
        ci = {int(c): k for k, c in enumerate(category_ids)}
        shape = (len(image_ids), len(category_ids))
        n_gt, allowed, nel = np.zeros(shape), np.zeros(shape, bool), np.zeros(shape, bool)
        for im in gt["images"]:
            n = ii[im["id"]]
            allowed[n, [ci[c] for c in im.get("neg_category_ids", ()) if c in ci]] = True
            nel[n, [ci[c] for c in im.get("not_exhaustive_category_ids", ()) if c in ci]] = True
        groups = {}
        for a in gt["annotations"]:
            if a["image_id"] not in ii or a["category_id"] not in ci:
                continue
            key = ii[a["image_id"]], ci[a["category_id"]]
            w, h = a["bbox"][2], a["bbox"][3]
            area = a.get("area", w * h)
            crowd = bool(a.get("iscrowd", 0))
            groups.setdefault(key, []).append((a["bbox"], crowd, crowd or not AREA_ALL[0] <= area <= AREA_ALL[1]))
        objects = {}
        for key, objs in groups.items():
            objs = [objs[j] for j in np.argsort([o[2] for o in objs], kind="mergesort")]  # ignored last
            boxes = np.array([o[0] for o in objs], np.float64).reshape(-1, 4)
            crowd, ignore = np.array([o[1] for o in objs]), np.array([o[2] for o in objs])
            objects[key] = (boxes, crowd, ignore)
            allowed[key] = True
            n_gt[key] = np.count_nonzero(~ignore)
        return cls(image_ids, category_ids, np.array([c.get("frequency", "") for c in cats]), n_gt, allowed, nel,
                   objects)


@dataclass
class Matching:
    """LVIS matching of one result set, detections in accumulation order (category, score descending,
    image, order in the result list). ``D`` evaluated detections, ``T`` IoU thresholds.

    ``image, category (D,)``: indices into :class:`GroundTruth`; ``score (D,)``; ``tp (T, D)``: matched a
    non-ignored object; ``ignored (T, D)``: matched an ignored (crowd) object, or unmatched on an image where its
    category is not exhaustively annotated (neither TP nor FP).
    """
    image: np.ndarray
    category: np.ndarray
    score: np.ndarray
    tp: np.ndarray
    ignored: np.ndarray

    @property
    def fp(self) -> np.ndarray:
        return ~self.tp & ~self.ignored


def box_iou_xywh(dets: np.ndarray, gts: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """pycocotools' ``bbIou``: ``(n, 4)`` × ``(g, 4)`` xywh boxes → ``(n, g)``; a crowd object's union is the
    detection's area. Same float operations in the same order, so equal values to the bit."""
    dx, dy, dw, dh = (dets[:, i:i + 1] for i in range(4))
    gx, gy, gw, gh = (gts[None, :, i] for i in range(4))
    w = np.minimum(dw + dx, gw + gx) - np.maximum(dx, gx)
    h = np.minimum(dh + dy, gh + gy) - np.maximum(dy, gy)
    inter = np.where((w > 0) & (h > 0), w * h, 0.0)
    da, ga = dw * dh, gw * gh
    union = np.where(crowd[None, :], da, da + ga - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(inter > 0, inter / union, 0.0)


def _greedy_match(ious: np.ndarray, crowd: np.ndarray, ignore: np.ndarray, thrs: np.ndarray):
    """COCO's greedy matching of ``n`` detections (score order) to ``g`` objects (non-ignored first) at every
    threshold: each detection takes the unmatched object of highest IoU ≥ the threshold (the last one on ties),
    a non-ignored one if any qualifies. Returns ``matched, matched_ignored`` ``(T, n)`` bool."""
    T, (n, g) = len(thrs), ious.shape
    matched, matched_ig = np.zeros((T, n), bool), np.zeros((T, n), bool)
    taken = np.zeros((T, g), bool)
    thr = np.minimum(thrs, 1 - 1e-10)[:, None]
    exhaustible = not crowd.any()
    for d in np.flatnonzero(ious.max(axis=1, initial=0.0) >= thr.min()):
        ok = ~taken & (ious[d][None, :] >= thr)
        regular = ok & ~ignore[None, :]
        ok = np.where(regular.any(axis=1, keepdims=True), regular, ok)
        best = np.where(ok, ious[d][None, :], -1.0)
        hit = ok & (best == best.max(axis=1, keepdims=True))
        rows = np.flatnonzero(hit.any(axis=1))
        if rows.size == 0:
            continue
        cols = g - 1 - np.argmax(hit[rows, ::-1], axis=1)
        matched[rows, d] = True
        matched_ig[rows, d] = ignore[cols]
        taken[rows, cols] = ~crowd[cols]
        if exhaustible and taken.all():
            break
    return matched, matched_ig


def match_detections(gt: GroundTruth, dets, max_dets: int | None = 300, iou_thrs=IOU_THRS) -> Matching:
    """LVIS evaluation's per-detection outcome of ``dets`` (COCO-style result dicts): the ``max_dets``
    highest-scoring per image first (``None``: no cap), then detections of categories neither annotated nor
    negative on their image are dropped, then greedy matching per (image, category) at each of ``iou_thrs``."""
    dets = limit_dets_per_image(dets, max_dets if max_dets is not None else -1)
    ii = {int(i): n for n, i in enumerate(gt.image_ids)}
    ci = {int(c): k for k, c in enumerate(gt.category_ids)}
    keep = [j for j, d in enumerate(dets) if d["image_id"] in ii and d["category_id"] in ci]
    img = np.array([ii[dets[j]["image_id"]] for j in keep], np.int64)
    cat = np.array([ci[dets[j]["category_id"]] for j in keep], np.int64)
    score = np.array([dets[j]["score"] for j in keep], np.float64)
    boxes = np.array([dets[j]["bbox"] for j in keep], np.float64).reshape(-1, 4)
    ok = gt.allowed[img, cat] if len(keep) else np.zeros(0, bool)
    img, cat, score, boxes = img[ok], cat[ok], score[ok], boxes[ok]
    order = np.lexsort((np.arange(len(score)), img, -score, cat))  # accumulation order (stable by score)
    img, cat, score, boxes = img[order], cat[order], score[order], boxes[order]
    T = len(iou_thrs)
    tp, ignored = np.zeros((T, len(score)), bool), np.zeros((T, len(score)), bool)
    by_pair = np.lexsort((np.arange(len(score)), img, cat))  # per (image, category), score order kept
    pair = cat[by_pair] * len(gt.image_ids) + img[by_pair]
    starts = np.flatnonzero(np.r_[True, pair[1:] != pair[:-1]]) if len(pair) else np.zeros(0, np.int64)
    for s, e in zip(starts, np.r_[starts[1:], len(pair)]):
        idx = by_pair[s:e]
        key = int(img[idx[0]]), int(cat[idx[0]])
        if key not in gt.objects:
            continue
        g_boxes, crowd, g_ignore = gt.objects[key]
        m, m_ig = _greedy_match(box_iou_xywh(boxes[idx], g_boxes, crowd), crowd, g_ignore, np.asarray(iou_thrs))
        tp[:, idx], ignored[:, idx] = m & ~m_ig, m_ig
    area = boxes[:, 2] * boxes[:, 3]
    unmatched_ignored = gt.not_exhaustive[img, cat] | (area < AREA_ALL[0]) | (area > AREA_ALL[1])
    ignored |= ~tp & ~ignored & unmatched_ignored[None, :]
    return Matching(img, cat, score, tp, ignored)


def true_positives(gt, dets, cat_ids, iou: float = 0.5, max_dets: int | None = 300) -> int:
    """Detections of ``dets`` that match an object of a category in ``cat_ids`` at IoU ≥ ``iou`` under LVIS's
    rules, after the per-image cap to ``max_dets`` (``None``: no cap)."""
    g = gt if isinstance(gt, GroundTruth) else GroundTruth.from_lvis(gt)
    m = match_detections(g, dets, max_dets=max_dets, iou_thrs=np.array([iou], np.float64))
    wanted = np.isin(g.category_ids[m.category], np.asarray(list(cat_ids)))
    return int(np.count_nonzero(m.tp[0] & wanted))


class _Accumulator:
    """Per-category AP at every IoU threshold of one :class:`Matching` for any image weighting.

    Only the ``U`` detections that are a true positive at some threshold are visited: they carry every recall
    step and every maximum of the precision envelope (a false positive lowers precision, an image weight of 0
    repeats the previous point). ``tp_before / fp_before (N, T*U)`` count, per image, the true/false positives
    at or before each of them in its category's ranking.
    """

    def __init__(self, m: Matching, n_images: int, n_cats: int):
        T = m.tp.shape[0]
        visit = np.flatnonzero(m.tp.any(axis=0))
        self.T, self.K, self.U = T, n_cats, len(visit)
        self.cat = m.category[visit]
        self.first = np.r_[True, self.cat[1:] != self.cat[:-1]] if self.U else np.zeros(0, bool)
        self.starts = np.flatnonzero(self.first)
        self.cats_visited = self.cat[self.starts]

        def counts_before(flags):  # (T, D) → (N, T*U): per image, flagged detections at or before each visit
            out = np.zeros((n_images, T, self.U), np.float32)
            if self.U:
                for t in range(T):
                    d = np.flatnonzero(flags[t])
                    u = np.searchsorted(visit, d)  # first visited detection at or after d
                    same = u < self.U
                    same[same] &= self.cat[u[same]] == m.category[d[same]]
                    np.add.at(out, (m.image[d[same]], t, u[same]), 1.0)
                out = np.cumsum(out, axis=2)
                base = np.concatenate([np.zeros((n_images, T, 1), np.float32), out[:, :, self.starts[1:] - 1]], 2)
                out -= np.repeat(base, np.diff(np.r_[self.starts, self.U]), axis=2)
            return out.reshape(n_images, T * self.U)

        self.tp_before, self.fp_before = counts_before(m.tp), counts_before(m.fp)
        self.steps = [s for s in 2 ** np.arange(int(np.ceil(np.log2(max(self.U, 2)))))]

    def ap(self, counts: np.ndarray, n_gt: np.ndarray) -> np.ndarray:
        """``counts (B, N)`` image weights, ``n_gt (B, K)`` objects → AP ``(B, T, K)``, NaN without objects."""
        B = len(counts)
        out = np.zeros((B, self.T, self.K))
        if self.U:
            c = counts.astype(np.float32)
            tp = (c @ self.tp_before).astype(np.float64).reshape(B, self.T, self.U)
            fp = (c @ self.fp_before).astype(np.float64).reshape(B, self.T, self.U)
            with np.errstate(divide="ignore", invalid="ignore"):
                recall = tp / n_gt[:, None, self.cat]
            env = tp / (tp + fp + np.spacing(1))
            for s in self.steps:  # precision envelope: max over the rest of the category's ranking (doubling)
                same = self.cat[s:] == self.cat[:-s]
                env[:, :, :-s] = np.where(same, np.maximum(env[:, :, :-s], env[:, :, s:]), env[:, :, :-s])
            reached = np.searchsorted(REC_THRS, np.nan_to_num(recall, nan=0.0), side="right")
            new = np.diff(reached, axis=2, prepend=0)
            new[:, :, self.first] = reached[:, :, self.first]
            out[:, :, self.cats_visited] = np.add.reduceat(env * new, self.starts, axis=2) / len(REC_THRS)
        out[np.broadcast_to((n_gt == 0)[:, None, :], out.shape)] = np.nan
        return out


def _summary(ap: np.ndarray, frequency: np.ndarray, metrics) -> dict:
    """AP ``(B, T, K)`` → ``{metric: (B,)}``: means over the categories with objects (NaN when none)."""
    t50, t75 = (int(np.argmin(np.abs(IOU_THRS - v))) for v in (0.5, 0.75))
    per = {"AP": ap.mean(axis=1), "AP50": ap[:, t50], "AP75": ap[:, t75]}  # NaN: no objects
    out = {}
    for name in metrics:
        x = per["AP"]
        if name in ("AP50", "AP75"):
            x = per[name]
        elif name in ("APr", "APc", "APf"):
            x = x[:, frequency == name[-1]]
        elif name != "AP":
            raise ValueError(f"bootstrap_lvis: unknown metric {name!r}; choose from {METRICS}")
        valid = np.isfinite(x)
        n = valid.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[name] = np.where(n > 0, np.where(valid, x, 0.0).sum(axis=1) / np.maximum(n, 1), np.nan)
    return out


def resample_counts(n_images: int, n_boot: int, seed: int = 0) -> np.ndarray:
    """``(n_boot, n_images)`` how often each image is drawn in each resample (``n_images`` draws with
    replacement, ``np.random.default_rng(seed).integers``); :func:`resample_indices` gives the draws."""
    idx = resample_indices(n_images, n_boot, seed)
    rows = np.repeat(np.arange(n_boot), n_images)
    counts = np.zeros((n_boot, n_images), np.int64)
    np.add.at(counts, (rows, idx.ravel()), 1)
    return counts


def resample_indices(n_images: int, n_boot: int, seed: int = 0) -> np.ndarray:
    """``(n_boot, n_images)`` image indices (into the sorted image ids) of each bootstrap resample."""
    return np.random.default_rng(seed).integers(0, n_images, size=(n_boot, n_images))


def resampled_metrics(gt: GroundTruth, dets, counts: np.ndarray, metrics=METRICS, max_dets: int | None = 300,
                      chunk: int | None = None) -> dict:
    """LVIS metrics of ``dets`` on image multisets: ``counts (B, N)`` (row of ones: the full test set) →
    ``{metric: (B,)}`` in [0, 1], NaN where no category of the group has objects in the resample."""
    acc = _Accumulator(match_detections(gt, dets, max_dets=max_dets), len(gt.image_ids), len(gt.category_ids))
    chunk = chunk or max(1, int(4e6 // max(1, acc.T * acc.U)))
    parts = []
    for s in range(0, len(counts), chunk):
        c = np.asarray(counts[s:s + chunk], np.float64)
        parts.append(_summary(acc.ap(c, c @ gt.n_gt), gt.frequency, metrics))
    return {k: np.concatenate([p[k] for p in parts]) for k in metrics}


def bootstrap_lvis(gt, runs: dict, pairs, n_boot: int = 1000, seed: int = 0, metrics=("AP", "APr", "APc", "APf"),
                   level: float = 0.95, max_dets: int | None = 300) -> dict:
    """Paired percentile bootstrap over test images of LVIS-style AP for several result sets of one test set.

    ``gt``: LVIS json path or dict; ``runs``: ``{name: [COCO-style result dicts]}``; ``pairs``: ``[(a, b)]``
    for the differences ``b - a``. Every run is scored on the same ``n_boot`` resamples (paired). Returns
    ``{"n_boot", "n_images", "level", "seed", "runs": {name: {metric: value}}, "intervals": {name: {metric:
    [low, high]}}, "differences": {"b - a": {metric: {"value", "low", "high"}}}}``: values on the full test set
    (= ``lvis_bbox_eval``, in [0, 1]; NaN for a frequency group without objects), intervals at ``level`` over the
    resamples where the metric is defined: percentile intervals of the paired differences, normal intervals
    (value ± z·bootstrap s.d.) of each run's metrics (see ``normal_interval``).
    """
    g = GroundTruth.from_lvis(gt)
    missing = [n for pair in pairs for n in pair if n not in runs]
    if missing:
        raise KeyError(f"bootstrap_lvis: pairs name runs that are not given: {sorted(set(missing))}")
    counts = np.vstack([np.ones((1, len(g.image_ids)), np.int64), resample_counts(len(g.image_ids), n_boot, seed)])
    per_run = {name: resampled_metrics(g, dets, counts, metrics, max_dets) for name, dets in runs.items()}
    q = [100 * (1 - level) / 2, 100 * (1 + level) / 2]

    def interval(x):
        x = x[np.isfinite(x)]
        return [float(v) for v in np.percentile(x, q)] if x.size else [float("nan")] * 2

    z = NormalDist().inv_cdf((1 + level) / 2)

    def normal_interval(x):
        """``θ ± z·sd`` of the resampled values: resampled AP of one run is biased (upwards here, when most
        classes have one or two test objects: a class left out of a resample no longer counts), so its
        percentile interval can miss the estimate; the spread is what an error bar of one run should show."""
        rest = x[1:][np.isfinite(x[1:])]
        if not rest.size or not np.isfinite(x[0]):
            return [float("nan")] * 2
        sd = float(np.std(rest, ddof=1)) if rest.size > 1 else 0.0
        return [float(x[0]) - z * sd, float(x[0]) + z * sd]

    out = {"n_boot": int(n_boot), "n_images": len(g.image_ids), "level": level, "seed": seed,
           "runs": {n: {k: float(v[k][0]) for k in metrics} for n, v in per_run.items()},
           "intervals": {n: {k: normal_interval(v[k]) for k in metrics} for n, v in per_run.items()},
           "differences": {}}
    for a, b in pairs:
        diff = {}
        for k in metrics:
            d = per_run[b][k] - per_run[a][k]
            lo, hi = interval(d[1:])
            diff[k] = {"value": float(d[0]), "low": lo, "high": hi}
        out["differences"][f"{b} - {a}"] = diff
    return out
