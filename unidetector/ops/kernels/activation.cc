// ReLU and residual add + ReLU on the CPU: the jt.code kernels of unidetector/ops/activation.py.
// Flat loops over n float32 elements, OpenMP over the elements (Jittor's own elementwise CPU kernels
// run on one thread, with index arithmetic per element):
//   relu          y = max(x, 0)
//   add_relu      y = max(a + b, 0)
//   relu_backward dx = dy where y > 0, else 0     (y: the forward output; gradient 0 at 0, as nn.relu)
#include <cstddef>

namespace unidet {

// Below this many elements one thread is faster than waking the others.
constexpr size_t kActivationParallelMin = 1 << 15;

inline void relu_cpu(const float* __restrict__ x, size_t n, float* __restrict__ y) {
    #pragma omp parallel for simd schedule(static) if (n >= kActivationParallelMin)
    for (size_t i = 0; i < n; i++) y[i] = x[i] > 0.f ? x[i] : 0.f;
}

inline void add_relu_cpu(const float* __restrict__ a, const float* __restrict__ b, size_t n, float* __restrict__ y) {
    #pragma omp parallel for simd schedule(static) if (n >= kActivationParallelMin)
    for (size_t i = 0; i < n; i++) {
        const float s = a[i] + b[i];
        y[i] = s > 0.f ? s : 0.f;
    }
}

inline void relu_backward_cpu(const float* __restrict__ y, const float* __restrict__ dy, size_t n,
                              float* __restrict__ dx) {
    #pragma omp parallel for simd schedule(static) if (n >= kActivationParallelMin)
    for (size_t i = 0; i < n; i++) dx[i] = y[i] > 0.f ? dy[i] : 0.f;
}

}  // namespace unidet
