// Per-class NMS / soft-NMS on CUDA, one thread per class: the jt.code kernel of unidetector/ops/nms.py.
#include "nms.h"

namespace unidet {

__global__ void segment_nms_kernel(int n, const float* boxes, const float* scores, const int* cls, const float* mc1,
                                   const int* order, float* new_score, int* rank, float* W, int* ID) {
    const int s = blockIdx.x * blockDim.x + threadIdx.x;
    if (s >= n || !segment_start(s, order, cls)) return;
    int e = s + 1;
    while (e < n && !segment_start(e, order, cls)) e++;
    segment_nms(s, e, boxes, scores, cls, mc1[0], order, new_score, rank, W, ID);
}

// As segment_nms_cpu (nms.cc), on device arrays.
inline void segment_nms_cuda(int n, const float* boxes, const float* scores, const int* cls, const float* mc1,
                             const int* order, float* new_score, int* rank, float* W, int* ID) {
    segment_nms_kernel<<<(n + 127) / 128, 128>>>(n, boxes, scores, cls, mc1, order, new_score, rank, W, ID);
}

}  // namespace unidet
