"""mmdet ``RandomSampler`` and ``SamplingResult``.

Sampling reads the assignment once on the host (one sync per image) and draws with a
numpy random generator, so a run is reproducible from a seed and tests can inject
their own generator. When there are no more candidates than requested, every one is
taken, in index order (no random draw at all).
"""
from __future__ import annotations

import jittor as jt
import numpy as np

from ..registry import TASK_UTILS
from .assigners import AssignResult
from .boxes import as_var

__all__ = ["SamplingResult", "RandomSampler"]


class SamplingResult:
    """Sampled positives/negatives of one image (mmdet ``SamplingResult``).

    Attributes (P positives, Q negatives; indices are ascending):
        pos_inds, neg_inds: ``(P,)`` / ``(Q,)`` int64 indices into ``bboxes`` (GTs first
            when they were added as proposals).
        pos_bboxes, neg_bboxes: ``(P, 4)`` / ``(Q, 4)``.
        pos_is_gt: ``(P,)`` uint8, 1 for GT boxes added as proposals.
        pos_assigned_gt_inds: ``(P,)`` int64 index of the matched GT.
        pos_gt_bboxes: ``(P, 4)`` matched GT boxes; pos_gt_labels ``(P,)`` (or None).
        num_gts: number of GTs.
    """

    def __init__(self, pos_inds, neg_inds, bboxes, gt_bboxes, assign_result: AssignResult, gt_flags):
        self.pos_inds, self.neg_inds = jt.array(pos_inds).int64(), jt.array(neg_inds).int64()
        self.pos_bboxes = bboxes[self.pos_inds] if len(pos_inds) else jt.zeros((0, 4), dtype="float32")
        self.neg_bboxes = bboxes[self.neg_inds] if len(neg_inds) else jt.zeros((0, 4), dtype="float32")
        self.pos_is_gt = jt.array(gt_flags[pos_inds])
        self.num_gts = gt_bboxes.shape[0]
        gt_inds = assign_result.gt_inds.numpy()
        self.pos_assigned_gt_inds = jt.array(gt_inds[pos_inds] - 1).int64()
        self.pos_gt_bboxes = (gt_bboxes[self.pos_assigned_gt_inds] if len(pos_inds)
                              else jt.zeros((0, 4), dtype="float32"))
        self.pos_gt_labels = None
        if assign_result.labels is not None:
            self.pos_gt_labels = jt.array(assign_result.labels.numpy()[pos_inds]).int64()

    @property
    def bboxes(self) -> jt.Var:
        """``(P + Q, 4)`` positives then negatives."""
        return jt.concat([self.pos_bboxes, self.neg_bboxes], dim=0)

    def __repr__(self):
        return f"SamplingResult(num_pos={len(self.pos_inds)}, num_neg={len(self.neg_inds)}, num_gts={self.num_gts})"


@TASK_UTILS.register_module()
class RandomSampler:
    """Uniformly sample up to ``num * pos_fraction`` positives, then negatives up to ``num``.

    Args:
        num: total samples per image.
        pos_fraction: maximum fraction of positives.
        neg_pos_ub: if >= 0, at most ``neg_pos_ub * max(#pos, 1)`` negatives.
        add_gt_as_proposals: prepend the GT boxes as (positive) proposals.
        rng: ``None`` (numpy's global RNG, seeded by ``runtime.seed_everything``), an int
            seed, or a ``numpy.random.Generator``.
    """

    def __init__(self, num: int, pos_fraction: float, neg_pos_ub: float = -1, add_gt_as_proposals: bool = True,
                 rng=None, **kwargs):
        if kwargs:
            raise TypeError(f"RandomSampler got unexpected arguments: {', '.join(sorted(kwargs))}")
        self.num, self.pos_fraction = int(num), float(pos_fraction)
        self.neg_pos_ub, self.add_gt_as_proposals = neg_pos_ub, add_gt_as_proposals
        self.rng = np.random.default_rng(rng) if isinstance(rng, (int, np.integer)) else rng

    def random_choice(self, gallery: np.ndarray, num: int) -> np.ndarray:
        """``num`` distinct elements of ``gallery`` drawn uniformly (all of it, in order, if it is small enough)."""
        if len(gallery) <= num:
            return gallery
        perm = (self.rng.permutation(len(gallery)) if self.rng is not None
                else np.random.permutation(len(gallery)))
        return gallery[perm[:num]]

    def sample(self, assign_result: AssignResult, bboxes, gt_bboxes, gt_labels=None) -> SamplingResult:
        """Sample from ``(N, 4+)`` boxes given their assignment to ``(G, 4)`` GTs.

        ``assign_result`` is extended in place when GTs are added as proposals (as mmdet).
        """
        bboxes = as_var(bboxes)
        bboxes = bboxes.reshape(1, -1)[:, :4] if bboxes.ndim < 2 else bboxes[:, :4]
        gt_bboxes = as_var(gt_bboxes).reshape(-1, 4)
        if bboxes.shape[0] != assign_result.num_preds:
            raise ValueError(f"{bboxes.shape[0]} boxes but the assignment covers {assign_result.num_preds}")
        gt_flags = np.zeros(bboxes.shape[0], np.uint8)
        if self.add_gt_as_proposals and gt_bboxes.shape[0] > 0:
            if gt_labels is None:
                raise ValueError("gt_labels must be given when add_gt_as_proposals is True")
            bboxes = jt.concat([gt_bboxes, bboxes], dim=0)
            assign_result.add_gt_(gt_labels)
            gt_flags = np.concatenate([np.ones(gt_bboxes.shape[0], np.uint8), gt_flags])

        gt_inds = assign_result.gt_inds.numpy()
        num_expected_pos = int(self.num * self.pos_fraction)
        pos_inds = np.unique(self.random_choice(np.flatnonzero(gt_inds > 0), num_expected_pos))
        num_expected_neg = self.num - len(pos_inds)
        if self.neg_pos_ub >= 0:
            num_expected_neg = min(num_expected_neg, int(self.neg_pos_ub * max(1, len(pos_inds))))
        neg_inds = np.unique(self.random_choice(np.flatnonzero(gt_inds == 0), num_expected_neg))
        return SamplingResult(pos_inds, neg_inds, bboxes, gt_bboxes, assign_result, gt_flags)
