"""RoIAlign with mmcv semantics, as Jittor ``jt.code`` kernels (CPU and CUDA).

One kernel pools every RoI from *its own* feature level, so the FPN extractor
(:class:`~unidetector.models.roi_heads.roi_extractors.SingleRoIExtractor`) runs
one forward and one backward kernel for all levels; the single-map
:func:`roi_align` is the one-level case.

Semantics (mmcv ``roi_align``, ``pool_mode='avg'``), for a RoI
``[b, x1, y1, x2, y2]`` in input-image pixels and a map of stride ``1/scale``::

    offset      = 0.5 if aligned else 0
    start       = (x1, y1) * scale - offset          # feature-map pixels
    size        = (x2 - x1, y2 - y1) * scale         # NOT clamped when aligned
                  (aligned=False: clamped to >= 1)
    bin         = size / output_size
    grid        = sampling_ratio if > 0 else ceil(bin)   # samples per bin and axis
    sample(iy)  = start + ph * bin + (iy + 0.5) * bin / grid
    out         = sum(bilinear(sample)) / max(grid_h * grid_w, 1)

Bilinear sampling: a sample with ``y < -1`` or ``y > H`` (or ``x < -1``,
``x > W``) contributes 0; otherwise negative coordinates are clamped to 0 and
coordinates past ``H-1``/``W-1`` to the last row/column. A zero-width RoI with
adaptive sampling has ``grid = 0`` samples and gives exactly 0.
"""
from __future__ import annotations

from typing import Sequence

import jittor as jt
import numpy as np
from jittor import nn

from . import kernel_source

__all__ = ["roi_align", "RoIAlign", "multilevel_roi_align"]

# Kernel sources: kernels/roi_align.h (geometry and sampling, shared), roi_align.cc (CPU) and
# roi_align.cu (CUDA); `_kernel_code` gives them their settings and binds Jittor's names.
# Inputs: in0..in{L-1} = feature maps (B,C,H_l,W_l) float32, in{L} = rois (K,5) float32,
#         in{L+1} = level of each RoI (K,) int32; backward: in{L+2} = gradient of the output.
_CPU_SOURCE = kernel_source.load("roi_align.cc")
_CUDA_SOURCE = kernel_source.load("roi_align.cu")


def _braced(items) -> str:
    """C++ braced initializer list of ``items``."""
    return "{" + ", ".join(items) + "}"


def _maps_table(scales) -> str:
    """C++ statement declaring ``lv``: the L input maps in0..in{L-1} (``unidet::RoIAlignLevels``)."""
    maps = range(len(scales))
    fields = [_braced(f"in{i}_p" for i in maps), _braced(f"(int)in{i}_shape2" for i in maps),
              _braced(f"(int)in{i}_shape3" for i in maps), _braced(f"(float){float(s)!r}" for s in scales)]
    return f"const unidet::RoIAlignLevels lv = {_braced(fields)};\n"


def _grads_table(num_levels: int) -> str:
    """C++ statement declaring ``grads``: the backward's L outputs (``unidet::RoIAlignGrads``)."""
    maps = range(num_levels)
    fields = [_braced(f"out{i}_p" for i in maps),
              _braced(f"(size_t)in{i}_shape0 * in{i}_shape1 * in{i}_shape2 * in{i}_shape3" for i in maps)]
    return f"const unidet::RoIAlignGrads grads = {_braced(fields)};\n"


def _kernel_code(scales, output_size, sampling_ratio, aligned) -> dict:
    """``{"forward": KernelCode, "backward": KernelCode}`` for ``len(scales)`` maps with these (static) settings."""
    L = len(scales)
    ph, pw = output_size
    macros = {"ROI_ALIGN_LEVELS": L, "ROI_ALIGN_PH": int(ph), "ROI_ALIGN_PW": int(pw),
              "ROI_ALIGN_SAMPLING_RATIO": int(sampling_ratio), "ROI_ALIGN_ALIGNED": "true" if aligned else "false"}
    cpu_header, cuda_header = kernel_source.header(_CPU_SOURCE, macros), kernel_source.header(_CUDA_SOURCE, macros)
    rois, sizes = f"in{L}_p, in{L + 1}_p", f"(int)in{L}_shape0, (int)in0_shape1"
    fwd = f"{_maps_table(scales)}unidet::roi_align_forward_%s(lv, {rois}, {sizes}, out0_p);"
    bwd = (f"{_maps_table(scales)}{_grads_table(L)}"
           f"unidet::roi_align_backward_%s(lv, grads, {rois}, in{L + 2}_p, {sizes});")
    return {"forward": kernel_source.KernelCode(cpu_header, fwd % "cpu", cuda_header, fwd % "cuda"),
            "backward": kernel_source.KernelCode(cpu_header, bwd % "cpu", cuda_header, bwd % "cuda")}


class _MultiLevelRoIAlign(jt.Function):
    """``jt.Function`` wrapper: forward and backward kernels for L levels."""

    def __init__(self, scales, output_size, sampling_ratio, aligned):
        self.code = _kernel_code(scales, output_size, sampling_ratio, aligned)
        self.output_size = output_size

    def execute(self, *args):
        *feats, rois, levels = args
        self.feats, self.rois, self.levels = feats, rois, levels
        shape = (rois.shape[0], feats[0].shape[1], *self.output_size)
        return jt.code(shape, "float32", [*feats, rois, levels], **self.code["forward"].kwargs())

    def grad(self, grad_out):
        grads = jt.code([f.shape for f in self.feats], ["float32"] * len(self.feats),
                        [*self.feats, self.rois, self.levels, grad_out.float32()], **self.code["backward"].kwargs())
        return (*grads, None, None)


def _pair(x) -> tuple:
    return (int(x), int(x)) if np.isscalar(x) else tuple(int(v) for v in x)


def _check_rois(rois: jt.Var, batch_size: int) -> None:
    """Raise ``ValueError`` for a bad RoI array or batch index (one host sync)."""
    if rois.ndim != 2 or rois.shape[1] != 5:
        raise ValueError(f"rois must have shape (K, 5) [batch_idx, x1, y1, x2, y2], got {tuple(rois.shape)}")
    if rois.shape[0] == 0:
        return
    b = rois[:, 0].numpy()
    bad = np.flatnonzero((b < 0) | (b >= batch_size) | (b != np.floor(b)))
    if bad.size:
        raise ValueError(f"rois[{bad[0]}] has batch index {b[bad[0]]!r}, but the feature map has "
                         f"batch size {batch_size} (valid: 0..{batch_size - 1})")


def multilevel_roi_align(feats: Sequence[jt.Var], rois, levels, spatial_scales: Sequence[float], output_size,
                         sampling_ratio: int = 0, aligned: bool = True) -> jt.Var:
    """RoIAlign where RoI ``k`` is pooled from ``feats[levels[k]]`` (one kernel for all levels).

    Args:
        feats: L float32 maps ``(B, C, H_l, W_l)``, same ``B`` and ``C``.
        rois: ``(K, 5)`` ``[batch_idx, x1, y1, x2, y2]`` in input-image pixels.
        levels: ``(K,)`` int level index of each RoI, in ``[0, L)``.
        spatial_scales: L floats, ``1 / stride_l``.
        output_size: int or ``(out_h, out_w)``.
        sampling_ratio: samples per bin and axis; 0 = adaptive ``ceil(bin size)``.
        aligned: mmcv ``aligned`` (shift by -0.5 px, no size clamp).

    Returns:
        ``(K, C, out_h, out_w)`` float32, differentiable w.r.t. every map.
    """
    feats = [f if isinstance(f, jt.Var) else jt.array(np.asarray(f, np.float32)) for f in feats]
    rois = (rois if isinstance(rois, jt.Var) else jt.array(np.asarray(rois, np.float32))).float32().detach()
    levels = (levels if isinstance(levels, jt.Var) else jt.array(np.asarray(levels))).int32().detach()
    output_size = _pair(output_size)
    if len(feats) != len(spatial_scales) or not feats:
        raise ValueError(f"got {len(feats)} feature maps and {len(spatial_scales)} spatial scales")
    B, C = feats[0].shape[:2]
    for i, f in enumerate(feats):
        if f.ndim != 4 or f.shape[0] != B or f.shape[1] != C:
            raise ValueError(f"feature map {i} has shape {tuple(f.shape)}; expected (B={B}, C={C}, H, W)")
    _check_rois(rois, B)
    if levels.shape != (rois.shape[0],):
        raise ValueError(f"levels must have shape ({rois.shape[0]},), got {tuple(levels.shape)}")
    if rois.shape[0] == 0:  # no kernel on empty inputs; keep the graph so grads are zeros
        return jt.zeros((0, C, *output_size), dtype="float32") + sum(f.sum() * 0 for f in feats)
    fn = _MultiLevelRoIAlign([float(s) for s in spatial_scales], output_size, int(sampling_ratio), bool(aligned))
    return fn(*[f.float32() for f in feats], rois, levels)


def roi_align(input, rois, output_size, spatial_scale: float = 1.0, sampling_ratio: int = 0,
              pool_mode: str = "avg", aligned: bool = True) -> jt.Var:
    """mmcv ``roi_align``: pool ``(K, C, out_h, out_w)`` features for ``(K, 5)`` RoIs.

    Args:
        input: ``(B, C, H, W)`` float32 feature map.
        rois: ``(K, 5)`` ``[batch_idx, x1, y1, x2, y2]`` in input-image pixels; a batch
            index outside ``[0, B)`` raises ``ValueError``.
        output_size: int or ``(out_h, out_w)``.
        spatial_scale: feature pixels per image pixel (``1 / stride``).
        sampling_ratio: samples per bin and axis; 0 = adaptive.
        pool_mode: only ``'avg'`` (the mode every UniDetector config uses).
        aligned: mmcv ``aligned`` flag (True in mmdet v2).
    """
    if pool_mode != "avg":
        raise NotImplementedError(f"roi_align pool_mode={pool_mode!r}: only 'avg' is implemented")
    rois = rois if isinstance(rois, jt.Var) else jt.array(np.asarray(rois, np.float32))
    levels = jt.zeros((rois.shape[0],), dtype="int32")
    return multilevel_roi_align([input], rois, levels, [spatial_scale], output_size, sampling_ratio, aligned)


class RoIAlign(nn.Module):
    """mmcv ``RoIAlign`` module (``execute(input, rois)``); see :func:`roi_align`."""

    def __init__(self, output_size, spatial_scale: float = 1.0, sampling_ratio: int = 0, pool_mode: str = "avg",
                 aligned: bool = True, use_torchvision: bool = False):
        super().__init__()
        if use_torchvision:
            raise NotImplementedError("RoIAlign(use_torchvision=True) is not supported")
        if pool_mode != "avg":
            raise NotImplementedError(f"RoIAlign pool_mode={pool_mode!r}: only 'avg' is implemented")
        self.output_size = _pair(output_size)
        self.spatial_scale = float(spatial_scale)
        self.sampling_ratio = int(sampling_ratio)
        self.pool_mode = pool_mode
        self.aligned = bool(aligned)

    def execute(self, input, rois):
        return roi_align(input, rois, self.output_size, self.spatial_scale, self.sampling_ratio,
                         self.pool_mode, self.aligned)

    def __repr__(self):
        return (f"RoIAlign(output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
                f"sampling_ratio={self.sampling_ratio}, pool_mode={self.pool_mode!r}, aligned={self.aligned})")
