// Batched matrix product on the CPU: the jt.code kernel of unidetector/ops/bmm.py.
//   c (B, n, m) = a (B, n, k) @ b (B, k, m), float32, row-major and contiguous.
// BMM_TRANS_A: a is stored (B, k, n);  BMM_TRANS_B: b is stored (B, m, k).
// With BMM_DNNL (Jittor's oneDNN linked): one dnnl_sgemm per batch entry, OpenMP over the batch (inside the
// parallel region each sgemm runs on its own thread; a single product gets oneDNN's own threads).
// Otherwise the textbook loops, OpenMP over batch x rows, the innermost loop contiguous (it vectorises):
//   NN  c[i, :] += a[i, p] * b[p, :]     (forward)
//   NT  c[i, p]  = a[i, :] . b[p, :]     (grad wrt a = g @ b^T)
//   TN  c[p, :] += a[i, p] * g[i, :]     (grad wrt b = a^T @ g)
#ifndef BMM_TRANS_A  // set by bmm.py; these defaults serve editors and the syntax check
#define BMM_TRANS_A 0
#define BMM_TRANS_B 0
#endif
#ifndef BMM_DNNL
#define BMM_DNNL 0
#endif

#if BMM_DNNL
#include <dnnl.h>
#endif
#include <cstddef>  // the last include: Jittor inserts its defines after it

namespace unidet {

// a_dim1, a_dim2: the last two dimensions of a as stored (k is a_dim1 when BMM_TRANS_A).
inline void bmm_cpu(const float* a, const float* b, float* c, int B, int n, int m, int a_dim1, int a_dim2) {
    const int k = BMM_TRANS_A ? a_dim1 : a_dim2;
#if BMM_DNNL
    const char ta = BMM_TRANS_A ? 'T' : 'N', tb = BMM_TRANS_B ? 'T' : 'N';
    const int lda = BMM_TRANS_A ? n : k, ldb = BMM_TRANS_B ? k : m;
    if (B == 1) {
        dnnl_sgemm(ta, tb, n, m, k, 1.f, a, lda, b, ldb, 0.f, c, m);
        return;
    }
    #pragma omp parallel for schedule(static)
    for (int bi = 0; bi < B; bi++)
        dnnl_sgemm(ta, tb, n, m, k, 1.f, a + (size_t)bi * n * k, lda, b + (size_t)bi * k * m, ldb, 0.f,
                   c + (size_t)bi * n * m, m);
    return;
#endif
    #pragma omp parallel for collapse(2) schedule(static)
    for (int bi = 0; bi < B; bi++) {
        for (int i = 0; i < n; i++) {
            const float* A = a + (size_t)bi * n * k;
            const float* Bm = b + (size_t)bi * k * m;
            float* C = c + ((size_t)bi * n + i) * m;
            if (BMM_TRANS_B) {            // C[i, j] = sum_p A[i, p] B[j, p]
                const float* Ai = A + (size_t)i * k;
                for (int j = 0; j < m; j++) {
                    const float* Bj = Bm + (size_t)j * k;
                    float s = 0;
                    for (int p = 0; p < k; p++) s += Ai[p] * Bj[p];
                    C[j] = s;
                }
            } else {                      // C[i, :] = sum_p A[i, p] B[p, :]
                for (int j = 0; j < m; j++) C[j] = 0;
                for (int p = 0; p < k; p++) {
                    const float aip = BMM_TRANS_A ? A[(size_t)p * n + i] : A[(size_t)i * k + p];
                    const float* Bp = Bm + (size_t)p * m;
                    for (int j = 0; j < m; j++) C[j] += aip * Bp[j];
                }
            }
        }
    }
}

}  // namespace unidet
