// Average pooling over non-overlapping K x K blocks (kernel = stride = K, no padding, floor) on the
// CPU: the jt.code kernels of unidetector/ops/block_pool.py (CLIP's anti-aliasing AvgPool2d(stride)).
//   x (P, H, W) planes (P = N * C of an NCHW tensor) -> y (P, OH, OW),  OH = H / K, OW = W / K
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

}  // namespace unidet
