"""Stage-2 region embeddings computed once, scored against any number of vocabularies.

In the open-world head the vocabulary enters only after the attention pool:
``p = sigmoid(100 · cos(f, T))``, then the fusion with the proposal score, calibration, decoding and
soft-NMS. :func:`extract_regions` runs the network up to the region embeddings ``f`` and the box deltas;
:func:`score_regions` applies one vocabulary (and optionally calibration weights). ``Detector`` re-scores
cached images this way; the experiment tests the LVIS-style set under its raw, calibrated and control
vocabularies from one pass of the network (:func:`dataset_regions`, :func:`vocabulary_results`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import jittor as jt


@dataclass
class Regions:
    """What re-scoring an image with another vocabulary needs (all numpy, network-input pixels)."""

    features: np.ndarray         # (N, D) attention-pool region embeddings
    deltas: np.ndarray           # (N, 4) class-agnostic box deltas
    rois: np.ndarray             # (N, 5) [0, x1, y1, x2, y2] proposals
    proposal_scores: np.ndarray  # (N,) stage-1 scores o
    img_shape: tuple
    scale_factor: np.ndarray
    ori_shape: tuple


def extract_regions(model, img, img_metas, proposals) -> list:
    """One :class:`Regions` per image of a batch: backbone, RoIAlign, shared head, attention pool, deltas.

    ``img``: (B, 3, H, W) network input; ``proposals``: B arrays (n_i, 5) ``[x1, y1, x2, y2, score]``
    in network-input pixels. ``model``: a stage-2 detector whose box head has ``attnpool``/``fc_reg``.
    """
    from ..ops import bbox2roi
    from ..ops.boxes import as_var

    rh = model.roi_head
    head = rh.bbox_head
    with jt.no_grad():
        x = model.extract_feat(as_var(img))
        props = [as_var(p) for p in proposals]
        rois = bbox2roi(props)
        feats = rh.bbox_roi_extractor(x[:rh.bbox_roi_extractor.num_inputs], rois)
        if rh.with_shared_head:
            feats = rh.shared_head(feats)
        f = head.attnpool(feats)
        f_np, d_np, r_np = f.numpy(), head.fc_reg(f).numpy(), rois.numpy()
    out, start = [], 0
    for p, meta in zip(props, img_metas):
        rows = slice(start, start + p.shape[0])
        start += p.shape[0]
        out.append(Regions(f_np[rows], d_np[rows], r_np[rows], p[:, -1].numpy(), tuple(meta["img_shape"]),
                           np.asarray(meta["scale_factor"], np.float32), tuple(meta["ori_shape"])))
    return out


def score_regions(model, regions: Regions, zs_weights: jt.Var, calibration=None) -> tuple:
    """Detections of one image under one vocabulary: ``(dets (k, 5), labels (k,))`` numpy, boxes in
    original-image pixels. ``zs_weights``: ``classifier_weights(embeddings)`` (D, C+1);
    ``calibration``: (C,) weights ``w / mean(w)`` or None (raw scores)."""
    head = model.roi_head.bbox_head
    if len(regions.rois) == 0:
        return np.zeros((0, 5), np.float32), np.zeros((0,), np.int64)
    with jt.no_grad():
        logits = head.cosine_logits(jt.array(regions.features), zs_weights)
        bboxes = head.decode_boxes(jt.array(regions.rois), jt.array(regions.deltas), regions.img_shape,
                                   regions.scale_factor, rescale=True)
        scores = head.fuse_scores(logits, regions.proposal_scores, calibration)
        dets, labels = head.postprocess(bboxes, scores, model.roi_head.test_cfg)
        return dets.numpy().reshape(-1, 5), labels.numpy().reshape(-1).astype(np.int64)


def dataset_regions(model, dataset, progress: bool = True) -> list:
    """:class:`Regions` of every image of a test-mode ``dataset`` (one pass of the network)."""
    from tqdm import tqdm

    from ..data.loader import DetectionLoader

    model.eval()
    loader = DetectionLoader(dataset, batch_size=1, shuffle=False, num_workers=0, keep_numpy_targets=False)
    regions = []
    for batch in tqdm(loader, total=len(loader), desc="region embeddings", disable=not progress, dynamic_ncols=True):
        regions += extract_regions(model, batch["img"], batch["img_metas"], batch["proposals"])
    return regions


def vocabulary_results(model, regions: list, embeddings: np.ndarray, calibration=None) -> list:
    """Per-image mmdet results (lists over classes of (n, 5) arrays) of cached ``regions`` scored with
    ``embeddings`` (C, D) and optional calibration weights (C,)."""
    from ..models.roi_heads.bbox_heads.bbox_head_clip import classifier_weights
    from ..ops import bbox2result

    weights = classifier_weights(np.asarray(embeddings, np.float32))
    return [bbox2result(*score_regions(model, r, weights, calibration), len(embeddings)) for r in regions]
