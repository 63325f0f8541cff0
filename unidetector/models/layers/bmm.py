"""Batched matrix products for the CPU: ``bmm(a, b)`` = (B, n, k) @ (B, k, m) → (B, n, m).

Jittor's CPU ``matmul`` of 3-D operands is a broadcast multiply and a reduction over a
(B, n, k, m) index space (8–40 GFLOP/s); the attention pool's per-RoI and per-head products
(k = 64–512, n, m = 8–64) spent more time there than in their convolutions. This kernel runs the
textbook loops (OpenMP over batch × rows, the innermost loop contiguous, so it vectorises):

    NN  c[i, :]  += a[i, p] · b[p, :]          (forward)
    NT  c[i, p]   = a[i, :] · b[p, :]          (grad wrt a = g @ bᵀ)
    TN  c[p, :]  += a[i, p] · g[i, :]          (grad wrt b = aᵀ @ g)

On CUDA it is Jittor's ``matmul`` (cuBLAS).
"""
from __future__ import annotations

import jittor as jt

# in0 = a, in1 = b (float32, contiguous); TRANS_A / TRANS_B select the operands' layout:
#   a: (B, n, k), or (B, k, n) transposed;  b: (B, k, m), or (B, m, k) transposed.
_SRC = r"""
const int B = out0_shape0, n = out0_shape1, m = out0_shape2;
const int k = {trans_a} ? in0_shape1 : in0_shape2;
const float* a = in0_p; const float* b = in1_p; float* c = out0_p;
#pragma omp parallel for collapse(2) schedule(static)
for (int bi = 0; bi < B; bi++) {{
    for (int i = 0; i < n; i++) {{
        const float* A = a + (size_t)bi * n * k;
        const float* Bm = b + (size_t)bi * k * m;
        float* C = c + ((size_t)bi * n + i) * m;
        if ({trans_b}) {{            // C[i, j] = Σ_p A[i, p] B[j, p]
            const float* Ai = A + (size_t)i * k;
            for (int j = 0; j < m; j++) {{
                const float* Bj = Bm + (size_t)j * k;
                float s = 0;
                for (int p = 0; p < k; p++) s += Ai[p] * Bj[p];
                C[j] = s;
            }}
        }} else {{                   // C[i, :] = Σ_p A[i, p] B[p, :]
            for (int j = 0; j < m; j++) C[j] = 0;
            for (int p = 0; p < k; p++) {{
                const float aip = {trans_a} ? A[(size_t)p * n + i] : A[(size_t)i * k + p];
                const float* Bp = Bm + (size_t)p * m;
                for (int j = 0; j < m; j++) C[j] += aip * Bp[j];
            }}
        }}
    }}
}}
"""


def _product(a: jt.Var, b: jt.Var, trans_a: bool, trans_b: bool) -> jt.Var:
    n = a.shape[2] if trans_a else a.shape[1]
    m = b.shape[1] if trans_b else b.shape[2]
    return jt.code((a.shape[0], n, m), "float32", [a, b],
                   cpu_src=_SRC.format(trans_a=int(trans_a), trans_b=int(trans_b)))


class _BatchedMatmul(jt.Function):
    def execute(self, a, b):
        self.a, self.b = a, b
        return _product(a, b, False, False)

    def grad(self, g):
        g = g.float32()
        return _product(g, self.b, False, True), _product(self.a, g, True, False)


def bmm(a: jt.Var, b: jt.Var) -> jt.Var:
    """(B, n, k) @ (B, k, m) → (B, n, m), float32."""
    if a.ndim != 3 or b.ndim != 3 or a.shape[0] != b.shape[0] or a.shape[2] != b.shape[1]:
        raise ValueError(f"bmm: shapes {tuple(a.shape)} and {tuple(b.shape)} do not multiply as (B, n, k) @ (B, k, m)")
    if jt.flags.use_cuda:
        return jt.matmul(a, b)
    return _BatchedMatmul.apply(a.float32(), b.float32())
