// Per-class NMS / soft-NMS on the CPU: the jt.code kernel of unidetector/ops/nms.py.
#include "nms.h"

namespace unidet {

// boxes (n, 4), scores (n,), cls (n,) class ids, mc1 (1,) coordinate offset per class,
// order (n,) positions grouped by class -> new_score (n,), rank (n,); W (n, 6), ID (n,) scratch.
inline void segment_nms_cpu(int n, const float* boxes, const float* scores, const int* cls, const float* mc1,
                            const int* order, float* new_score, int* rank, float* W, int* ID) {
    for (int s = 0; s < n;) {
        int e = s + 1;
        while (e < n && !segment_start(e, order, cls)) e++;
        segment_nms(s, e, boxes, scores, cls, mc1[0], order, new_score, rank, W, ID);
        s = e;
    }
}

}  // namespace unidet
