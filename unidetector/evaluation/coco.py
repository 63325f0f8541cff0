"""COCO bbox AP with pycocotools (mmdet 2.18 ``CocoDataset.evaluate(metric='bbox')``)."""
from __future__ import annotations

import contextlib
import copy
import io

import numpy as np

COCO_METRICS = ("mAP", "mAP_50", "mAP_75", "mAP_s", "mAP_m", "mAP_l")


def _gt_api(gt):
    from pycocotools.coco import COCO

    if isinstance(gt, COCO):
        return gt
    api = COCO()
    if isinstance(gt, (str, bytes)) or hasattr(gt, "__fspath__"):
        import json

        with open(gt) as f:
            gt = json.load(f)
    api.dataset = copy.deepcopy(gt)
    with contextlib.redirect_stdout(io.StringIO()):
        api.createIndex()
    return api


def coco_bbox_eval(gt, dets, img_ids=None, cat_ids=None, iou_thrs=None, max_dets=(100, 300, 1000),
                   classwise=False, class_names=None, verbose=False) -> dict:
    """COCO bbox AP of ``dets`` (COCO result dicts) against ``gt`` (json path, dict or ``COCO``).

    Same settings as mmdet: ``params.maxDets = list(max_dets)`` (mmdet's ``proposal_nums``), image and
    category ids of the dataset. Returns ``mAP, mAP_50, mAP_75, mAP_s, mAP_m, mAP_l`` (and
    ``AP_<class name>`` with ``classwise``); an empty result list gives zeros.
    """
    from pycocotools.cocoeval import COCOeval

    gt_api = _gt_api(gt)
    if len(dets) == 0:
        return {k: 0.0 for k in COCO_METRICS}
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        dt_api = gt_api.loadRes(copy.deepcopy(list(dets)))
        ev = COCOeval(gt_api, dt_api, "bbox")
        ev.params.catIds = list(cat_ids) if cat_ids is not None else sorted(gt_api.getCatIds())
        ev.params.imgIds = list(img_ids) if img_ids is not None else sorted(gt_api.getImgIds())
        ev.params.maxDets = list(max_dets)
        if iou_thrs is not None:
            ev.params.iouThrs = np.asarray(iou_thrs, dtype=np.float64)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    if verbose:
        print(log.getvalue())
    out = {k: float(ev.stats[i]) for i, k in enumerate(COCO_METRICS)}
    if classwise:
        precisions = ev.eval["precision"]  # (iou, recall, cls, area, maxdet)
        names = class_names or [str(c) for c in ev.params.catIds]
        for k, name in enumerate(names):
            p = precisions[:, :, k, 0, -1]
            p = p[p > -1]
            out[f"AP_{name}"] = float(np.mean(p)) if p.size else float("nan")
    return out
