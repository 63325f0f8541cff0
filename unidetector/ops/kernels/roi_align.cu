// RoIAlign on CUDA: the forward and backward jt.code kernels of unidetector/ops/roi_align.py.
// One thread per output element (n, c, ph, pw), as mmcv's CUDA kernels; the backward scatters
// with atomicAdd.
#include <algorithm>

#include "roi_align.h"

namespace unidet {

// Output element idx = ((n * C + c) * PH + ph) * PW + pw: channel c, bin (ph, pw), geometry of RoI n.
__device__ inline RoIGeom element_geom(long idx, int C, const RoIAlignLevels& lv, const float* rois, const int* levels,
                                       int& c, int& ph, int& pw) {
    pw = idx % ROI_ALIGN_PW;
    ph = (idx / ROI_ALIGN_PW) % ROI_ALIGN_PH;
    c = (idx / (ROI_ALIGN_PW * ROI_ALIGN_PH)) % C;
    const int n = idx / ((long)ROI_ALIGN_PW * ROI_ALIGN_PH * C);
    const int l = levels[n];
    return roi_geom(rois + n * 5, l, lv.H[l], lv.W[l], lv.scale[l]);
}

__global__ void roi_align_fwd_kernel(RoIAlignLevels lv, const float* rois, const int* levels, int K, int C,
                                     float* out) {
    const long total = (long)K * C * ROI_ALIGN_PH * ROI_ALIGN_PW;
    for (long idx = blockIdx.x * (long)blockDim.x + threadIdx.x; idx < total; idx += (long)blockDim.x * gridDim.x) {
        int c, ph, pw;
        const RoIGeom g = element_geom(idx, C, lv, rois, levels, c, ph, pw);
        const float* plane = lv.feats[g.level] + ((size_t)g.b * C + c) * g.H * g.W;
        float acc = 0.f;
        for (int iy = 0; iy < g.grid_h; iy++) for (int ix = 0; ix < g.grid_w; ix++) {
            const Sample s = sample_at(g, ph, pw, iy, ix);
            acc += s.w1 * plane[s.p1] + s.w2 * plane[s.p2] + s.w3 * plane[s.p3] + s.w4 * plane[s.p4];
        }
        out[idx] = acc / g.count;
    }
}

__global__ void roi_align_bwd_kernel(RoIAlignLevels lv, RoIAlignGrads grads, const float* rois, const int* levels,
                                     const float* grad_out, int K, int C) {
    const long total = (long)K * C * ROI_ALIGN_PH * ROI_ALIGN_PW;
    for (long idx = blockIdx.x * (long)blockDim.x + threadIdx.x; idx < total; idx += (long)blockDim.x * gridDim.x) {
        int c, ph, pw;
        const RoIGeom g = element_geom(idx, C, lv, rois, levels, c, ph, pw);
        float* plane = grads.grad[g.level] + ((size_t)g.b * C + c) * g.H * g.W;
        const float gb = grad_out[idx];
        for (int iy = 0; iy < g.grid_h; iy++) for (int ix = 0; ix < g.grid_w; ix++) {
            const Sample s = sample_at(g, ph, pw, iy, ix);
            if (s.w1 == 0.f && s.w2 == 0.f && s.w3 == 0.f && s.w4 == 0.f) continue;
            atomicAdd(plane + s.p1, gb * s.w1 / g.count); atomicAdd(plane + s.p2, gb * s.w2 / g.count);
            atomicAdd(plane + s.p3, gb * s.w3 / g.count); atomicAdd(plane + s.p4, gb * s.w4 / g.count);
        }
    }
}

inline int roi_align_blocks(int K, int C) {
    const long total = (long)K * C * ROI_ALIGN_PH * ROI_ALIGN_PW;
    return (int)std::min<long>((total + 511) / 512, 65535L * 8);
}

// out (K, C, PH, PW) = RoIAlign of rois (K, 5) on maps lv, RoI n from level levels[n]; device pointers.
inline void roi_align_forward_cuda(const RoIAlignLevels& lv, const float* rois, const int* levels, int K, int C,
                                   float* out) {
    roi_align_fwd_kernel<<<roi_align_blocks(K, C), 512>>>(lv, rois, levels, K, C, out);
}

// grads = d(sum grad_out * forward) / d(maps): zeroed, then scattered into.
inline void roi_align_backward_cuda(const RoIAlignLevels& lv, const RoIAlignGrads& grads, const float* rois,
                                    const int* levels, const float* grad_out, int K, int C) {
    for (int l = 0; l < ROI_ALIGN_LEVELS; l++) cudaMemsetAsync(grads.grad[l], 0, grads.size[l] * sizeof(float));
    roi_align_bwd_kernel<<<roi_align_blocks(K, C), 512>>>(lv, grads, rois, levels, grad_out, K, C);
}

}  // namespace unidet
