"""Annotation-file tools: the official subset and category-frequency scripts, and a validator.

* :func:`random_subset` = ``scripts/extract_random_images.py``: ``np.random.seed(seed)``, shuffle
  ``arange(N)``, keep the first ``int(percent / 100 * N)`` indices, in the **original** image order,
  with all their annotations and all categories (the output holds only ``images``, ``annotations``,
  ``categories``). Output name ``X[:-5] + '.{seed}@{percent}.json'`` with ``percent`` a float as in
  the script (``3.5`` → ``.1@3.5.json``, ``5`` → ``.1@5.0.json``).
* :func:`category_info` = ``scripts/get_cat_info.py``: the category list with ``image_count`` and
  ``instance_count`` added, saved as ``X[:-5] + '_cat_info.json'``.
* :func:`check_annotations` lists every problem of a COCO/LVIS annotation file and its images.
"""
from __future__ import annotations

import json
import os.path as osp
from collections import Counter

import numpy as np


def subset_filename(ann: str, seed: int, percent: float) -> str:
    return ann[:-5] + "." + str(seed) + "@" + str(float(percent)) + ".json"


def random_subset(data: dict, percent: float, seed: int) -> dict:
    np.random.seed(seed)
    images = data["images"]
    total = int(float(percent) / 100.0 * len(images))
    ind = np.arange(len(images))
    np.random.shuffle(ind)
    keep = set(ind[:total].tolist())
    kept_images = [img for i, img in enumerate(images) if i in keep]
    ids = {img["id"] for img in kept_images}
    anns = [a for a in data["annotations"] if a["image_id"] in ids]
    return {"images": kept_images, "annotations": anns, "categories": data["categories"]}


def category_info(data: dict) -> list:
    image_sets = {c["id"]: set() for c in data["categories"]}
    counts = {c["id"]: 0 for c in data["categories"]}
    for a in data["annotations"]:
        if a["category_id"] in image_sets:
            image_sets[a["category_id"]].add(a["image_id"])
            counts[a["category_id"]] += 1
    out = []
    for c in data["categories"]:
        c = dict(c)
        c["image_count"] = len(image_sets[c["id"]])
        c["instance_count"] = counts[c["id"]]
        out.append(c)
    return out


def cat_info_filename(ann: str) -> str:
    return ann[:-5] + "_cat_info.json"


def _num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and np.isfinite(x)


def check_annotations(ann_file: str, img_dir: str | None = None, check_images: bool = True,
                      lvis: bool | None = None) -> tuple:
    """Validate an annotation file (and its images under ``img_dir``).

    Returns ``(problems, notes)``: problems make the file unusable or wrong (missing fields, unknown
    ids, duplicate ids, boxes outside the image, missing/corrupt images, size mismatches); notes are
    legal but worth knowing (boxes the loader will drop, images without annotations, categories listed
    out of id order). Every entry says where.
    """
    problems, notes = [], []
    try:
        with open(ann_file, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return [f"{ann_file}: file not found"], notes
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        return [f"{ann_file}: not valid JSON ({e})"], notes
    if not isinstance(data, dict):
        return [f"{ann_file}: top level is not a JSON object"], notes
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            problems.append(f"{ann_file}: missing or non-list top-level field '{key}'")
    if problems:
        return problems, notes
    is_lvis = lvis if lvis is not None else any("frequency" in c for c in data["categories"])

    cats = {}
    for i, c in enumerate(data["categories"]):
        where = f"categories[{i}]"
        if "id" not in c or "name" not in c:
            problems.append(f"{where}: needs 'id' and 'name' (has {sorted(c)})")
            continue
        if c["id"] in cats:
            problems.append(f"{where}: duplicate category id {c['id']}")
        cats[c["id"]] = c
        if is_lvis and c.get("frequency") not in ("r", "c", "f"):
            problems.append(f"{where} ({c['name']!r}): LVIS 'frequency' must be r/c/f, got {c.get('frequency')!r}")
    names = Counter(c.get("name") for c in data["categories"])
    for n, k in names.items():
        if k > 1:
            problems.append(f"categories: name {n!r} is used by {k} categories")
    ids = [c["id"] for c in data["categories"] if "id" in c]
    if ids != sorted(ids):
        notes.append("categories are not listed in ascending id order (labels follow id order)")

    imgs = {}
    for i, img in enumerate(data["images"]):
        where = f"images[{i}]"
        lacking = [k for k in ("id", "width", "height") if k not in img]
        if "file_name" not in img and "coco_url" not in img:
            lacking.append("file_name")
        if lacking:
            problems.append(f"{where}: missing field(s) {lacking}")
            continue
        if img["id"] in imgs:
            problems.append(f"{where}: duplicate image id {img['id']}")
        if not (_num(img["width"]) and _num(img["height"]) and img["width"] > 0 and img["height"] > 0):
            problems.append(f"{where} (id {img['id']}): bad size {img['width']}x{img['height']}")
        imgs[img["id"]] = img
        if is_lvis:
            for k in ("neg_category_ids", "not_exhaustive_category_ids"):
                if not isinstance(img.get(k), list):
                    problems.append(f"{where} (id {img['id']}): LVIS field '{k}' missing")
                else:
                    bad = [c for c in img[k] if c not in cats]
                    if bad:
                        problems.append(f"{where} (id {img['id']}): {k} has unknown category ids {bad[:5]}")

    ann_ids, with_ann = set(), set()
    for i, a in enumerate(data["annotations"]):
        where = f"annotations[{i}] (id {a.get('id')})"
        lacking = [k for k in ("id", "image_id", "category_id", "bbox") if k not in a]
        if lacking:
            problems.append(f"{where}: missing field(s) {lacking}")
            continue
        if a["id"] in ann_ids:
            problems.append(f"{where}: duplicate annotation id")
        ann_ids.add(a["id"])
        if a["image_id"] not in imgs:
            problems.append(f"{where}: unknown image_id {a['image_id']}")
            continue
        if a["category_id"] not in cats:
            problems.append(f"{where}: unknown category_id {a['category_id']}")
        with_ann.add(a["image_id"])
        b = a["bbox"]
        if not (isinstance(b, list) and len(b) == 4 and all(_num(v) for v in b)):
            problems.append(f"{where}: bbox must be 4 numbers [x, y, w, h], got {b!r}")
            continue
        x, y, w, h = b
        img = imgs[a["image_id"]]
        if w < 0 or h < 0:
            problems.append(f"{where}: negative bbox size {b}")
        elif x >= img["width"] or y >= img["height"] or x + w <= 0 or y + h <= 0:
            problems.append(f"{where}: bbox {b} lies outside image {a['image_id']} ({img['width']}x{img['height']})")
        elif x < -1 or y < -1 or x + w > img["width"] + 1 or y + h > img["height"] + 1:
            notes.append(f"{where}: bbox {b} crosses the border of image {a['image_id']} "
                         f"({img['width']}x{img['height']})")
        if w < 1 or h < 1 or a.get("area", w * h) <= 0:
            notes.append(f"{where}: box {b} (area {a.get('area')}) is dropped by the loader (w/h < 1 or area <= 0)")
        if "area" not in a:
            notes.append(f"{where}: no 'area' (evaluation uses it for the size ranges)")
    empty = [i for i in imgs if i not in with_ann]
    if empty:
        notes.append(f"{len(empty)} image(s) have no annotation (dropped in training), e.g. ids {empty[:5]}")

    if check_images and img_dir is not None:
        from .transforms import ImageLoadError, read_image

        for img in imgs.values():
            name = img.get("file_name") or img["coco_url"].replace("http://images.cocodataset.org/", "")
            path = osp.join(img_dir, name)
            try:
                arr = read_image(path)
            except ImageLoadError as e:
                problems.append(f"image id {img['id']}: {e}")
                continue
            if arr.shape[:2] != (img["height"], img["width"]):
                problems.append(f"image id {img['id']}: {path} is {arr.shape[1]}x{arr.shape[0]} but the json says "
                                f"{img['width']}x{img['height']}")
    return problems, notes
