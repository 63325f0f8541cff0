"""mmdet v2 ``AnchorGenerator`` and ``anchor_inside_flags``.

Anchors are ``[x1, y1, x2, y2]`` pixels. With ``center_offset=0`` (mmdet v2) the base
anchors are centred at (0, 0) and the anchor of cell (x, y) at ``(x * stride, y * stride)``.
Grid anchors of one level are ``(H * W * A, 4)`` with row ``(y * W + x) * A + a``.
"""
from __future__ import annotations

from typing import Sequence

import jittor as jt
import numpy as np

from ..registry import TASK_UTILS
from .boxes import as_var

__all__ = ["AnchorGenerator", "anchor_inside_flags"]


@TASK_UTILS.register_module()
class AnchorGenerator:
    """Per-level anchors from strides x ratios x scales (mmdet ``AnchorGenerator`` 2.x).

    Args:
        strides: per-level stride, int or ``(stride_w, stride_h)``.
        ratios: anchor height / width ratios.
        scales: anchor scales (side = base_size * scale); or give ``octave_base_scale``
            and ``scales_per_octave`` instead.
        base_sizes: per-level base size (default: min of the level's stride).
        scale_major: order of (ratio, scale) within a location (True: scales vary fastest).
        centers: per-level ``(x, y)`` centre of the base anchors (default from ``center_offset``).
        center_offset: centre as a fraction of the base size (0 in mmdet v2).
    """

    def __init__(self, strides: Sequence, ratios: Sequence[float], scales: Sequence[float] | None = None,
                 base_sizes: Sequence[int] | None = None, scale_major: bool = True,
                 octave_base_scale: float | None = None, scales_per_octave: int | None = None,
                 centers: Sequence | None = None, center_offset: float = 0.0):
        if center_offset != 0 and centers is not None:
            raise ValueError("AnchorGenerator: give either centers or center_offset, not both")
        if not 0 <= center_offset <= 1:
            raise ValueError(f"center_offset must be in [0, 1], got {center_offset}")
        if centers is not None and len(centers) != len(strides):
            raise ValueError(f"{len(centers)} centers for {len(strides)} strides")
        self.strides = [(s, s) if np.isscalar(s) else tuple(s) for s in strides]
        self.base_sizes = [min(s) for s in self.strides] if base_sizes is None else list(base_sizes)
        if len(self.base_sizes) != len(self.strides):
            raise ValueError(f"{len(self.base_sizes)} base_sizes for {len(self.strides)} strides")
        if (scales is None) == (octave_base_scale is None or scales_per_octave is None):
            raise ValueError("AnchorGenerator: give either scales, or octave_base_scale and scales_per_octave")
        if scales is None:
            octave = np.array([2 ** (i / scales_per_octave) for i in range(scales_per_octave)])
            scales = octave * octave_base_scale
        self.scales = np.asarray(scales, np.float32)
        self.ratios = np.asarray(ratios, np.float32)
        self.scale_major = scale_major
        self.centers = centers
        self.center_offset = center_offset
        self.base_anchors = [self._base_anchors(i) for i in range(len(self.strides))]

    @property
    def num_levels(self) -> int:
        return len(self.strides)

    @property
    def num_base_anchors(self) -> list:
        """Anchors per location, per level."""
        return [len(b) for b in self.base_anchors]

    @property
    def num_base_priors(self) -> list:
        """Anchors per location, per level: mmdet >= 2.18's name of :attr:`num_base_anchors`."""
        return self.num_base_anchors

    def _base_anchors(self, level: int) -> np.ndarray:
        """``(A, 4)`` float32 anchors of one level around its centre (float32 maths as mmdet)."""
        size = self.base_sizes[level]
        if self.centers is None:
            cx = cy = np.float32(self.center_offset * size)
        else:
            cx, cy = (np.float32(c) for c in self.centers[level])
        h_ratios = np.sqrt(self.ratios)
        w_ratios = np.float32(1) / h_ratios
        if self.scale_major:
            ws = (size * w_ratios[:, None] * self.scales[None, :]).reshape(-1)
            hs = (size * h_ratios[:, None] * self.scales[None, :]).reshape(-1)
        else:
            ws = (size * self.scales[:, None] * w_ratios[None, :]).reshape(-1)
            hs = (size * self.scales[:, None] * h_ratios[None, :]).reshape(-1)
        half = np.float32(0.5)
        return np.stack([cx - half * ws, cy - half * hs, cx + half * ws, cy + half * hs], -1).astype(np.float32)

    def single_level_grid_anchors(self, featmap_size, level: int) -> jt.Var:
        """``(H * W * A, 4)`` anchors of one level for a ``(H, W)`` feature map."""
        feat_h, feat_w = int(featmap_size[0]), int(featmap_size[1])
        stride_w, stride_h = self.strides[level]
        shift_x = np.arange(feat_w, dtype=np.float32) * np.float32(stride_w)
        shift_y = np.arange(feat_h, dtype=np.float32) * np.float32(stride_h)
        xx, yy = np.meshgrid(shift_x, shift_y)  # (H, W), x fastest
        shifts = np.stack([xx, yy, xx, yy], -1).reshape(-1, 1, 4)
        return jt.array((self.base_anchors[level][None] + shifts).reshape(-1, 4))

    def grid_anchors(self, featmap_sizes: Sequence) -> list:
        """List over levels of ``(H_l * W_l * A, 4)`` anchors."""
        if len(featmap_sizes) != self.num_levels:
            raise ValueError(f"{len(featmap_sizes)} feature map sizes for {self.num_levels} levels")
        return [self.single_level_grid_anchors(size, i) for i, size in enumerate(featmap_sizes)]

    def grid_priors(self, featmap_sizes: Sequence, dtype=None, device=None) -> list:
        """mmdet >= 2.18's name of :meth:`grid_anchors`. ``dtype``/``device`` (torch arguments there)
        are accepted and ignored: anchors are float32 and Jittor places arrays itself."""
        return self.grid_anchors(featmap_sizes)

    def single_level_grid_priors(self, featmap_size, level_idx: int, dtype=None, device=None) -> jt.Var:
        """mmdet >= 2.18's name of :meth:`single_level_grid_anchors` (``dtype``/``device`` ignored)."""
        return self.single_level_grid_anchors(featmap_size, level_idx)

    def single_level_valid_flags(self, featmap_size, valid_size, num_base_anchors: int) -> jt.Var:
        """``(H * W * A,)`` bool: True where the cell lies inside ``valid_size=(h, w)`` cells."""
        feat_h, feat_w = int(featmap_size[0]), int(featmap_size[1])
        valid_h, valid_w = int(valid_size[0]), int(valid_size[1])
        valid = (np.arange(feat_h)[:, None] < valid_h) & (np.arange(feat_w)[None, :] < valid_w)
        return jt.array(np.repeat(valid.reshape(-1), num_base_anchors))

    def valid_flags(self, featmap_sizes: Sequence, pad_shape, device=None) -> list:
        """Per-level valid flags for an image padded to ``pad_shape=(H, W)`` inside the batch.

        A cell is valid if it lies within ``ceil(pad / stride)`` cells (capped at the map size).
        ``device`` (mmdet's torch argument) is accepted and ignored.
        """
        if len(featmap_sizes) != self.num_levels:
            raise ValueError(f"{len(featmap_sizes)} feature map sizes for {self.num_levels} levels")
        h, w = int(pad_shape[0]), int(pad_shape[1])
        flags = []
        for i, (feat_h, feat_w) in enumerate(featmap_sizes):
            stride_w, stride_h = self.strides[i]
            valid_h = min(int(np.ceil(h / stride_h)), int(feat_h))
            valid_w = min(int(np.ceil(w / stride_w)), int(feat_w))
            flags.append(self.single_level_valid_flags((feat_h, feat_w), (valid_h, valid_w),
                                                       self.num_base_anchors[i]))
        return flags

    def __repr__(self):
        return (f"AnchorGenerator(strides={self.strides}, ratios={self.ratios.tolist()}, "
                f"scales={self.scales.tolist()}, base_sizes={self.base_sizes}, center_offset={self.center_offset})")


def anchor_inside_flags(flat_anchors, valid_flags, img_shape, allowed_border: int = 0) -> jt.Var:
    """``(N,)`` bool: valid anchors lying inside the image ``img_shape=(H, W)`` (+ ``allowed_border`` px).

    Inside means ``x1 >= -b``, ``y1 >= -b``, ``x2 < W + b``, ``y2 < H + b``. A negative
    ``allowed_border`` disables the test (returns ``valid_flags``).
    """
    anchors = as_var(flat_anchors)
    valid = as_var(valid_flags, "bool")
    if anchors.shape[0] != valid.shape[0]:
        raise ValueError(f"{anchors.shape[0]} anchors but {valid.shape[0]} valid flags")
    if allowed_border < 0:
        return valid
    img_h, img_w = float(img_shape[0]), float(img_shape[1])
    b = float(allowed_border)
    return (valid & (anchors[:, 0] >= -b) & (anchors[:, 1] >= -b)
            & (anchors[:, 2] < img_w + b) & (anchors[:, 3] < img_h + b))
