"""Checks of a built dataset before hours of training or testing are spent on it.

:func:`check_dataset` runs right after a dataset (or a ``ConcatDataset``) is built:

* every member dataset contributes images (a test set with 0 images, a training set with no image left
  after mmdet's filtering or with no usable box, is a :class:`EmptyDatasetError` naming its annotation
  file and why);
* what loading drops is counted and reported, one line per annotation file::

    data.train.datasets[0]: data/coco/train.json: 117266 of 118287 images (1021 without annotations of
    the classes, 0 smaller than 32 px); annotations kept 860001, dropped 9 (3 unknown category,
    6 degenerate), 1 crowd (ignored regions)

  (the reasons are :data:`unidetector.data.coco.DROP_REASONS`, decided by
  :meth:`CocoDataset.annotation_fate`, the very rule the loader applies);
* every image file exists: one quick pass (a directory listing per folder) with a progress bar on a
  terminal; missing files are one :class:`MissingImagesError` per run naming each annotation file, how
  many of its images are missing and the first few paths;
* with ``model``: the CLIP box head's text-embedding rows match each dataset's classes (the dataset of
  ``dataset_id`` d against vocabulary d of a partitioned head), which would otherwise be an
  ``IndexError`` in the middle of training or a wrong evaluation.

Datasets that are not COCO-like (no ``coco`` index) are only checked for being non-empty.
"""
from __future__ import annotations

import os
import os.path as osp
from collections import Counter

from .coco import DROP_REASONS, DatasetError

#: how many missing paths a :class:`MissingImagesError` lists per annotation file
SHOW_MISSING = 5


class EmptyDatasetError(DatasetError):
    """A dataset that contributes no image (or, for training, no usable box); names its annotation file."""


class MissingImagesError(DatasetError, FileNotFoundError):
    """Image files referenced by an annotation file do not exist; names the file and the first paths."""


def leaf_datasets(dataset, key_path: str) -> list:
    """``[(key, dataset)]`` of the datasets inside ``dataset`` (``ConcatDataset`` members, recursively;
    wrappers with a ``dataset`` attribute are unwrapped), keyed like the config (``data.train.datasets[1]``)."""
    members = getattr(dataset, "datasets", None)
    if isinstance(members, (list, tuple)):
        return [leaf for i, d in enumerate(members) for leaf in leaf_datasets(d, f"{key_path}.datasets[{i}]")]
    inner = getattr(dataset, "dataset", None)
    if inner is not None and not hasattr(dataset, "data_infos"):
        return leaf_datasets(inner, f"{key_path}.dataset")
    return [(key_path, dataset)]


def _name(ds) -> str:
    return str(getattr(ds, "ann_file", None) or type(ds).__name__)


# ---------------------------------------------------------------------------------------------- annotations
def annotation_counts(ds) -> Counter:
    """Fate of every annotation of the json of a COCO-like dataset: ``kept``, ``crowd``, a drop reason
    (:data:`DROP_REASONS`), ``unknown image`` (``image_id`` not among the images) or ``filtered image``
    (its image was dropped by the training filter)."""
    infos = {info["id"]: info for info in ds.data_infos}
    all_imgs = ds.coco.imgs
    counts = Counter()
    for ann in ds.coco.dataset["annotations"]:
        img = infos.get(ann["image_id"])
        if img is None:
            counts["filtered image" if ann["image_id"] in all_imgs else "unknown image"] += 1
        else:
            counts[ds.annotation_fate(ann, img)] += 1
    return counts


def image_counts(ds) -> dict:
    """``dict(total, kept, small, empty)``: images of the json, kept by the dataset, and of the dropped
    ones those smaller than ``MIN_SIZE`` and those without an annotation of the selected classes."""
    kept_ids = {info["id"] for info in ds.data_infos}
    dropped = [img for i, img in ds.coco.imgs.items() if i not in kept_ids]
    min_size = getattr(ds, "MIN_SIZE", 32)
    small = sum(min(img["width"], img["height"]) < min_size for img in dropped)
    return dict(total=len(ds.coco.imgs), kept=len(kept_ids), small=small, empty=len(dropped) - small)


def format_report(key: str, ds, images: dict, counts: Counter) -> str:
    """One line: images kept (and why others were dropped), annotations kept / dropped by reason."""
    test_mode = bool(getattr(ds, "test_mode", False))
    line = f"{key}: {_name(ds)}: "
    if images["kept"] == images["total"]:
        line += f"{images['total']} images"
    else:
        line += (f"{images['kept']} of {images['total']} images ({images['empty']} without annotations of the "
                 f"classes, {images['small']} smaller than {getattr(ds, 'MIN_SIZE', 32)} px)")
    reasons = [r for r in (*DROP_REASONS, "unknown image", "filtered image") if counts[r]]
    dropped = sum(counts[r] for r in reasons)
    if test_mode:  # evaluation reads the json itself: say what the loader's rule would drop
        line += f"; annotations usable as boxes {counts['kept']}, not usable {dropped}"
    else:
        line += f"; annotations kept {counts['kept']}, dropped {dropped}"
    if reasons:
        line += " (" + ", ".join(f"{counts[r]} {_reason_words(r)}" for r in reasons) + ")"
    if counts["crowd"]:
        line += f", {counts['crowd']} crowd (ignored regions)"
    return line


def _reason_words(reason: str) -> str:
    return {"unknown image": "of an unknown image id", "filtered image": "on dropped images",
            "degenerate": "degenerate (w or h < 1 px, or area <= 0)"}.get(reason, reason)


def _empty_error(key: str, ds, images: dict | None, counts: Counter | None) -> EmptyDatasetError:
    name = _name(ds)
    if images is None:
        return EmptyDatasetError(f"{key}: {name}: the dataset has no image")
    if images["total"] == 0:
        return EmptyDatasetError(f"{key}: {name}: the annotation file lists no image")
    if images["kept"] == 0:
        return EmptyDatasetError(
            f"{key}: {name}: no image left for training of {images['total']} ({images['empty']} without an "
            f"annotation of the selected classes, {images['small']} smaller than {getattr(ds, 'MIN_SIZE', 32)} "
            f"px); check the classes and the category ids of the annotations")
    dropped = ", ".join(f"{counts[r]} {_reason_words(r)}" for r in DROP_REASONS if counts[r]) or "none at all"
    return EmptyDatasetError(f"{key}: {name}: no usable annotation for training in its {images['kept']} images "
                             f"(dropped: {dropped})")


def check_annotations(key: str, ds, log=print) -> None:
    """Report one line for ``ds`` and raise :class:`EmptyDatasetError` if it contributes nothing."""
    if not (hasattr(ds, "coco") and hasattr(ds, "data_infos") and hasattr(ds, "annotation_fate")):
        if len(ds) == 0:
            raise _empty_error(key, ds, None, None)
        return
    images, counts = image_counts(ds), annotation_counts(ds)
    log(format_report(key, ds, images, counts))
    if len(ds) == 0 or images["kept"] == 0:
        raise _empty_error(key, ds, images, counts)
    if not getattr(ds, "test_mode", False) and counts["kept"] == 0:
        raise _empty_error(key, ds, images, counts)


# ---------------------------------------------------------------------------------------------- images
def image_paths(ds) -> list:
    """Paths the loader will read for ``ds`` (``img_prefix`` joined as ``LoadImageFromFile`` does)."""
    prefix = getattr(ds, "img_prefix", "") or ""
    return [osp.join(prefix, info["filename"]) if prefix else info["filename"] for info in ds.data_infos]


class _Listing:
    """Existence of files by one directory listing per folder (fast on network file systems)."""

    def __init__(self):
        self.dirs: dict = {}

    def exists(self, path: str) -> bool:
        folder, base = osp.split(path)
        names = self.dirs.get(folder)
        if names is None:
            try:
                names = set(os.listdir(folder or "."))
            except OSError:
                names = set()
            self.dirs[folder] = names
        return base in names or osp.isfile(path)  # the stat: a folder that could not be listed


def missing_images(members: list, progress: bool = True) -> list:
    """``[(key, dataset, missing paths, number of images)]`` for the members with missing image files;
    one pass over all images with a tqdm bar (on a terminal only, when ``progress``)."""
    from tqdm import tqdm

    jobs = [(key, ds, image_paths(ds)) for key, ds in members if hasattr(ds, "data_infos")]
    total = sum(len(paths) for _, _, paths in jobs)
    listing, out = _Listing(), []
    with tqdm(total=total, desc="checking image files", unit="img", disable=None if progress else True,
              dynamic_ncols=True, leave=False) as bar:
        for key, ds, paths in jobs:
            missing = []
            for path in paths:
                if not listing.exists(path):
                    missing.append(path)
                bar.update(1)
            if missing:
                out.append((key, ds, missing, len(paths)))
    return out


def missing_images_error(found: list) -> MissingImagesError:
    """One error for every annotation file with missing images (count and the first paths of each)."""
    parts = []
    for key, ds, missing, n in found:
        shown = ", ".join(missing[:SHOW_MISSING]) + (", ..." if len(missing) > SHOW_MISSING else "")
        prefix = getattr(ds, "img_prefix", "") or "(no img_prefix)"
        parts.append(f"{key}: {len(missing)} of {n} images of {_name(ds)} are missing under {prefix}: {shown}")
    return MissingImagesError("; ".join(parts) + " (check img_prefix / data_root and the image folders)")


# ---------------------------------------------------------------------------------------------- vocabulary
def check_model_vocabulary(model, members: list) -> None:
    """Each dataset's class count equals the rows of the text embeddings it is scored with.

    A CLIP box head (``model.roi_head.bbox_head`` with ``zeroshot_files``) scores a dataset of
    ``dataset_id`` d (``None`` → 0) with vocabulary d of a partitioned head, or its single vocabulary.
    Models without such a head (stage 1) are not checked. Raises
    :class:`~unidetector.text.embeddings.EmbeddingFileError` naming the embedding and annotation files.
    """
    from ..text.embeddings import EmbeddingFileError

    head = getattr(getattr(model, "roi_head", None), "bbox_head", None)
    files = getattr(head, "zeroshot_files", None)
    if head is None or files is None:
        return
    rows = list(getattr(head, "classes_per_dataset", None) or [head.num_classes])
    for key, ds in members:
        n = getattr(ds, "num_classes", None)
        if n is None:
            continue
        d = int(getattr(ds, "dataset_id", None) or 0) if len(rows) > 1 else 0
        if d >= len(rows):
            raise EmbeddingFileError(f"{key}: {_name(ds)} has dataset_id {d} but the box head has {len(rows)} "
                                     f"vocabularies (zeroshot_path: {', '.join(files)})")
        if n != rows[d]:
            raise EmbeddingFileError(
                f"{key}: {_name(ds)} has {n} classes but its text embeddings {files[d]} have {rows[d]} rows "
                f"(model.roi_head.bbox_head, vocabulary {d}); the embedding file must hold one row per class of "
                f"this dataset in category-id order (make it with `unidet embed --ann {_name(ds)} "
                f"--encoder clip:RN50.pt --out {files[d]}`)")


# ---------------------------------------------------------------------------------------------- entry point
def check_dataset(dataset, key_path: str, progress: bool = True, log=print, model=None) -> None:
    """Check a built dataset before training or testing on it (see the module doc).

    Args:
        dataset: a built dataset or ``ConcatDataset``.
        key_path: its config key (``'data.train'``, ``'data.test'``), used in messages.
        progress: show the image-file pass as a tqdm bar (on a terminal only).
        log: where the per-annotation-file lines go.
        model: the built detector; its CLIP box head's vocabularies are checked against the datasets.

    Raises :class:`EmptyDatasetError`, :class:`MissingImagesError` or
    :class:`~unidetector.text.embeddings.EmbeddingFileError` (all ``UnidetError``), naming the file.
    """
    members = leaf_datasets(dataset, key_path)
    for key, ds in members:
        check_annotations(key, ds, log=log)
    if model is not None:
        check_model_vocabulary(model, members)
    found = missing_images(members, progress=progress)
    if found:
        raise missing_images_error(found)
