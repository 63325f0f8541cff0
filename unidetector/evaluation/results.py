"""Detection results: mmdet pkl format ↔ COCO/LVIS result JSON.

mmdet format: a list over images (dataset order) of a list over classes (label order) of float32
(n, 5) ``[x1, y1, x2, y2, score]`` arrays. Proposal results are one (n, 5) array per image.
COCO/LVIS JSON: ``{'image_id', 'category_id', 'bbox': [x, y, w, h], 'score'}`` dicts (no ``+1``).
"""
from __future__ import annotations

import json
import pickle

import numpy as np


def results_to_coco_json(results, img_ids, cat_ids) -> list:
    """mmdet results → COCO result dicts. Proposal results (one array per image) get category 1.

    Per image, the class arrays are stacked and converted at once (float64, as ``float()`` of each value):
    an uncapped LVIS-sized result holds millions of detections."""
    if len(results) != len(img_ids):
        raise ValueError(f"{len(results)} results for {len(img_ids)} images")
    out = []
    for img_id, res in zip(img_ids, results):
        if isinstance(res, np.ndarray):
            per_class, cats = [res], [1]
        else:
            per_class, cats = res, cat_ids
            if len(per_class) != len(cat_ids):
                raise ValueError(f"image {img_id}: {len(per_class)} class entries but {len(cat_ids)} categories")
        arrays = [np.asarray(boxes, dtype=np.float64).reshape(-1, 5) for boxes in per_class]
        dets = np.concatenate(arrays) if arrays else np.zeros((0, 5))
        if not len(dets):
            continue
        labels = np.repeat(np.asarray(cats, np.int64), [len(a) for a in arrays]).tolist()
        xywh = np.concatenate([dets[:, :2], dets[:, 2:4] - dets[:, :2]], 1).tolist()
        img = int(img_id)
        out.extend(dict(image_id=img, bbox=b, score=s, category_id=c)
                   for b, s, c in zip(xywh, dets[:, 4].tolist(), labels))
    return out


def coco_json_to_results(dets, img_ids, cat_ids) -> list:
    """COCO result dicts → mmdet results (sorted by score within each class)."""
    img_index = {int(i): k for k, i in enumerate(img_ids)}
    cat_index = {int(c): k for k, c in enumerate(cat_ids)}
    buckets = [[[] for _ in cat_ids] for _ in img_ids]
    for d in dets:
        try:
            k, c = img_index[int(d["image_id"])], cat_index[int(d["category_id"])]
        except KeyError as e:
            raise ValueError(f"detection {d} refers to an unknown image/category id {e}") from None
        x, y, w, h = d["bbox"]
        buckets[k][c].append([x, y, x + w, y + h, d["score"]])
    out = []
    for per_img in buckets:
        row = []
        for boxes in per_img:
            a = np.asarray(boxes, dtype=np.float32).reshape(-1, 5)
            row.append(a[np.argsort(-a[:, 4], kind="stable")])
        out.append(row)
    return out


def load_results(path: str):
    """Results from a ``.pkl`` (mmdet list) or ``.json`` (COCO result list)."""
    if str(path).endswith(".json"):
        with open(path) as f:
            return json.load(f)
    with open(path, "rb") as f:
        return pickle.load(f)


def save_results(results, path: str) -> None:
    if str(path).endswith(".json"):
        with open(path, "w") as f:
            json.dump(results, f)
    else:
        with open(path, "wb") as f:
            pickle.dump(results, f, protocol=pickle.HIGHEST_PROTOCOL)
