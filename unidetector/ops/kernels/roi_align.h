// RoIAlign with mmcv semantics: the geometry of a RoI and its bilinear samples, shared by
// roi_align.cc (CPU) and roi_align.cu (CUDA), the jt.code kernels of unidetector/ops/roi_align.py
// (whose docstring states the semantics). Float arithmetic throughout, as mmcv.
// Settings, defined by roi_align.py in front of this file:
//   ROI_ALIGN_LEVELS          number of feature maps L (each RoI is pooled from its own level)
//   ROI_ALIGN_PH, ROI_ALIGN_PW  output bins per RoI (height, width)
//   ROI_ALIGN_SAMPLING_RATIO  samples per bin and axis; 0 = adaptive ceil(bin size)
//   ROI_ALIGN_ALIGNED         true: shift by -0.5 px and no size clamp (mmcv aligned)
#ifndef UNIDET_KERNELS_ROI_ALIGN_H
#define UNIDET_KERNELS_ROI_ALIGN_H

#ifndef ROI_ALIGN_LEVELS  // these defaults serve editors and the syntax check only
#define ROI_ALIGN_LEVELS 1
#define ROI_ALIGN_PH 7
#define ROI_ALIGN_PW 7
#define ROI_ALIGN_SAMPLING_RATIO 0
#define ROI_ALIGN_ALIGNED true
#endif

#include <cmath>
#include <cstddef>

#include "common.h"

namespace unidet {

// The L feature maps (B, C, H_l, W_l) float32 and their scales (feature pixels per image pixel).
struct RoIAlignLevels {
    const float* feats[ROI_ALIGN_LEVELS];
    int H[ROI_ALIGN_LEVELS], W[ROI_ALIGN_LEVELS];
    float scale[ROI_ALIGN_LEVELS];
};

// The gradients of the L maps (same shapes) and their sizes in elements.
struct RoIAlignGrads {
    float* grad[ROI_ALIGN_LEVELS];
    size_t size[ROI_ALIGN_LEVELS];
};

// Geometry of one RoI on its level.
struct RoIGeom {
    int b, level, H, W, grid_h, grid_w;
    float start_h, start_w, bin_h, bin_w, count;
};

// One bilinear sample: 4 flat positions in the (H,W) plane and their weights.
struct Sample { int p1, p2, p3, p4; float w1, w2, w3, w4; };

// roi: [batch_idx, x1, y1, x2, y2] in input-image pixels.
UNIDET_HD inline RoIGeom roi_geom(const float* roi, int level, int H, int W, float scale) {
    RoIGeom g;
    g.b = (int)roi[0]; g.level = level; g.H = H; g.W = W;
    const float offset = ROI_ALIGN_ALIGNED ? 0.5f : 0.0f;
    g.start_w = roi[1] * scale - offset;
    g.start_h = roi[2] * scale - offset;
    const float end_w = roi[3] * scale - offset;
    const float end_h = roi[4] * scale - offset;
    float roi_w = end_w - g.start_w, roi_h = end_h - g.start_h;
    if (!ROI_ALIGN_ALIGNED) { roi_w = roi_w > 1.f ? roi_w : 1.f; roi_h = roi_h > 1.f ? roi_h : 1.f; }
    g.bin_h = roi_h / (float)ROI_ALIGN_PH;
    g.bin_w = roi_w / (float)ROI_ALIGN_PW;
    g.grid_h = ROI_ALIGN_SAMPLING_RATIO > 0 ? ROI_ALIGN_SAMPLING_RATIO : (int)ceilf(roi_h / (float)ROI_ALIGN_PH);
    g.grid_w = ROI_ALIGN_SAMPLING_RATIO > 0 ? ROI_ALIGN_SAMPLING_RATIO : (int)ceilf(roi_w / (float)ROI_ALIGN_PW);
    const int n = g.grid_h * g.grid_w;
    g.count = (float)(n > 1 ? n : 1);
    return g;
}

// Bilinear weights at (y, x); all-zero weights for samples outside [-1, H] x [-1, W].
UNIDET_HD inline Sample bilinear(float y, float x, int H, int W) {
    Sample s = {0, 0, 0, 0, 0.f, 0.f, 0.f, 0.f};
    if (y < -1.0f || y > (float)H || x < -1.0f || x > (float)W) return s;
    if (y <= 0.f) y = 0.f;
    if (x <= 0.f) x = 0.f;
    int y_low = (int)y, x_low = (int)x, y_high, x_high;
    if (y_low >= H - 1) { y_high = y_low = H - 1; y = (float)y_low; } else y_high = y_low + 1;
    if (x_low >= W - 1) { x_high = x_low = W - 1; x = (float)x_low; } else x_high = x_low + 1;
    const float ly = y - y_low, lx = x - x_low, hy = 1.f - ly, hx = 1.f - lx;
    s.p1 = y_low * W + x_low;  s.p2 = y_low * W + x_high;
    s.p3 = y_high * W + x_low; s.p4 = y_high * W + x_high;
    s.w1 = hy * hx; s.w2 = hy * lx; s.w3 = ly * hx; s.w4 = ly * lx;
    return s;
}

// Sample (iy, ix) of bin (ph, pw).
UNIDET_HD inline Sample sample_at(const RoIGeom& g, int ph, int pw, int iy, int ix) {
    const float y = g.start_h + ph * g.bin_h + (float)(iy + .5f) * g.bin_h / (float)g.grid_h;
    const float x = g.start_w + pw * g.bin_w + (float)(ix + .5f) * g.bin_w / (float)g.grid_w;
    return bilinear(y, x, g.H, g.W);
}

}  // namespace unidet

#endif  // UNIDET_KERNELS_ROI_ALIGN_H
