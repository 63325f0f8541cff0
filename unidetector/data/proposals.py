"""The official proposal file: a pickle list with one float32 (n, 5) ``[x1, y1, x2, y2, score]`` array
per image, in original pixels, in the **unfiltered** image order of the annotation file, sorted by score
(SPEC §3). Datasets load it before filtering and filter it with the same indices as the images.
"""
from __future__ import annotations

import os
import os.path as osp
import pickle

import numpy as np

from ..errors import UnidetError


class ProposalFileError(UnidetError, ValueError):
    """A proposal file is missing, unreadable or does not match its annotation file."""


def load_proposals(path: str) -> list:
    """Read a proposal pickle (a list of (n, 4|5) arrays); errors name the file."""
    if not osp.isfile(path):
        raise ProposalFileError(f"proposal file not found: {path}")
    try:
        with open(path, "rb") as f:
            data = pickle.load(f)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file
        raise ProposalFileError(f"{path}: cannot unpickle proposals ({type(e).__name__}: {e})") from None
    if not isinstance(data, (list, tuple)):
        raise ProposalFileError(f"{path}: expected a list with one (n, 5) array per image, got {type(data).__name__}")
    out = []
    for i, p in enumerate(data):
        p = np.asarray(p, dtype=np.float32)
        if p.size == 0:
            p = p.reshape(0, 5)
        if p.ndim != 2 or p.shape[1] not in (4, 5):
            raise ProposalFileError(f"{path}: entry {i} has shape {p.shape}, expected (n, 4) or (n, 5)")
        out.append(p)
    return out


def save_proposals(proposals, path: str) -> None:
    """Write proposals in the official format (list of float32 (n, 5) arrays)."""
    data = []
    for p in proposals:
        p = np.asarray(p, dtype=np.float32)
        data.append(p.reshape(0, 5) if p.size == 0 else p)
    d = osp.dirname(path)
    if d:
        os.makedirs(d, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL)


def align_proposals(proposals: list, num_images: int, proposal_file: str, ann_file: str) -> list:
    """Check that there is one entry per image of the **unfiltered** annotation file."""
    if len(proposals) != num_images:
        raise ProposalFileError(
            f"proposal file {proposal_file} has {len(proposals)} entries but annotation file {ann_file} has "
            f"{num_images} images; proposals must be made on the unfiltered annotation file, in its image order "
            f"(test_mode=True when generating them)")
    return proposals


def select_proposals(proposals: np.ndarray, num_max_proposals=None, load_score=False) -> np.ndarray:
    """``LoadProposals`` rule: drop the score column unless ``load_score``, keep the first N rows
    (= top N by score); an empty result becomes one dummy box ``[0, 0, 0, 0]`` (``[0, 0, 0, 0, 0]``
    with the score, so the score column always exists when asked for)."""
    p = np.asarray(proposals, dtype=np.float32)
    if p.ndim != 2 or p.shape[1] not in (4, 5):
        raise ProposalFileError(f"proposals must be (n, 4) or (n, 5), got {p.shape}")
    if load_score and p.shape[1] != 5:
        raise ProposalFileError("load_score=True needs (n, 5) proposals with a score column")
    if not load_score:
        p = p[:, :4]
    if num_max_proposals is not None:
        p = p[:num_max_proposals]
    if len(p) == 0:
        p = np.zeros((1, p.shape[1]), dtype=np.float32)
    return p
