// Batch-statistics BatchNorm of (N, C, H, W) float32 on the CPU: the jt.code kernels of
// unidetector/ops/batch_norm.py. Per channel c, with M = N*H*W:
//   mean = sum x / M,  var = sum x^2 / M - mean^2                (biased, as Jittor's nn.BatchNorm)
//   y    = gamma (x - mean) / sqrt(var + eps) + beta
//   dgamma = sum dy * xhat,  dbeta = sum dy                      (xhat = (x - mean) / sqrt(var + eps))
//   dx   = gamma / sqrt(var + eps) * (dy - dbeta / M - xhat * dgamma / M)
// One loop per channel (OpenMP over channels), two passes over the data, double accumulators.
// With frozen statistics (running mean / var) a BatchNorm is the per-channel affine y = x * scale + shift:
//   dx = dy * scale,  dscale = sum dy * x,  dshift = sum dy                 (channel_affine_*_cpu)
// The *_nhwc_* functions compute the same on channels-last tensors, (M = N*H*W, C): OpenMP over rows, each
// thread summing its block of rows per channel, the blocks added in thread order.
#ifndef BATCH_NORM_EPS  // set by batch_norm.py; this default serves editors and the syntax check
#define BATCH_NORM_EPS 1e-05
#endif

#include <cmath>
#include <cstddef>
#include <vector>

#include <omp.h>

namespace unidet {

// x: (N, C, HW); gamma, beta: (C,)  ->  y: (N, C, HW); mean, var: (C,) batch statistics.
inline void batch_norm_forward_cpu(const float* x, const float* gamma, const float* beta, int N, int C, size_t HW,
                                   float* y, float* mean_out, float* var_out) {
    const double M = (double)N * HW;
    #pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        double s = 0, ss = 0;
        for (int n = 0; n < N; n++) {
            const float* xc = x + ((size_t)n * C + c) * HW;
            for (size_t i = 0; i < HW; i++) { const double v = xc[i]; s += v; ss += v * v; }
        }
        const double mean = s / M, var = ss / M - mean * mean > 0 ? ss / M - mean * mean : 0;
        const double scale = gamma[c] / sqrt(var + BATCH_NORM_EPS), shift = beta[c] - mean * scale;
        for (int n = 0; n < N; n++) {
            const size_t off = ((size_t)n * C + c) * HW;
            for (size_t i = 0; i < HW; i++) y[off + i] = (float)(x[off + i] * scale + shift);
        }
        mean_out[c] = (float)mean;
        var_out[c] = (float)var;
    }
}

// x, dy: (N, C, HW); mean, var, gamma: (C,)  ->  dx: (N, C, HW); dgamma, dbeta: (C,).
// dx = k1 dy + k2 x + k3 with per-channel k1 = gamma / sigma, k2 = -gamma dgamma / (sigma^2 M),
// k3 = -gamma dbeta / (sigma M) - k2 mean.
inline void batch_norm_backward_cpu(const float* x, const float* dy, const float* mean_in, const float* var_in,
                                    const float* gamma_in, int N, int C, size_t HW,
                                    float* dx, float* dgamma_out, float* dbeta_out) {
    const double M = (double)N * HW;
    #pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        double sdy = 0, sdyx = 0;
        for (int n = 0; n < N; n++) {
            const size_t off = ((size_t)n * C + c) * HW;
            for (size_t i = 0; i < HW; i++) { const double g = dy[off + i]; sdy += g; sdyx += g * x[off + i]; }
        }
        const double mean = mean_in[c], inv_std = 1.0 / sqrt((double)var_in[c] + BATCH_NORM_EPS), gamma = gamma_in[c];
        const double dgamma = inv_std * (sdyx - mean * sdy);
        const double k1 = gamma * inv_std, k2 = -gamma * inv_std * inv_std * dgamma / M;
        const double k3 = -gamma * inv_std * sdy / M - k2 * mean;
        for (int n = 0; n < N; n++) {
            const size_t off = ((size_t)n * C + c) * HW;
            for (size_t i = 0; i < HW; i++) dx[off + i] = (float)(k1 * dy[off + i] + k2 * x[off + i] + k3);
        }
        dgamma_out[c] = (float)dgamma;
        dbeta_out[c] = (float)sdy;
    }
}

// x: (N, C, HW); scale, shift: (C,)  ->  y: (N, C, HW).
inline void channel_affine_forward_cpu(const float* x, const float* scale, const float* shift, int N, int C,
                                       size_t HW, float* y) {
    #pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < N; n++) {
        for (int c = 0; c < C; c++) {
            const size_t off = ((size_t)n * C + c) * HW;
            const float a = scale[c], b = shift[c];
            for (size_t i = 0; i < HW; i++) y[off + i] = x[off + i] * a + b;
        }
    }
}

// x, dy: (N, C, HW); scale: (C,)  ->  dx: (N, C, HW); dscale, dshift: (C,).
inline void channel_affine_backward_cpu(const float* x, const float* dy, const float* scale, int N, int C, size_t HW,
                                        float* dx, float* dscale_out, float* dshift_out) {
    #pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        double sdy = 0, sdyx = 0;
        const float a = scale[c];
        for (int n = 0; n < N; n++) {
            const size_t off = ((size_t)n * C + c) * HW;
            for (size_t i = 0; i < HW; i++) {
                const float g = dy[off + i];
                sdy += g;
                sdyx += (double)g * x[off + i];
                dx[off + i] = g * a;
            }
        }
        dscale_out[c] = (float)sdyx;
        dshift_out[c] = (float)sdy;
    }
}

// Per-channel sums over the rows of a and of a*b, in double: each thread sums a fixed block of rows, then the
// blocks are added in thread order (the same result at every call for a given thread count).
inline void channel_sums_nhwc(const float* a, const float* b, size_t M, int C, double* sum_a, double* sum_ab) {
    const int T = omp_get_max_threads();
    std::vector<double> part(2 * (size_t)T * C, 0.0);
    #pragma omp parallel num_threads(T)
    {
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        double* pa = part.data() + 2 * (size_t)t * C;
        double* pab = pa + C;
        for (size_t m = M * t / nt; m < M * (t + 1) / nt; m++) {
            const float* ra = a + m * C;
            const float* rb = b + m * C;
            for (int c = 0; c < C; c++) { const double v = ra[c]; pa[c] += v; pab[c] += v * rb[c]; }
        }
    }
    for (int c = 0; c < C; c++) { sum_a[c] = 0; sum_ab[c] = 0; }
    for (int t = 0; t < T; t++) {
        const double* pa = part.data() + 2 * (size_t)t * C;
        for (int c = 0; c < C; c++) { sum_a[c] += pa[c]; sum_ab[c] += pa[C + c]; }
    }
}

// y[m, c] = x[m, c] * scale[c] + shift[c], computed in T (double for the batch statistics, as the NCHW kernels)
template <typename T>
inline void channel_affine_rows(const float* x, const T* scale, const T* shift, size_t M, int C, float* y) {
    #pragma omp parallel for schedule(static)
    for (size_t m = 0; m < M; m++) {
        const float* r = x + m * C;
        float* o = y + m * C;
        for (int c = 0; c < C; c++) o[c] = (float)(r[c] * scale[c] + shift[c]);
    }
}

// x: (M, C); gamma, beta: (C,)  ->  y: (M, C); mean, var: (C,) batch statistics (as batch_norm_forward_cpu).
inline void batch_norm_nhwc_forward_cpu(const float* x, const float* gamma, const float* beta, size_t M, int C,
                                        float* y, float* mean_out, float* var_out) {
    std::vector<double> s(C), ss(C);
    channel_sums_nhwc(x, x, M, C, s.data(), ss.data());
    std::vector<double> scale(C), shift(C);
    for (int c = 0; c < C; c++) {
        const double mean = s[c] / M, var = ss[c] / M - mean * mean > 0 ? ss[c] / M - mean * mean : 0;
        const double k = gamma[c] / sqrt(var + BATCH_NORM_EPS);
        scale[c] = k;
        shift[c] = beta[c] - mean * k;
        mean_out[c] = (float)mean;
        var_out[c] = (float)var;
    }
    channel_affine_rows(x, scale.data(), shift.data(), M, C, y);
}

// x, dy: (M, C); mean, var, gamma: (C,)  ->  dx: (M, C); dgamma, dbeta: (C,) (as batch_norm_backward_cpu).
inline void batch_norm_nhwc_backward_cpu(const float* x, const float* dy, const float* mean_in, const float* var_in,
                                         const float* gamma_in, size_t M, int C,
                                         float* dx, float* dgamma_out, float* dbeta_out) {
    std::vector<double> sdy(C), sdyx(C);
    channel_sums_nhwc(dy, x, M, C, sdy.data(), sdyx.data());
    std::vector<double> k1(C), k2(C), k3(C);
    for (int c = 0; c < C; c++) {
        const double mean = mean_in[c], inv_std = 1.0 / sqrt((double)var_in[c] + BATCH_NORM_EPS), gamma = gamma_in[c];
        const double dgamma = inv_std * (sdyx[c] - mean * sdy[c]);
        k1[c] = gamma * inv_std;
        k2[c] = -gamma * inv_std * inv_std * dgamma / M;
        k3[c] = -gamma * inv_std * sdy[c] / M - k2[c] * mean;
        dgamma_out[c] = (float)dgamma;
        dbeta_out[c] = (float)sdy[c];
    }
    #pragma omp parallel for schedule(static)
    for (size_t m = 0; m < M; m++) {
        const float* g = dy + m * C;
        const float* r = x + m * C;
        float* o = dx + m * C;
        for (int c = 0; c < C; c++) o[c] = (float)(k1[c] * g[c] + k2[c] * r[c] + k3[c]);
    }
}

// x: (M, C); scale, shift: (C,)  ->  y: (M, C).
inline void channel_affine_nhwc_forward_cpu(const float* x, const float* scale, const float* shift, size_t M, int C,
                                            float* y) {
    channel_affine_rows(x, scale, shift, M, C, y);
}

// x, dy: (M, C); scale: (C,)  ->  dx = dy * scale; dscale = sum dy * x, dshift = sum dy (C,).
inline void channel_affine_nhwc_backward_cpu(const float* x, const float* dy, const float* scale, size_t M, int C,
                                             float* dx, float* dscale_out, float* dshift_out) {
    std::vector<double> sdy(C), sdyx(C);
    channel_sums_nhwc(dy, x, M, C, sdy.data(), sdyx.data());
    for (int c = 0; c < C; c++) { dscale_out[c] = (float)sdyx[c]; dshift_out[c] = (float)sdy[c]; }
    std::vector<float> zero(C, 0.f);
    channel_affine_rows(dy, scale, zero.data(), M, C, dx);
}

}  // namespace unidet
