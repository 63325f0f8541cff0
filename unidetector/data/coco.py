"""COCO-format detection datasets (mmdet 2.x ``CocoDataset`` semantics + UniDetector options).

``CocoDataset`` reads any COCO-style json (COCO, Objects365 v2, OpenImages challenge-2019 converted to
COCO style, the synthetic world). Behaviour, as in the official code (SPEC §3, §8.3):

* ``classes`` (names) must match the json category names *exactly* (Objects365 v2 names have trailing
  spaces, e.g. ``'Formula 1 '``). A name that is missing raises an error listing it and close matches;
  nothing is dropped silently. ``classes=None`` takes every category of the json (for real COCO this
  equals the 80 COCO classes).
* Label ``i`` is the ``i``-th selected category **in ascending category-id order**, the row order of
  the text-embedding ``.npy`` files (:func:`check_embedding_rows`). The official code takes json order,
  which is the same for every json it was used with; id order keeps labels and embeddings aligned even
  when a json lists categories out of order.
* ``class_agnostic=True`` maps every category to label 0 (stage 1). ``dataset_id`` goes into every
  image's meta (the partitioned head picks its classifier with it).
* Annotations (:meth:`CocoDataset.annotation_fate`): ``ignore`` ones skipped, boxes not overlapping
  the image, with ``area <= 0`` or ``w < 1`` or ``h < 1`` dropped, ``iscrowd`` boxes go to
  ``bboxes_ignore``. Boxes are ``[x, y, x + w, y + h]`` (no ``+1``). :mod:`unidetector.data.checks`
  counts what is dropped, per annotation file, before training or testing.
* Training (``test_mode=False``) drops images with min side < 32 and, with ``filter_empty_gt``,
  images with no annotation of a selected category (mmdet rule: a crowd-only image counts as
  non-empty). Proposals are loaded in the **unfiltered** image order and filtered with the same
  indices (:mod:`unidetector.data.proposals`).
"""
from __future__ import annotations

import contextlib
import difflib
import io
import json
import os
import os.path as osp

import numpy as np

from ..registry import DATASETS
from .proposals import align_proposals, load_proposals
from ..errors import UnidetError


class DatasetError(UnidetError, ValueError):
    """Bad dataset input (annotation file, class list, proposals, embeddings); says what and where."""


def load_json_file(path: str) -> dict:
    """Read an annotation json and check its top-level COCO fields; errors name the file."""
    if not osp.isfile(path):
        raise DatasetError(f"annotation file not found: {path}")
    try:
        with open(path, "r", encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a JSON object with 'images', 'annotations', 'categories'")
    missing = [k for k in ("images", "annotations", "categories") if k not in data]
    if missing:
        raise DatasetError(f"{path}: missing top-level field(s) {missing} (COCO format needs "
                           f"'images', 'annotations', 'categories')")
    for key, fields in (("images", ("id", "width", "height")), ("categories", ("id", "name")),
                        ("annotations", ("id", "image_id", "category_id", "bbox"))):
        for i, item in enumerate(data[key]):
            lacking = [f for f in fields if f not in item]
            if lacking:
                raise DatasetError(f"{path}: {key}[{i}] (id={item.get('id')!r}) lacks field(s) {lacking}")
    return data


def coco_api(data: dict):
    """A pycocotools ``COCO`` index over an already loaded dict (quietly)."""
    from pycocotools.coco import COCO

    api = COCO()
    api.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        api.createIndex()
    return api


def select_categories(categories: list, classes, ann_file: str = "<json>") -> list:
    """Category dicts selected by ``classes`` (exact names), sorted by id.

    Raises :class:`DatasetError` naming every requested class that the json lacks (with close
    matches, which catches trailing-space mismatches) and any name the json holds twice.
    """
    cats = sorted(categories, key=lambda c: c["id"])
    if classes is None:
        return cats
    if isinstance(classes, str):
        classes = load_class_names(classes)
    by_name: dict = {}
    for c in cats:
        by_name.setdefault(c["name"], []).append(c)
    wanted = list(classes)
    missing = [n for n in wanted if n not in by_name]
    if missing:
        names = list(by_name)
        hints = []
        for n in missing[:20]:
            close = difflib.get_close_matches(n, names, n=2, cutoff=0.8)
            hints.append(f"{n!r}" + (f" (json has {', '.join(map(repr, close))})" if close else ""))
        more = f" and {len(missing) - 20} more" if len(missing) > 20 else ""
        raise DatasetError(f"{ann_file}: {len(missing)} of {len(wanted)} classes are not categories of the "
                           f"json (names must match exactly, incl. spaces): {', '.join(hints)}{more}")
    dup = [n for n in wanted if len(by_name[n]) > 1]
    if dup:
        raise DatasetError(f"{ann_file}: class name(s) {dup} match several category ids")
    if len(set(wanted)) != len(wanted):
        raise DatasetError(f"{ann_file}: the class list repeats names")
    chosen = {by_name[n][0]["id"] for n in wanted}
    return [c for c in cats if c["id"] in chosen]


def load_class_names(path: str) -> list:
    """Class names from a text file (:func:`unidetector.text.vocab.read_class_names`: one per line, verbatim
    except the line end; blank lines skipped)."""
    from ..text.vocab import read_class_names

    return read_class_names(path)


def check_embedding_rows(embedding, num_classes: int, *, embedding_file: str = "<array>",
                         dataset: str = "<dataset>", class_names=None) -> np.ndarray:
    """Return the (C, D) float32 embedding, checking C equals the dataset's class count.

    Rows are in category-id order, the same order as the dataset labels. Files are read by
    :func:`unidetector.text.embeddings.load_embeddings` (missing/unreadable files and NaN/inf rows are
    its :class:`~unidetector.text.embeddings.EmbeddingFileError`; ``class_names`` name a bad row).
    """
    from ..text.embeddings import load_embeddings

    if isinstance(embedding, (str, os.PathLike)):
        embedding_file = str(embedding)
    emb = load_embeddings(embedding if isinstance(embedding, (str, os.PathLike)) else np.asarray(embedding),
                          class_names=class_names)
    if emb.shape[0] != num_classes:
        raise DatasetError(f"text embedding {embedding_file} has {emb.shape[0]} rows but dataset {dataset} has "
                           f"{num_classes} classes (rows must be the classes in category-id order)")
    return emb


#: what loading does with an annotation that is not kept (``CocoDataset.annotation_fate``), report order
DROP_REASONS = ("unknown category", "unselected category", "ignore flag", "degenerate", "outside the image")


@DATASETS.register_module()
class CocoDataset:
    """COCO-style detection dataset (mmdet 2.18 ``CocoDataset`` + ``class_agnostic``/``dataset_id``).

    ``ds[i]`` returns the pipeline output for image ``i``; ``ds.data_infos[i]`` its image info,
    ``ds.get_ann_info(i)`` its parsed boxes, ``ds.proposals[i]`` its proposals (or ``None``).
    """

    CLASSES = None  # taken from the json (or ``classes``)
    MIN_SIZE = 32

    def __init__(self, ann_file, pipeline=(), classes=None, data_root=None, img_prefix="", seg_prefix=None,
                 proposal_file=None, test_mode=False, filter_empty_gt=True, class_agnostic=False,
                 dataset_id=None, file_client_args=None):
        self.data_root = data_root
        join = (lambda p: p if p is None or osp.isabs(p) or not data_root else osp.join(data_root, p))
        self.ann_file = join(ann_file)
        self.img_prefix = join(img_prefix) if img_prefix else (img_prefix or "")
        self.seg_prefix = join(seg_prefix)
        self.proposal_file = join(proposal_file)
        self.test_mode = test_mode
        self.filter_empty_gt = filter_empty_gt
        self.class_agnostic = class_agnostic
        self.dataset_id = dataset_id
        self.requested_classes = classes

        self.data_infos = self.load_annotations(self.ann_file)
        self.proposals = None
        if self.proposal_file is not None:
            raw = load_proposals(self.proposal_file)
            self.proposals = align_proposals(raw, len(self.data_infos), self.proposal_file, self.ann_file,
                                             image_infos=self.data_infos)
        if not test_mode:
            valid = self._filter_imgs()
            self.data_infos = [self.data_infos[i] for i in valid]
            if self.proposals is not None:
                self.proposals = [self.proposals[i] for i in valid]
            self.img_ids = [info["id"] for info in self.data_infos]
        self._set_group_flag()
        from .transforms import Compose
        self.pipeline = Compose(pipeline)

    # ------------------------------------------------------------------ loading
    def load_annotations(self, ann_file):
        data = load_json_file(ann_file)
        self.coco = coco_api(data)
        cats = select_categories(data["categories"], self.requested_classes, ann_file)
        self.categories = cats
        self.cat_ids = [c["id"] for c in cats]
        self.CLASSES = tuple(c["name"] for c in cats)
        self.cat2label = {cid: (0 if self.class_agnostic else i) for i, cid in enumerate(self.cat_ids)}
        self.img_ids = [img["id"] for img in data["images"]]
        infos = []
        for img in data["images"]:
            info = dict(img)
            info["filename"] = self._filename(img, ann_file)
            infos.append(info)
        if len({i["id"] for i in infos}) != len(infos):
            raise DatasetError(f"{ann_file}: duplicate image ids")
        return infos

    def _filename(self, img: dict, ann_file: str) -> str:
        if "file_name" not in img:
            raise DatasetError(f"{ann_file}: image id {img['id']} has no 'file_name'")
        return img["file_name"]

    @property
    def num_classes(self) -> int:
        return 1 if self.class_agnostic else len(self.cat_ids)

    def __len__(self):
        return len(self.data_infos)

    def get_ann_info(self, idx):
        img_id = self.data_infos[idx]["id"]
        anns = self.coco.loadAnns(self.coco.getAnnIds(imgIds=[img_id]))
        return self._parse_ann_info(self.data_infos[idx], anns)

    def get_cat_ids(self, idx):
        return [a["category_id"] for a in self.coco.loadAnns(self.coco.getAnnIds(imgIds=[self.data_infos[idx]["id"]]))]

    def annotation_fate(self, ann: dict, img_info: dict) -> str:
        """What loading does with one annotation of image ``img_info`` (mmdet 2.18 rules):

        ``'kept'`` (a GT box), ``'crowd'`` (``iscrowd``: an ignored region, ``bboxes_ignore``), or the
        reason it is dropped, one of :data:`DROP_REASONS`: ``'unknown category'`` (id not among the
        json categories), ``'unselected category'`` (not in ``classes``), ``'ignore flag'``,
        ``'degenerate'`` (``w < 1`` or ``h < 1`` pixel or ``area <= 0``), ``'outside the image'`` (no
        overlap with the ``width x height`` image). The first reason that applies is given (mmdet tests
        them in another order; what is dropped is the same). A ``bbox`` that is not 4 numbers is a
        :class:`DatasetError` naming the annotation.
        """
        cid = ann["category_id"]
        if cid not in self.cat2label:
            return "unknown category" if cid not in self.coco.cats else "unselected category"
        if ann.get("ignore", False):
            return "ignore flag"
        try:
            x1, y1, w, h = (float(v) for v in ann["bbox"])
        except (TypeError, ValueError):
            raise DatasetError(f"{self.ann_file}: annotation id {ann.get('id')!r} (image id {img_info['id']}): "
                               f"bbox must be 4 numbers [x, y, w, h], got {ann['bbox']!r}") from None
        if ann.get("area", w * h) <= 0 or w < 1 or h < 1:
            return "degenerate"
        inter_w = max(0, min(x1 + w, img_info["width"]) - max(x1, 0))
        inter_h = max(0, min(y1 + h, img_info["height"]) - max(y1, 0))
        if inter_w * inter_h == 0:
            return "outside the image"
        return "crowd" if ann.get("iscrowd", False) else "kept"

    def _parse_ann_info(self, img_info, ann_info):
        gt_bboxes, gt_labels, gt_bboxes_ignore = [], [], []
        for ann in ann_info:
            fate = self.annotation_fate(ann, img_info)
            if fate not in ("kept", "crowd"):
                continue
            x1, y1, w, h = ann["bbox"]
            bbox = [x1, y1, x1 + w, y1 + h]
            if fate == "crowd":
                gt_bboxes_ignore.append(bbox)
            else:
                gt_bboxes.append(bbox)
                gt_labels.append(self.cat2label[ann["category_id"]])
        as_boxes = lambda b: np.array(b, dtype=np.float32).reshape(-1, 4)
        return dict(bboxes=as_boxes(gt_bboxes), labels=np.array(gt_labels, dtype=np.int64),
                    bboxes_ignore=as_boxes(gt_bboxes_ignore))

    def _filter_imgs(self, min_size=None):
        """Indices of images kept for training (mmdet ``CocoDataset._filter_imgs``)."""
        min_size = self.MIN_SIZE if min_size is None else min_size
        ids_with_ann = {a["image_id"] for a in self.coco.anns.values()}
        ids_in_cat = set()
        for cid in self.cat_ids:
            ids_in_cat |= set(self.coco.catToImgs.get(cid, []))
        ids_in_cat &= ids_with_ann
        return [i for i, info in enumerate(self.data_infos)
                if (not self.filter_empty_gt or info["id"] in ids_in_cat)
                and min(info["width"], info["height"]) >= min_size]

    def _set_group_flag(self):
        """Aspect-ratio group: 1 if w / h > 1 (mmdet ``GroupSampler``)."""
        self.flag = np.array([1 if info["width"] / info["height"] > 1 else 0 for info in self.data_infos],
                             dtype=np.uint8)

    # ------------------------------------------------------------------ items
    def pre_pipeline(self, results):
        results["img_prefix"] = self.img_prefix
        results["seg_prefix"] = self.seg_prefix
        results["proposal_file"] = self.proposal_file
        results["bbox_fields"] = []
        results["mask_fields"] = []
        results["seg_fields"] = []
        results["dataset_id"] = 0 if self.dataset_id is None else self.dataset_id

    def prepare_train_img(self, idx):
        results = dict(img_info=self.data_infos[idx], ann_info=self.get_ann_info(idx))
        if self.proposals is not None:
            results["proposals"] = self.proposals[idx]
        self.pre_pipeline(results)
        return self.pipeline(results)

    def prepare_test_img(self, idx):
        results = dict(img_info=self.data_infos[idx])
        if self.proposals is not None:
            results["proposals"] = self.proposals[idx]
        self.pre_pipeline(results)
        return self.pipeline(results)

    def __getitem__(self, idx):
        if self.test_mode:
            return self.prepare_test_img(idx)
        tried = 0
        while True:
            data = self.prepare_train_img(idx)
            if data is not None:
                return data
            tried += 1
            if tried > 50:
                raise DatasetError(f"{self.ann_file}: the pipeline returned None for 50 images in a row")
            pool = np.where(self.flag == self.flag[idx])[0]
            idx = int(np.random.choice(pool))

    # ------------------------------------------------------------------ results / evaluation
    def results2json(self, results):
        """mmdet results (per image: per class (n,5), or (n,5) proposals) → COCO result dicts."""
        from ..evaluation.results import results_to_coco_json

        return results_to_coco_json(results, self.img_ids, self.cat_ids)

    def gt_boxes(self, cat_ids=None):
        """Per image (n,4) non-crowd GT boxes, optionally only of ``cat_ids`` (for proposal recall)."""
        from ..evaluation.recall import gt_boxes_from_coco

        return gt_boxes_from_coco(self.coco.dataset, self.img_ids, cat_ids)

    def evaluate(self, results, metric="bbox", logger=None, proposal_nums=(100, 300, 1000), iou_thrs=None,
                 classwise=False, jsonfile_prefix=None, metric_items=None, cat_subsets=None):
        """``metric``: 'bbox' (COCO AP via pycocotools) and/or 'proposal'/'proposal_fast' (AR@k)."""
        metrics = [metric] if isinstance(metric, str) else list(metric)
        out = {}
        for m in metrics:
            if m in ("proposal", "proposal_fast"):
                from ..evaluation.recall import proposal_recall_report

                out.update(proposal_recall_report(self.coco.dataset, self.img_ids, results, proposal_nums,
                                                  iou_thrs=iou_thrs, cat_subsets=cat_subsets))
            elif m == "bbox":
                out.update(self._evaluate_bbox(results, iou_thrs, proposal_nums, classwise, jsonfile_prefix))
            else:
                raise DatasetError(f"metric {m!r} is not supported (use 'bbox', 'proposal', 'proposal_fast')")
        return out

    def _evaluate_bbox(self, results, iou_thrs, proposal_nums, classwise, jsonfile_prefix):
        from ..evaluation.coco import coco_bbox_eval

        dets = self.results2json(results)
        if jsonfile_prefix:
            with open(f"{jsonfile_prefix}.bbox.json", "w") as f:
                json.dump(dets, f)
        stats = coco_bbox_eval(self.coco.dataset, dets, img_ids=self.img_ids, cat_ids=self.cat_ids,
                               iou_thrs=iou_thrs, max_dets=proposal_nums, classwise=classwise,
                               class_names=self.CLASSES)
        return {f"bbox_{k}": v for k, v in stats.items()}

    def __repr__(self):
        mode = "test" if self.test_mode else "train"
        return (f"{type(self).__name__}({self.ann_file!r}, {mode}, {len(self)} images, "
                f"{len(self.cat_ids)} classes, dataset_id={self.dataset_id})")


@DATASETS.register_module()
class Objects365Dataset(CocoDataset):
    """Objects365 v2 (COCO-format json; class names keep their trailing spaces)."""


@DATASETS.register_module()
class OpenImagesDataset(CocoDataset):
    """OpenImages challenge-2019 500-class json converted to COCO style (as used by UniDetector)."""
