// RoIAlign on the CPU: the forward and backward jt.code kernels of unidetector/ops/roi_align.py.
// K RoIs (K, 5) float32, RoI n pooled from map levels[n] into (K, C, ROI_ALIGN_PH, ROI_ALIGN_PW).
#include <algorithm>
#include <vector>

#include "roi_align.h"

namespace unidet {

// The bilinear samples of one RoI, bin-major (the forward and backward kernels share them);
// returns the number of samples per bin.
inline int bin_samples(const RoIGeom& g, std::vector<Sample>& samples) {
    const int per_bin = (g.grid_h > 0 && g.grid_w > 0) ? g.grid_h * g.grid_w : 0;
    samples.resize((size_t)ROI_ALIGN_PH * ROI_ALIGN_PW * per_bin);
    size_t k = 0;
    for (int ph = 0; ph < ROI_ALIGN_PH; ph++) for (int pw = 0; pw < ROI_ALIGN_PW; pw++)
        for (int iy = 0; iy < g.grid_h; iy++) for (int ix = 0; ix < g.grid_w; ix++)
            samples[k++] = sample_at(g, ph, pw, iy, ix);
    return per_bin;
}

// dst (K, C, PH, PW) = RoIAlign of rois (K, 5) on maps lv, RoI n from level levels[n].
inline void roi_align_forward_cpu(const RoIAlignLevels& lv, const float* rois, const int* levels, int K, int C,
                                  float* dst) {
    // RoIs are independent (each writes its own output rows): one OpenMP thread per RoI.
    #pragma omp parallel
    {
    std::vector<Sample> samples;
    #pragma omp for schedule(dynamic, 8)
    for (int n = 0; n < K; n++) {
        const int l = levels[n];
        const RoIGeom g = roi_geom(rois + n * 5, l, lv.H[l], lv.W[l], lv.scale[l]);
        const int per_bin = bin_samples(g, samples);
        for (int c = 0; c < C; c++) {
            const float* plane = lv.feats[l] + ((size_t)g.b * C + c) * g.H * g.W;
            float* o = dst + ((size_t)n * C + c) * ROI_ALIGN_PH * ROI_ALIGN_PW;
            const Sample* s = samples.data();
            for (int bin = 0; bin < ROI_ALIGN_PH * ROI_ALIGN_PW; bin++) {
                float acc = 0.f;
                for (int i = 0; i < per_bin; i++, s++)
                    acc += s->w1 * plane[s->p1] + s->w2 * plane[s->p2] + s->w3 * plane[s->p3] + s->w4 * plane[s->p4];
                o[bin] = acc / g.count;
            }
        }
    }
    }
}

// grads = d(sum grad_out * forward) / d(maps): zeroed, then scattered into.
inline void roi_align_backward_cpu(const RoIAlignLevels& lv, const RoIAlignGrads& grads, const float* rois,
                                   const int* levels, const float* grad_out, int K, int C) {
    for (int l = 0; l < ROI_ALIGN_LEVELS; l++) std::fill(grads.grad[l], grads.grad[l] + grads.size[l], 0.f);
    // RoIs scatter into shared planes, channels never do: sample tables first, then one thread per
    // channel, RoIs in order inside it (the same summation order as a serial loop: deterministic).
    std::vector<RoIGeom> geoms(K);
    std::vector<std::vector<Sample>> samples(K);
    std::vector<int> per_bin(K);
    #pragma omp parallel for schedule(dynamic, 8)
    for (int n = 0; n < K; n++) {
        geoms[n] = roi_geom(rois + n * 5, levels[n], lv.H[levels[n]], lv.W[levels[n]], lv.scale[levels[n]]);
        per_bin[n] = bin_samples(geoms[n], samples[n]);
    }
    #pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        for (int n = 0; n < K; n++) {
            const RoIGeom& g = geoms[n];
            float* plane = grads.grad[g.level] + ((size_t)g.b * C + c) * g.H * g.W;
            const float* go = grad_out + ((size_t)n * C + c) * ROI_ALIGN_PH * ROI_ALIGN_PW;
            const Sample* s = samples[n].data();
            for (int bin = 0; bin < ROI_ALIGN_PH * ROI_ALIGN_PW; bin++) {
                const float gb = go[bin];
                for (int i = 0; i < per_bin[n]; i++, s++) {
                    if (s->w1 == 0.f && s->w2 == 0.f && s->w3 == 0.f && s->w4 == 0.f) continue;
                    plane[s->p1] += gb * s->w1 / g.count; plane[s->p2] += gb * s->w2 / g.count;
                    plane[s->p3] += gb * s->w3 / g.count; plane[s->p4] += gb * s->w4 / g.count;
                }
            }
        }
    }
}

}  // namespace unidet
