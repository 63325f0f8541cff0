// Orderings for the NMS family on CUDA (thrust): jt.code kernels of unidetector/ops/nms.py.
#include <thrust/execution_policy.h>
#include <thrust/sequence.h>
#include <thrust/sort.h>

namespace unidet {

// (pri ascending, sec descending, index ascending): a strict total order.
struct LexLess {
    const int* pri; const float* sec;
    __host__ __device__ bool operator()(int a, int b) const {
        if (pri[a] != pri[b]) return pri[a] < pri[b];
        if (sec[a] != sec[b]) return sec[a] > sec[b];
        return a < b;
    }
};

// order (n,) = argsort of device arrays pri, sec by LexLess (all n entries).
inline void lexsort_cuda(const int* pri, const float* sec, int n, int* order) {
    thrust::sequence(thrust::device, order, order + n);
    thrust::sort(thrust::device, order, order + n, LexLess{pri, sec});
}

// order (n,) groups equal class ids cls (ascending), index order within a class: a stable radix
// sort of a copy of the ids (keys, (n,) scratch).
inline void group_by_class_cuda(const int* cls, int n, int* order, int* keys) {
    cudaMemcpyAsync(keys, cls, sizeof(int) * n, cudaMemcpyDeviceToDevice);
    thrust::sequence(thrust::device, order, order + n);
    thrust::stable_sort_by_key(thrust::device, keys, keys + n, order);
}

}  // namespace unidet
