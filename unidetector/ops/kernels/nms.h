// Per-class NMS and soft-NMS with mmcv semantics (the exact mmcv CPU algorithm), shared by
// nms.cc (CPU) and nms.cu (CUDA, one thread per class), the jt.code kernels of
// unidetector/ops/nms.py (whose docstring states the semantics).
// Settings, defined by nms.py in front of this file:
//   NMS_METHOD         0 naive, 1 linear, 2 gaussian (soft-NMS), 3 hard NMS
//   NMS_IOU_THRESHOLD  IoU threshold (float); NMS_SIGMA gaussian sigma; NMS_MIN_SCORE soft-NMS drop score
//   NMS_OFFSET         0.f or 1.f: box widths are x2 - x1 + offset
#ifndef UNIDET_KERNELS_NMS_H
#define UNIDET_KERNELS_NMS_H

#ifndef NMS_METHOD  // these defaults serve editors and the syntax check only
#define NMS_METHOD 3
#define NMS_IOU_THRESHOLD ((float)0.5)
#define NMS_SIGMA ((float)0.5)
#define NMS_MIN_SCORE ((float)0.001)
#define NMS_OFFSET 0.f
#endif

#include <algorithm>
#include <cmath>

#include "common.h"

namespace unidet {

// Offset coordinate b + cls * (max + 1), rounded after the product as in PyTorch (no FMA).
UNIDET_HD inline float offset_coord(float b, int cls, float mc1) {
#ifdef __CUDA_ARCH__
    return __fadd_rn(b, __fmul_rn((float)cls, mc1));
#else
    volatile float off = (float)cls * mc1;
    return b + off;
#endif
}

UNIDET_HD inline float box_iou(const float* a, const float* b) {  // a, b: x1 y1 x2 y2 area
    const float w = fmaxf(0.f, fminf(a[2], b[2]) - fmaxf(a[0], b[0]) + NMS_OFFSET);
    const float h = fmaxf(0.f, fminf(a[3], b[3]) - fmaxf(a[1], b[1]) + NMS_OFFSET);
    const float inter = w * h;
    const float uni = a[4] + b[4] - inter;
    return uni > 0.f ? inter / uni : 0.f;
}

// Process positions [s, e) of `order` (one class). W: (N,6) scratch rows x1 y1 x2 y2 area score,
// ID: (N,) scratch. Writes new_score (decayed score) and rank (in the class's processing order,
// -1 = dropped) of every box of the class.
UNIDET_HD inline void segment_nms(int s, int e, const float* boxes, const float* scores, const int* cls,
                                  float mc1, const int* order, float* new_score, int* rank, float* W, int* ID) {
    for (int p = s; p < e; p++) {
        const int j = order[p];
        float* w = W + 6 * p;
        for (int k = 0; k < 4; k++) w[k] = offset_coord(boxes[4 * j + k], cls[j], mc1);
        w[4] = (w[2] - w[0] + NMS_OFFSET) * (w[3] - w[1] + NMS_OFFSET);
        w[5] = scores[j];
        ID[p] = j;
        rank[j] = -1;
    }
    if (NMS_METHOD == 3) {  // hard NMS; positions are sorted by descending score
        int r = 0;
        for (int i = s; i < e; i++) {
            if (ID[i] < 0) continue;
            new_score[ID[i]] = W[6 * i + 5];
            rank[ID[i]] = r++;
            for (int p = i + 1; p < e; p++)
                if (ID[p] >= 0 && box_iou(W + 6 * i, W + 6 * p) > NMS_IOU_THRESHOLD) ID[p] = -1;
        }
        return;
    }
    // soft-NMS: mmcv softnms_cpu on positions [s, end). The next box to select is the first
    // maximum of the remaining scores; it is tracked during the decay pass, whose visiting
    // order is the final position order (a dropped box is replaced by the last one, re-visited).
    int end = e, best = s;
    for (int p = s + 1; p < end; p++) if (W[6 * best + 5] < W[6 * p + 5]) best = p;
    for (int i = s; i < end; i++) {
        for (int k = 0; k < 6; k++) { float t = W[6 * i + k]; W[6 * i + k] = W[6 * best + k]; W[6 * best + k] = t; }
        int t = ID[i]; ID[i] = ID[best]; ID[best] = t;
        new_score[ID[i]] = W[6 * i + 5];
        rank[ID[i]] = i - s;
        best = i + 1;
        for (int p = i + 1; p < end; p++) {
            const float ovr = box_iou(W + 6 * i, W + 6 * p);
            float weight = 1.f;
            if (NMS_METHOD == 0) { if (ovr >= NMS_IOU_THRESHOLD) weight = 0.f; }
            else if (NMS_METHOD == 1) { if (ovr >= NMS_IOU_THRESHOLD) weight = 1.f - ovr; }
            else if (ovr != 0.f) weight = expf(-(ovr * ovr) / NMS_SIGMA);
            W[6 * p + 5] *= weight;
            if (W[6 * p + 5] < NMS_MIN_SCORE) {  // drop: move the last box here and re-visit p
                end--;
                for (int k = 0; k < 6; k++) W[6 * p + k] = W[6 * end + k];
                ID[p] = ID[end];
                p--;
            } else if (W[6 * best + 5] < W[6 * p + 5]) {
                best = p;
            }
        }
    }
}

// True where a new class starts in `order` (positions grouped by class).
UNIDET_HD inline bool segment_start(int p, const int* order, const int* cls) {
    return p == 0 || cls[order[p]] != cls[order[p - 1]];
}

}  // namespace unidet

#endif  // UNIDET_KERNELS_NMS_H
