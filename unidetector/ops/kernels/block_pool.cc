// Average pooling over non-overlapping K x K blocks (kernel = stride = K, no padding, floor) on the
// CPU: the jt.code kernels of unidetector/ops/block_pool.py (CLIP's anti-aliasing AvgPool2d(stride)).
//   x (P, H, W) planes (P = N * C of an NCHW tensor) -> y (P, OH, OW),  OH = H / K, OW = W / K;
//   channels-last x (N, H, W, C) -> y (N, OH, OW, C) (*_nhwc_*)
//   y = sum of the K x K block / K^2;  backward: dx = dy / K^2 spread over the block, 0 on the
//   rows / columns the floor drops.
// OpenMP over output rows (forward) or input rows (backward); the innermost loop is contiguous.
#ifndef BLOCK_POOL_K  // set by block_pool.py; this default serves editors and the syntax check
#define BLOCK_POOL_K 2
#endif

#include <cstddef>

namespace unidet {

constexpr int kBlockPoolK = BLOCK_POOL_K;
constexpr float kBlockPoolScale = 1.f / (BLOCK_POOL_K * BLOCK_POOL_K);

inline void block_pool_nchw_forward_cpu(const float* __restrict__ x, long P, int H, int W, float* __restrict__ y) {
    const int OH = H / kBlockPoolK, OW = W / kBlockPoolK;
    #pragma omp parallel for schedule(static)
    for (long r = 0; r < P * OH; r++) {
        const float* src = x + ((r / OH) * H + (size_t)(r % OH) * kBlockPoolK) * W;
        float* dst = y + (size_t)r * OW;
        for (int ow = 0; ow < OW; ow++) {
            float s = 0.f;
            for (int i = 0; i < kBlockPoolK; i++)
                for (int j = 0; j < kBlockPoolK; j++) s += src[(size_t)i * W + ow * kBlockPoolK + j];
            dst[ow] = s * kBlockPoolScale;
        }
    }
}

inline void block_pool_nchw_backward_cpu(const float* __restrict__ dy, long P, int H, int W, float* __restrict__ dx) {
    const int OH = H / kBlockPoolK, OW = W / kBlockPoolK;
    #pragma omp parallel for schedule(static)
    for (long r = 0; r < P * H; r++) {
        const int h = r % H;
        float* dst = dx + (size_t)r * W;
        if (h >= OH * kBlockPoolK) {
            for (int w = 0; w < W; w++) dst[w] = 0.f;
            continue;
        }
        const float* g = dy + ((r / H) * OH + h / kBlockPoolK) * (size_t)OW;
        for (int ow = 0; ow < OW; ow++) {
            const float v = g[ow] * kBlockPoolScale;
            for (int j = 0; j < kBlockPoolK; j++) dst[ow * kBlockPoolK + j] = v;
        }
        for (int w = OW * kBlockPoolK; w < W; w++) dst[w] = 0.f;
    }
}

inline void block_pool_nhwc_forward_cpu(const float* __restrict__ x, int N, int H, int W, int C,
                                        float* __restrict__ y) {
    const int OH = H / kBlockPoolK, OW = W / kBlockPoolK;
    #pragma omp parallel for schedule(static)
    for (long r = 0; r < (long)N * OH; r++) {
        const float* src = x + ((r / OH) * H + (size_t)(r % OH) * kBlockPoolK) * W * C;
        float* dst = y + (size_t)r * OW * C;
        for (int ow = 0; ow < OW; ow++) {
            float* o = dst + (size_t)ow * C;
            for (int c = 0; c < C; c++) o[c] = 0.f;
            for (int i = 0; i < kBlockPoolK; i++)
                for (int j = 0; j < kBlockPoolK; j++) {
                    const float* p = src + ((size_t)i * W + ow * kBlockPoolK + j) * C;
                    for (int c = 0; c < C; c++) o[c] += p[c];
                }
            for (int c = 0; c < C; c++) o[c] *= kBlockPoolScale;
        }
    }
}

inline void block_pool_nhwc_backward_cpu(const float* __restrict__ dy, int N, int H, int W, int C,
                                         float* __restrict__ dx) {
    const int OH = H / kBlockPoolK, OW = W / kBlockPoolK;
    #pragma omp parallel for schedule(static)
    for (long r = 0; r < (long)N * H; r++) {
        const int h = r % H;
        float* dst = dx + (size_t)r * W * C;
        int w = 0;
        if (h < OH * kBlockPoolK) {
            const float* g = dy + ((r / H) * OH + h / kBlockPoolK) * (size_t)OW * C;
            for (; w < OW * kBlockPoolK; w++) {
                const float* gc = g + (size_t)(w / kBlockPoolK) * C;
                float* o = dst + (size_t)w * C;
                for (int c = 0; c < C; c++) o[c] = gc[c] * kBlockPoolScale;
            }
        }
        for (; w < W; w++)
            for (int c = 0; c < C; c++) dst[(size_t)w * C + c] = 0.f;
    }
}

}  // namespace unidet
