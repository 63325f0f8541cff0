"""LVIS bbox AP (AP, AP50, AP75, APs, APm, APl, APr, APc, APf) with faster-coco-eval's LVIS mode.

Equivalent to the LVIS API (``LVISResults(gt, dets, max_dets=300)`` + ``LVISEval(iou_type='bbox')``):
detections are first cut to the ``max_dets`` highest-scoring per image (stable sort, as
``LVISResults.limit_dets_per_image``); then federated evaluation: a detection of a category that is
neither annotated nor in ``neg_category_ids`` of its image is dropped, unmatched detections of
``not_exhaustive_category_ids`` are ignored, and APr/APc/APf average over categories whose
``frequency`` is r/c/f. ``tests/test_eval_lvis.py`` checks equality with the ``lvis`` package.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
from collections import defaultdict

LVIS_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf")
_FCE_KEYS = ("AP_all", "AP_50", "AP_75", "AP_small", "AP_medium", "AP_large", "APr", "APc", "APf")


def limit_dets_per_image(dets, max_dets: int) -> list:
    """Keep the ``max_dets`` highest-scoring detections of each image (LVIS API rule)."""
    if max_dets is None or max_dets < 0:
        return list(dets)
    per_img = defaultdict(list)
    for d in dets:
        per_img[d["image_id"]].append(d)
    out = []
    for anns in per_img.values():
        if len(anns) > max_dets:
            anns = sorted(anns, key=lambda a: a["score"], reverse=True)[:max_dets]
        out.extend(anns)
    return out


def _load_gt(gt) -> dict:
    if isinstance(gt, dict):
        return gt
    with open(gt) as f:
        return json.load(f)


def lvis_bbox_eval(gt, dets, max_dets: int = 300, verbose: bool = False) -> dict:
    """LVIS bbox metrics of ``dets`` (COCO-style result dicts) against ``gt`` (LVIS json path or dict)."""
    from faster_coco_eval import COCO, COCOeval_faster

    gt = _load_gt(gt)
    missing = [k for k in ("neg_category_ids", "not_exhaustive_category_ids") if gt["images"] and k not in gt["images"][0]]
    if missing or any("frequency" not in c for c in gt["categories"]):
        raise ValueError(f"LVIS evaluation needs images[*].{missing or 'neg/not_exhaustive_category_ids'} and "
                         f"categories[*].frequency; this annotation is not in LVIS format")
    dets = limit_dets_per_image(copy.deepcopy(list(dets)), max_dets)
    logging.getLogger("faster_coco_eval").setLevel(logging.WARNING)
    quiet = (lambda *a, **k: None) if not verbose else print
    with contextlib.redirect_stdout(io.StringIO()):
        gt_api = COCO(copy.deepcopy(gt))
        gt_api.print_function = quiet
        if not dets:
            return {k: 0.0 for k in LVIS_METRICS}
        dt_api = gt_api.loadRes(dets)
        ev = COCOeval_faster(gt_api, dt_api, "bbox", lvis_style=True, print_function=quiet)
        ev.params.maxDets = [max_dets if max_dets and max_dets > 0 else 10 ** 9]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = ev.stats_as_dict
    return {ours: float(stats[theirs]) for ours, theirs in zip(LVIS_METRICS, _FCE_KEYS)}
