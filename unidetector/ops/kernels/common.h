// Shared by the kernel sources of unidetector/ops (see unidetector/ops/kernel_source.py).
#ifndef UNIDET_KERNELS_COMMON_H
#define UNIDET_KERNELS_COMMON_H

// Functions that run on the CPU and, compiled by nvcc, on the GPU too.
#ifdef __CUDACC__
#define UNIDET_HD __host__ __device__
#else
#define UNIDET_HD
#endif

#endif  // UNIDET_KERNELS_COMMON_H
