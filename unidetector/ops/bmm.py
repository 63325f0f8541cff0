"""Batched matrix products for the CPU: ``bmm(a, b)`` = (B, n, k) @ (B, k, m) → (B, n, m).

Jittor's CPU ``matmul`` of 3-D operands is a broadcast multiply and a reduction over a
(B, n, k, m) index space (8–40 GFLOP/s); the attention pool's per-RoI and per-head products
(k = 64–512, n, m = 8–64) spent more time there than in their convolutions. The kernel
(``kernels/bmm.cc``) computes the forward product and both gradients (``g @ bᵀ``, ``aᵀ @ g``) with
one oneDNN ``sgemm`` per batch entry where Jittor's oneDNN is linked (:func:`onednn.available`),
otherwise with the textbook loops, OpenMP over batch × rows, the innermost loop contiguous.

On CUDA it is Jittor's ``matmul`` (cuBLAS).
"""
from __future__ import annotations

import jittor as jt

from . import kernel_source, onednn

_SOURCE = kernel_source.load("bmm.cc")


def kernel_code(trans_a: bool, trans_b: bool, dnnl: bool = False) -> kernel_source.KernelCode:
    """``jt.code`` sources of ``c = a @ b`` with in0 = a: (B, n, k), or (B, k, n) if ``trans_a``;
    in1 = b: (B, k, m), or (B, m, k) if ``trans_b``; out0 = c: (B, n, m); all float32. ``dnnl``: through
    oneDNN's sgemm (compile with :func:`onednn.link_flags`)."""
    macros = {"BMM_TRANS_A": int(trans_a), "BMM_TRANS_B": int(trans_b), "BMM_DNNL": int(dnnl)}
    return kernel_source.KernelCode(
        cpu_header=kernel_source.header(_SOURCE, macros),
        cpu_src="unidet::bmm_cpu(in0_p, in1_p, out0_p, out0_shape0, out0_shape1, out0_shape2, "
                "in0_shape1, in0_shape2);")


def _product(a: jt.Var, b: jt.Var, trans_a: bool, trans_b: bool) -> jt.Var:
    n = a.shape[2] if trans_a else a.shape[1]
    m = b.shape[1] if trans_b else b.shape[2]
    if not onednn.available():
        return jt.code((a.shape[0], n, m), "float32", [a, b], **kernel_code(trans_a, trans_b).kwargs())
    with jt.flag_scope(compile_options=onednn.link_flags()):
        return jt.code((a.shape[0], n, m), "float32", [a, b], **kernel_code(trans_a, trans_b, True).kwargs())


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
