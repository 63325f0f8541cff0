// Orderings for the NMS family on the CPU: jt.code kernels of unidetector/ops/nms.py.
#include <algorithm>
#include <numeric>
#include <vector>

namespace unidet {

// order (n,) = argsort by (pri ascending, sec descending, index ascending), a strict total
// order, so the result is unique; only its first k entries are sorted when k < n.
inline void lexsort_cpu(const int* pri, const float* sec, int n, int k, int* order) {
    std::iota(order, order + n, 0);
    auto less = [&](int a, int b) {
        if (pri[a] != pri[b]) return pri[a] < pri[b];
        if (sec[a] != sec[b]) return sec[a] > sec[b];
        return a < b;
    };
    if (k < n) std::partial_sort(order, order + k, order + n, less);
    else std::sort(order, order + n, less);
}

// order (n,) groups equal class ids cls (ascending), index order within a class (stable):
// a counting sort, or a comparison sort for sparse ids.
inline void group_by_class_cpu(const int* cls, int n, int* order) {
    int lo = n ? cls[0] : 0, hi = lo;
    for (int i = 0; i < n; i++) { lo = cls[i] < lo ? cls[i] : lo; hi = cls[i] > hi ? cls[i] : hi; }
    if ((long)hi - lo > 4L * n + 1024) {  // sparse ids: comparison sort
        std::iota(order, order + n, 0);
        std::stable_sort(order, order + n, [&](int a, int b) { return cls[a] < cls[b]; });
    } else {  // counting sort
        std::vector<int> start((size_t)(hi - lo) + 2, 0);
        for (int i = 0; i < n; i++) start[cls[i] - lo + 1]++;
        for (size_t c = 0; c + 1 < start.size(); c++) start[c + 1] += start[c];
        for (int i = 0; i < n; i++) order[start[cls[i] - lo]++] = i;
    }
}

}  // namespace unidet
