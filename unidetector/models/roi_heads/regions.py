"""Stage-2 region embeddings: what scoring an image against any vocabulary needs.

In the CLIP RoI heads the vocabulary enters only after the attention pool (``p = sigmoid(100 · cos(f,
T))``, then fusion with the proposal score, calibration, decoding and NMS), so an image's regions are
computed once (:meth:`StandardRoIHead.region_embeddings`) and scored against any number of
vocabularies (:meth:`StandardRoIHead.score_regions`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Regions:
    """One image's regions, all numpy, boxes in network-input pixels."""

    features: np.ndarray         # (N, D) attention-pool region embeddings
    deltas: np.ndarray           # (N, 4) class-agnostic box deltas
    rois: np.ndarray             # (N, 5) [0, x1, y1, x2, y2] proposals
    proposal_scores: np.ndarray  # (N,) stage-1 scores o (last proposal column)
    img_shape: tuple
    scale_factor: np.ndarray     # (4,) network-input / original pixels
    ori_shape: tuple

    def __len__(self) -> int:
        return len(self.rois)

    @property
    def img_meta(self) -> dict:
        return {"img_shape": self.img_shape, "scale_factor": self.scale_factor, "ori_shape": self.ori_shape}
