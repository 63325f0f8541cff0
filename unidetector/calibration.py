"""Probability calibration of open-world detections (UniDetector §5).

The stage-2 classifier over-scores classes that were frequent in training. At test time
``BBoxHeadCLIPInference`` divides each class probability by a class prior ``π_c`` to the power γ::

    w_c = π_c ** -γ            p_c ← p_c · w_c / mean(w)          (γ = 0.6)

Where the prior comes from (all give ``π``, ``(C,)`` float64, one entry per class in label order):

* **raw results** (official, *transductive*): first run the uncalibrated model on the test set and save
  its raw results (``--out raw.pkl``: per image, per class ``(n, 5)`` arrays); then
  ``cnum_c = Σ_images #detections of class c`` (after soft-NMS, score threshold and the per-image cap).
  The prior is thus estimated on the test images themselves: say so when reporting such numbers.
* **training frequencies**: ``image_count`` of a cat-info json (``scripts/get_cat_info.py`` /
  ``unidet data cat-info``), sorted by category id. Not transductive.

Smoothing: ``π = counts + ε``. The final official code uses no ε, so a class with zero detections
gives ``w = inf`` and NaN scores; the first official commit used ``+10``, our default
(``calibration_smoothing`` in the configs, ``--smoothing`` of ``unidet calibrate``). With ``ε = 0`` a
zero count is an error here rather than a NaN.

A prior written by ``unidet calibrate`` (``.npy``) already holds ``π`` (smoothing included) and is
used as is.
"""
from __future__ import annotations

import json
import os
import pickle

import numpy as np

from .errors import UnidetError

__all__ = ["DEFAULT_SMOOTHING", "class_counts_from_results", "class_counts_from_cat_info", "load_prior",
           "calibration_weights", "save_prior"]

DEFAULT_SMOOTHING = 10.0


class CalibrationError(UnidetError, ValueError):
    """A prior, results or cat-info file that cannot give a class prior; the message names it."""


def class_counts_from_results(results) -> np.ndarray:
    """``(C,)`` number of detections per class in mmdet raw results.

    Args:
        results: a list over images of lists over classes of ``(n_c, 5)`` arrays (``--out`` pickle
            of ``unidet test``), or a path to such a pickle.
    """
    where = "class_counts_from_results"
    if isinstance(results, (str, os.PathLike)):
        from .convert.checkpoints import read_pickle

        where, results = str(results), read_pickle(results, what="results file")
    if not isinstance(results, (list, tuple)) or not results:
        raise CalibrationError(f"{where}: expected a non-empty list over images of per-class (n, 5) arrays "
                               "(the --out pickle of `unidet test`)")
    if not all(isinstance(r, (list, tuple)) for r in results):
        raise CalibrationError(f"{where}: expected per-image lists over classes of (n, 5) arrays (raw bbox results, "
                               "not proposals: `unidet test STAGE2_CFG CKPT --out raw.pkl`)")
    num_classes = {len(r) for r in results}
    if len(num_classes) != 1:
        raise CalibrationError(f"{where}: images have different class counts {sorted(num_classes)}; "
                               "expected per-image lists over classes of (n, 5) arrays")
    counts = np.array([[len(dets) for dets in per_image] for per_image in results], np.float64)
    return counts.sum(axis=0)


def class_counts_from_cat_info(path) -> np.ndarray:
    """``(C,)`` training ``image_count`` per category of a cat-info json, in category-id order."""
    try:
        with open(path, encoding="utf-8") as f:
            cats = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CalibrationError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(cats, list) or not cats or not all(isinstance(c, dict) and "image_count" in c and "id" in c
                                                         for c in cats):
        raise CalibrationError(f"{path}: not a cat-info json (a list of categories with 'id' and 'image_count'; "
                               "make one with `unidet data catinfo --ann TRAIN.json`)")
    return np.array([c["image_count"] for c in sorted(cats, key=lambda c: c["id"])], np.float64)


def load_prior(path, smoothing: float = DEFAULT_SMOOTHING, num_classes: int | None = None) -> np.ndarray:
    """The class prior ``π`` ``(C,)`` from a raw-results ``.pkl`` or a cat-info ``.json`` (counts +
    ``smoothing``), or from a ``.npy`` prior (as stored). Checks ``C == num_classes`` when given."""
    path = str(path)
    if path.endswith(".npy"):
        try:
            prior = np.load(path).astype(np.float64).reshape(-1)
        except (ValueError, EOFError) as e:
            raise CalibrationError(f"calibration prior {path}: not a readable .npy array ({e})") from None
    elif path.endswith(".json"):
        prior = class_counts_from_cat_info(path) + smoothing
    else:
        prior = class_counts_from_results(path) + smoothing
    if num_classes is not None and prior.shape[0] != num_classes:
        raise CalibrationError(f"calibration prior {path}: {prior.shape[0]} classes, the model has {num_classes}")
    return prior


def calibration_weights(prior: np.ndarray, gamma: float) -> np.ndarray:
    """``(C,)`` float32 ``w / mean(w)`` with ``w = prior ** -gamma``.

    Raises ``ValueError`` if a prior entry is not a positive finite number (a zero count without
    smoothing), which would otherwise turn every score into NaN.
    """
    prior = np.asarray(prior, np.float64).reshape(-1)
    bad = np.flatnonzero(~np.isfinite(prior) | (prior <= 0))
    if bad.size:
        raise CalibrationError(f"calibration prior has {bad.size} non-positive or non-finite entries (classes "
                         f"{bad[:10].tolist()}...): add smoothing (e.g. calibration_smoothing=10)")
    w = prior ** -float(gamma)
    return (w / w.mean()).astype(np.float32)


def save_prior(path, prior: np.ndarray) -> str:
    """Write ``π`` as a ``(C,)`` float64 ``.npy``; returns the path."""
    path = str(path)
    if not path.endswith(".npy"):
        path += ".npy"
    np.save(path, np.asarray(prior, np.float64))
    return path
