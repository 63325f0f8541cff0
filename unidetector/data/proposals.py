"""The official proposal file: a pickle list with one float32 (n, 5) ``[x1, y1, x2, y2, score]`` array
per image, in original pixels, in the **unfiltered** image order of the annotation file, sorted by score
(SPEC §3). Datasets load it before filtering and filter it with the same indices as the images.
Files with (n, 4) entries (no score) load too (mmdet's ``LoadProposals`` accepts them for training); what
needs the score (``unidet detect --proposals``, ``load_score=True``) asks for (n, 5) with
:func:`check_scored_proposals`.

Checks (each error names the file and the image): non-finite values (:func:`load_proposals`), boxes
that do not fit their images, e.g. a file made for another annotation file or image order
(:func:`check_proposals_fit`, also run by :func:`align_proposals` when given the image infos).
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
        if not np.isfinite(p).all():
            rows = np.flatnonzero(~np.isfinite(p).all(axis=1))
            raise ProposalFileError(f"{path}: image {i} has NaN or infinite proposal values ({len(rows)} of "
                                    f"{len(p)} rows, first row {int(rows[0])}: {p[rows[0]].tolist()})")
        out.append(p)
    return out


def check_scored_proposals(proposals: list, path: str) -> list:
    """Check that every entry is an official (n, 5) ``[x1, y1, x2, y2, score]`` array with scores in
    [0, 1] (what score fusion ``p^β · o^(1−β)`` needs). (n, 4) boxes are refused, not given a score."""
    for i, p in enumerate(proposals):
        p = np.asarray(p)
        if p.ndim != 2 or p.shape[1] != 5:
            raise ProposalFileError(
                f"{path}: image {i} has proposals of shape {tuple(p.shape)}; scored proposals are (n, 5) "
                "[x1, y1, x2, y2, score] arrays (the official proposal file, `unidet proposals`); (n, 4) boxes "
                "without the stage-1 score cannot be fused")
        if len(p) and (p[:, 4].min() < 0 or p[:, 4].max() > 1):
            raise ProposalFileError(
                f"{path}: image {i} has proposal scores from {float(p[:, 4].min()):g} to {float(p[:, 4].max()):g}; "
                "column 5 must be the stage-1 score in [0, 1] (rows [x1, y1, x2, y2, score])")
    return proposals


#: Boxes may reach this far outside their image: ``FIT_TOLERANCE_PX + FIT_TOLERANCE_REL · side`` (pixels;
#: rescaled stage-1 boxes are clipped to the image, so only rounding puts them outside).
FIT_TOLERANCE_PX = 2.0
FIT_TOLERANCE_REL = 0.02


def proposals_overshoot(boxes: np.ndarray, height: float, width: float) -> tuple:
    """``(pixels, row, what)``: how far the worst box of ``boxes`` (n, >=4) ``x1, y1, x2, y2`` lies
    outside a ``height`` × ``width`` image, beyond the tolerance (0 when all fit); inverted boxes
    (x2 < x1 or y2 < y1) count by how much they are inverted."""
    b = np.asarray(boxes, np.float64)[:, :4]
    if not len(b):
        return 0.0, -1, ""
    tol_x = FIT_TOLERANCE_PX + FIT_TOLERANCE_REL * width
    tol_y = FIT_TOLERANCE_PX + FIT_TOLERANCE_REL * height
    checks = [(-b[:, 0] - tol_x, "x1 < 0"), (-b[:, 1] - tol_y, "y1 < 0"),
              (b[:, 2] - width - tol_x, f"x2 > width {width:g}"), (b[:, 3] - height - tol_y, f"y2 > height {height:g}"),
              (b[:, 0] - b[:, 2] - tol_x, "x2 < x1"), (b[:, 1] - b[:, 3] - tol_y, "y2 < y1")]
    worst = (0.0, -1, "")
    for excess, what in checks:
        r = int(np.argmax(excess))
        if excess[r] > worst[0]:
            tol = tol_x if what.startswith("x") else tol_y
            worst = (float(excess[r] + tol), r, what)
    return worst


def check_proposals_fit(proposals: list, image_sizes: list, path: str, names=None,
                        made_for: str = "these images") -> None:
    """Raise :class:`ProposalFileError` when boxes do not fit their images (beyond a small tolerance,
    see ``FIT_TOLERANCE_*``): the file was made for other images or another image order.

    ``proposals``: list of (n, 4|5) arrays; ``image_sizes``: one ``(height, width)`` per entry, or
    ``None`` where unknown (skipped); ``names``: optional file name per image and ``made_for`` (what
    the file should have been made on) for the message.
    """
    bad = []
    for i, (p, size) in enumerate(zip(proposals, image_sizes)):
        if size is None or p is None or not len(p):
            continue
        h, w = float(size[0]), float(size[1])
        far, row, what = proposals_overshoot(p, h, w)
        if far > 0:
            bad.append((i, far, row, what, h, w))
    if not bad:
        return
    i, far, row, what, h, w = bad[0]
    name = f" ({names[i]}, {w:g}x{h:g})" if names is not None else f" ({w:g}x{h:g})"
    box = [round(float(v), 1) for v in np.asarray(proposals[i])[row, :4]]
    raise ProposalFileError(
        f"{path}: the boxes of image {i}{name} do not fit it: row {row} {box} has {what} by {far:.1f} px"
        f"{f' ({len(bad)} of {len(proposals)} images do not fit)' if len(bad) > 1 else ''}; the proposal file "
        f"must be made on {made_for}, one entry per image in the same order")


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


def align_proposals(proposals: list, num_images: int, proposal_file: str, ann_file: str,
                    image_infos=None) -> list:
    """Check that there is one entry per image of the **unfiltered** annotation file and, given its
    ``image_infos`` (the annotation file's ``images`` entries, with ``height``/``width``), that the
    boxes fit their images (:func:`check_proposals_fit`)."""
    if len(proposals) != num_images:
        raise ProposalFileError(
            f"proposal file {proposal_file} has {len(proposals)} entries but annotation file {ann_file} has "
            f"{num_images} images; proposals must be made on the unfiltered annotation file, in its image order "
            f"(test_mode=True when generating them)")
    if image_infos is not None:
        sizes = [(info["height"], info["width"]) if info.get("height") and info.get("width") else None
                 for info in image_infos]
        names = [str(info.get("file_name", info.get("filename", info.get("id", "?")))) for info in image_infos]
        check_proposals_fit(proposals, sizes, proposal_file, names,
                            made_for=f"the unfiltered annotation file {ann_file}")
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
