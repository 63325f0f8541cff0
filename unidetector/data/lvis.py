"""LVIS datasets (mmdet 2.18 ``LVISV05Dataset`` / ``LVISV1Dataset``), evaluated with the LVIS protocol.

LVIS json is COCO-compatible, so loading, filtering and label mapping are those of
:class:`~unidetector.data.coco.CocoDataset`. Images live in COCO folders:

* v0.5: ``file_name`` ``COCO_val2014_000000xxxxxx.jpg`` becomes the 2017 name ``000000xxxxxx.jpg``;
* v1: the path comes from ``coco_url`` (``http://images.cocodataset.org/train2017/x.jpg`` →
  ``train2017/x.jpg``, so ``img_prefix`` is the COCO root). A v1-format file without ``coco_url`` (e.g.
  the synthetic world) uses ``file_name``.

``evaluate(metric='bbox')`` reports AP, AP50, AP75, APs, APm, APl, APr, APc, APf (``max_dets=300``).
"""
from __future__ import annotations

import json

from ..registry import DATASETS
from .coco import CocoDataset, DatasetError

COCO_URL_PREFIX = "http://images.cocodataset.org/"


@DATASETS.register_module()
class LVISV05Dataset(CocoDataset):
    """LVIS v0.5 (1230 classes)."""

    def _filename(self, img, ann_file):
        name = img.get("file_name")
        if name is None:
            return super()._filename(img, ann_file)
        return name[-16:] if name.startswith("COCO") else name

    def evaluate(self, results, metric="bbox", logger=None, proposal_nums=(100, 300, 1000), iou_thrs=None,
                 classwise=False, jsonfile_prefix=None, metric_items=None, cat_subsets=None, max_dets=300):
        metrics = [metric] if isinstance(metric, str) else list(metric)
        out = {}
        for m in metrics:
            if m != "bbox":
                out.update(super().evaluate(results, m, logger, proposal_nums, iou_thrs, classwise,
                                            jsonfile_prefix, metric_items, cat_subsets))
                continue
            from ..evaluation.lvis import lvis_bbox_eval

            dets = self.results2json(results)
            if jsonfile_prefix:
                with open(f"{jsonfile_prefix}.bbox.json", "w") as f:
                    json.dump(dets, f)
            stats = lvis_bbox_eval(self.coco.dataset, dets, max_dets=max_dets)
            out.update({f"bbox_{k}": v for k, v in stats.items()})
        return out


LVISDataset = LVISV05Dataset
DATASETS.register_module(name="LVISDataset", module=LVISDataset)


@DATASETS.register_module()
class LVISV1Dataset(LVISV05Dataset):
    """LVIS v1 (1203 classes); file paths from ``coco_url``."""

    def _filename(self, img, ann_file):
        url = img.get("coco_url")
        if url:
            return url.replace(COCO_URL_PREFIX, "")
        if "file_name" in img:
            return img["file_name"]
        raise DatasetError(f"{ann_file}: image id {img['id']} has neither 'coco_url' nor 'file_name'")
