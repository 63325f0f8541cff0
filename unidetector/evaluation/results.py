"""Detection results: mmdet pkl format ↔ COCO/LVIS result JSON.

mmdet format: a list over images (dataset order) of a list over classes (label order) of float32
(n, 5) ``[x1, y1, x2, y2, score]`` arrays. Proposal results are one (n, 5) array per image.
COCO/LVIS JSON: ``{'image_id', 'category_id', 'bbox': [x, y, w, h], 'score'}`` dicts (no ``+1``).
"""
from __future__ import annotations

import json
import pickle

import numpy as np


def xyxy_to_xywh(b) -> list:
    return [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]


def results_to_coco_json(results, img_ids, cat_ids) -> list:
    """mmdet results → COCO result dicts. Proposal results (one array per image) get category 1."""
    if len(results) != len(img_ids):
        raise ValueError(f"{len(results)} results for {len(img_ids)} images")
    out = []
    for img_id, res in zip(img_ids, results):
        per_class = [res] if isinstance(res, np.ndarray) else res
        if not isinstance(res, np.ndarray) and len(per_class) != len(cat_ids):
            raise ValueError(f"image {img_id}: {len(per_class)} class entries but {len(cat_ids)} categories")
        for label, boxes in enumerate(per_class):
            cat = 1 if isinstance(res, np.ndarray) else cat_ids[label]
            for b in np.asarray(boxes, dtype=np.float64).reshape(-1, 5):
                out.append(dict(image_id=int(img_id), bbox=xyxy_to_xywh(b), score=float(b[4]),
                                category_id=int(cat)))
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
