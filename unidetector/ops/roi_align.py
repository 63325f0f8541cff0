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

__all__ = ["roi_align", "RoIAlign", "multilevel_roi_align"]

# --------------------------------------------------------------------------------------
# Kernel sources. `{...}` fields are filled by `_sources`; everything else is plain C++.
# Inputs: in0..in{L-1} = feature maps (B,C,H_l,W_l) float32, in{L} = rois (K,5) float32,
#         in{L+1} = level of each RoI (K,) int32.
# --------------------------------------------------------------------------------------

_COMMON = r"""
// Geometry of one RoI on its level (mmcv roi_align, float arithmetic throughout).
struct RoIGeom {{
    int b, level, H, W, grid_h, grid_w;
    float start_h, start_w, bin_h, bin_w, count;
}};

// One bilinear sample: 4 flat positions in the (H,W) plane and their weights.
struct Sample {{ int p1, p2, p3, p4; float w1, w2, w3, w4; }};

__HD__ inline RoIGeom roi_geom(const float* roi, int level, int H, int W, float scale) {{
    RoIGeom g;
    g.b = (int)roi[0]; g.level = level; g.H = H; g.W = W;
    const float offset = {aligned} ? 0.5f : 0.0f;
    g.start_w = roi[1] * scale - offset;
    g.start_h = roi[2] * scale - offset;
    const float end_w = roi[3] * scale - offset;
    const float end_h = roi[4] * scale - offset;
    float roi_w = end_w - g.start_w, roi_h = end_h - g.start_h;
    if (!{aligned}) {{ roi_w = roi_w > 1.f ? roi_w : 1.f; roi_h = roi_h > 1.f ? roi_h : 1.f; }}
    g.bin_h = roi_h / (float){ph};
    g.bin_w = roi_w / (float){pw};
    g.grid_h = {sampling_ratio} > 0 ? {sampling_ratio} : (int)ceilf(roi_h / (float){ph});
    g.grid_w = {sampling_ratio} > 0 ? {sampling_ratio} : (int)ceilf(roi_w / (float){pw});
    const int n = g.grid_h * g.grid_w;
    g.count = (float)(n > 1 ? n : 1);
    return g;
}}

// Bilinear weights at (y, x); all-zero weights for samples outside [-1, H] x [-1, W].
__HD__ inline Sample bilinear(float y, float x, int H, int W) {{
    Sample s = {{0, 0, 0, 0, 0.f, 0.f, 0.f, 0.f}};
    if (y < -1.0f || y > (float)H || x < -1.0f || x > (float)W) return s;
    if (y <= 0.f) y = 0.f;
    if (x <= 0.f) x = 0.f;
    int y_low = (int)y, x_low = (int)x, y_high, x_high;
    if (y_low >= H - 1) {{ y_high = y_low = H - 1; y = (float)y_low; }} else y_high = y_low + 1;
    if (x_low >= W - 1) {{ x_high = x_low = W - 1; x = (float)x_low; }} else x_high = x_low + 1;
    const float ly = y - y_low, lx = x - x_low, hy = 1.f - ly, hx = 1.f - lx;
    s.p1 = y_low * W + x_low;  s.p2 = y_low * W + x_high;
    s.p3 = y_high * W + x_low; s.p4 = y_high * W + x_high;
    s.w1 = hy * hx; s.w2 = hy * lx; s.w3 = ly * hx; s.w4 = ly * lx;
    return s;
}}

__HD__ inline Sample sample_at(const RoIGeom& g, int ph, int pw, int iy, int ix) {{
    const float y = g.start_h + ph * g.bin_h + (float)(iy + .5f) * g.bin_h / (float)g.grid_h;
    const float x = g.start_w + pw * g.bin_w + (float)(ix + .5f) * g.bin_w / (float)g.grid_w;
    return bilinear(y, x, g.H, g.W);
}}
"""

# CPU only: the bilinear samples of one RoI, bin-major (the forward and backward kernels share them).
_CPU_SAMPLES = r"""
inline int bin_samples(const RoIGeom& g, std::vector<Sample>& samples) {{
    const int per_bin = (g.grid_h > 0 && g.grid_w > 0) ? g.grid_h * g.grid_w : 0;
    samples.resize((size_t){ph} * {pw} * per_bin);
    size_t k = 0;
    for (int ph = 0; ph < {ph}; ph++) for (int pw = 0; pw < {pw}; pw++)
        for (int iy = 0; iy < g.grid_h; iy++) for (int ix = 0; ix < g.grid_w; ix++)
            samples[k++] = sample_at(g, ph, pw, iy, ix);
    return per_bin;
}}
"""

# Per-level lookup tables, shared by CPU and CUDA (`{tables}` is generated per number of levels).
_LEVELS = r"""
#define LEVEL_TABLES {tables}
"""

_CPU_FWD = r"""
LEVEL_TABLES
const int K = in{L}_shape0, C = in0_shape1;
const float* rois = in{L}_p;
const int* levels = in{Lp1}_p;
float* dst = out0_p;
// RoIs are independent (each writes its own output rows): one OpenMP thread per RoI.
#pragma omp parallel
{{
std::vector<Sample> samples;
#pragma omp for schedule(dynamic, 8)
for (int n = 0; n < K; n++) {{
    const int l = levels[n];
    const RoIGeom g = roi_geom(rois + n * 5, l, Hs[l], Ws[l], scales[l]);
    const int per_bin = bin_samples(g, samples);
    for (int c = 0; c < C; c++) {{
        const float* plane = feats[l] + ((size_t)g.b * C + c) * g.H * g.W;
        float* o = dst + ((size_t)n * C + c) * {ph} * {pw};
        const Sample* s = samples.data();
        for (int bin = 0; bin < {ph} * {pw}; bin++) {{
            float acc = 0.f;
            for (int i = 0; i < per_bin; i++, s++)
                acc += s->w1 * plane[s->p1] + s->w2 * plane[s->p2] + s->w3 * plane[s->p3] + s->w4 * plane[s->p4];
            o[bin] = acc / g.count;
        }}
    }}
}}
}}
"""

_CPU_BWD = r"""
LEVEL_TABLES
const int K = in{L}_shape0, C = in0_shape1;
const float* rois = in{L}_p;
const int* levels = in{Lp1}_p;
const float* gsrc = in{Lp2}_p;
float* grads[{L}] = {{ {grad_ptrs} }};
for (int l = 0; l < {L}; l++) std::fill(grads[l], grads[l] + grad_sizes[l], 0.f);
// RoIs scatter into shared planes, channels never do: sample tables first, then one thread per
// channel, RoIs in order inside it (the same summation order as a serial loop: deterministic).
std::vector<RoIGeom> geoms(K);
std::vector<std::vector<Sample>> samples(K);
std::vector<int> per_bin(K);
#pragma omp parallel for schedule(dynamic, 8)
for (int n = 0; n < K; n++) {{
    geoms[n] = roi_geom(rois + n * 5, levels[n], Hs[levels[n]], Ws[levels[n]], scales[levels[n]]);
    per_bin[n] = bin_samples(geoms[n], samples[n]);
}}
#pragma omp parallel for schedule(static)
for (int c = 0; c < C; c++) {{
    for (int n = 0; n < K; n++) {{
        const RoIGeom& g = geoms[n];
        float* plane = grads[g.level] + ((size_t)g.b * C + c) * g.H * g.W;
        const float* go = gsrc + ((size_t)n * C + c) * {ph} * {pw};
        const Sample* s = samples[n].data();
        for (int bin = 0; bin < {ph} * {pw}; bin++) {{
            const float gb = go[bin];
            for (int i = 0; i < per_bin[n]; i++, s++) {{
                if (s->w1 == 0.f && s->w2 == 0.f && s->w3 == 0.f && s->w4 == 0.f) continue;
                plane[s->p1] += gb * s->w1 / g.count; plane[s->p2] += gb * s->w2 / g.count;
                plane[s->p3] += gb * s->w3 / g.count; plane[s->p4] += gb * s->w4 / g.count;
            }}
        }}
    }}
}}
"""

# CUDA: one thread per output element (n, c, ph, pw), as mmcv's CUDA kernels; the
# backward scatters with atomicAdd.
_CUDA_HEADER = r"""
__global__ void roi_align_fwd_kernel(@ARGS_DEF) {{
    @PRECALC
    LEVEL_TABLES
    const int K = in{L}_shape0, C = in0_shape1;
    const long total = (long)K * C * {ph} * {pw};
    for (long idx = blockIdx.x * (long)blockDim.x + threadIdx.x; idx < total; idx += (long)blockDim.x * gridDim.x) {{
        const int pw = idx % {pw}, ph = (idx / {pw}) % {ph};
        const int c = (idx / ({pw} * {ph})) % C, n = idx / ((long){pw} * {ph} * C);
        const int l = in{Lp1}_p[n];
        const RoIGeom g = roi_geom(in{L}_p + n * 5, l, Hs[l], Ws[l], scales[l]);
        const float* plane = feats[l] + ((size_t)g.b * C + c) * g.H * g.W;
        float acc = 0.f;
        for (int iy = 0; iy < g.grid_h; iy++) for (int ix = 0; ix < g.grid_w; ix++) {{
            const Sample s = sample_at(g, ph, pw, iy, ix);
            acc += s.w1 * plane[s.p1] + s.w2 * plane[s.p2] + s.w3 * plane[s.p3] + s.w4 * plane[s.p4];
        }}
        out0_p[idx] = acc / g.count;
    }}
}}

__global__ void roi_align_bwd_kernel(@ARGS_DEF) {{
    @PRECALC
    LEVEL_TABLES
    float* grads[{L}] = {{ {grad_ptrs} }};
    const int K = in{L}_shape0, C = in0_shape1;
    const long total = (long)K * C * {ph} * {pw};
    for (long idx = blockIdx.x * (long)blockDim.x + threadIdx.x; idx < total; idx += (long)blockDim.x * gridDim.x) {{
        const int pw = idx % {pw}, ph = (idx / {pw}) % {ph};
        const int c = (idx / ({pw} * {ph})) % C, n = idx / ((long){pw} * {ph} * C);
        const int l = in{Lp1}_p[n];
        const RoIGeom g = roi_geom(in{L}_p + n * 5, l, Hs[l], Ws[l], scales[l]);
        float* plane = grads[l] + ((size_t)g.b * C + c) * g.H * g.W;
        const float gb = in{Lp2}_p[idx];
        for (int iy = 0; iy < g.grid_h; iy++) for (int ix = 0; ix < g.grid_w; ix++) {{
            const Sample s = sample_at(g, ph, pw, iy, ix);
            if (s.w1 == 0.f && s.w2 == 0.f && s.w3 == 0.f && s.w4 == 0.f) continue;
            atomicAdd(plane + s.p1, gb * s.w1 / g.count); atomicAdd(plane + s.p2, gb * s.w2 / g.count);
            atomicAdd(plane + s.p3, gb * s.w3 / g.count); atomicAdd(plane + s.p4, gb * s.w4 / g.count);
        }}
    }}
}}
"""

_CUDA_FWD = r"""
const long total = (long)in{L}_shape0 * in0_shape1 * {ph} * {pw};
const int blocks = (int)std::min<long>((total + 511) / 512, 65535L * 8);
roi_align_fwd_kernel<<<blocks, 512>>>(@ARGS);
"""

_CUDA_BWD = r"""
{memsets}
const long total = (long)in{L}_shape0 * in0_shape1 * {ph} * {pw};
const int blocks = (int)std::min<long>((total + 511) / 512, 65535L * 8);
roi_align_bwd_kernel<<<blocks, 512>>>(@ARGS);
"""


def _sources(num_levels, scales, output_size, sampling_ratio, aligned):
    """Fill the kernel templates for ``num_levels`` maps with the given (static) settings."""
    L = num_levels
    ph, pw = output_size
    scale_list = ", ".join(f"(float){float(s)!r}" for s in scales)
    tables = (f"const float* feats[{L}] = {{ {', '.join(f'in{i}_p' for i in range(L))} }}; "
              f"const int Hs[{L}] = {{ {', '.join(f'(int)in{i}_shape2' for i in range(L))} }}; "
              f"const int Ws[{L}] = {{ {', '.join(f'(int)in{i}_shape3' for i in range(L))} }}; "
              f"const float scales[{L}] = {{ {scale_list} }};"
              f"const size_t grad_sizes[{L}] = {{ {', '.join(f'(size_t)in{i}_shape0 * in{i}_shape1 * in{i}_shape2 * in{i}_shape3' for i in range(L))} }}; "
              f"(void)feats; (void)grad_sizes;")
    fields = dict(L=L, Lp1=L + 1, Lp2=L + 2, ph=ph, pw=pw, sampling_ratio=int(sampling_ratio),
                  aligned="true" if aligned else "false",
                  grad_ptrs=", ".join(f"out{i}_p" for i in range(L)),
                  memsets="\n".join(f"cudaMemsetAsync(out{i}_p, 0, out{i}->size);" for i in range(L)))
    common = _COMMON.format(**fields) + _LEVELS.format(tables=tables)
    cpu_header = ("#include <vector>\n#include <algorithm>\n#include <cmath>\n#define __HD__\n" + common
                  + _CPU_SAMPLES.format(**fields))
    cuda_header = "#include <algorithm>\n#define __HD__ __host__ __device__\n" + common + _CUDA_HEADER.format(**fields)
    return dict(fwd=(cpu_header, _CPU_FWD.format(**fields), cuda_header, _CUDA_FWD.format(**fields)),
                bwd=(cpu_header, _CPU_BWD.format(**fields), cuda_header, _CUDA_BWD.format(**fields)))


class _MultiLevelRoIAlign(jt.Function):
    """``jt.Function`` wrapper: forward and backward kernels for L levels."""

    def __init__(self, scales, output_size, sampling_ratio, aligned):
        self.src = _sources(len(scales), scales, output_size, sampling_ratio, aligned)
        self.output_size = output_size

    def execute(self, *args):
        *feats, rois, levels = args
        self.feats, self.rois, self.levels = feats, rois, levels
        cpu_header, cpu_src, cuda_header, cuda_src = self.src["fwd"]
        shape = (rois.shape[0], feats[0].shape[1], *self.output_size)
        return jt.code(shape, "float32", [*feats, rois, levels], cpu_header=cpu_header, cpu_src=cpu_src,
                       cuda_header=cuda_header, cuda_src=cuda_src)

    def grad(self, grad_out):
        cpu_header, cpu_src, cuda_header, cuda_src = self.src["bwd"]
        grads = jt.code([f.shape for f in self.feats], ["float32"] * len(self.feats),
                        [*self.feats, self.rois, self.levels, grad_out.float32()],
                        cpu_header=cpu_header, cpu_src=cpu_src, cuda_header=cuda_header, cuda_src=cuda_src)
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
