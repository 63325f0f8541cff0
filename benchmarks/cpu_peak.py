"""The processor's fp32 peak, as the benchmarks report it (``cpu_peak_gflops``).

peak = cores × fp32 lanes per vector × 2 (an FMA is a multiply and an add) × FMA units per core × clock

* cores: the CPUs this process may use (``os.sched_getaffinity``), or ``OMP_NUM_THREADS`` if smaller;
* lanes: 16 with AVX-512 (``avx512f`` in ``/proc/cpuinfo``), 8 with AVX2/FMA, else 4;
* FMA units: 2 for AVX-512 Xeons (Skylake-SP Gold/Platinum and later, e.g. Sapphire/Emerald Rapids;
  an assumption: some SKUs have 1), 2 for AVX2 cores;
* clock: ``cpu MHz`` of ``/proc/cpuinfo`` (the nominal clock in a VM; AVX-512 loads may run slower
  and turbo faster, so the fraction is approximate).
"""
from __future__ import annotations

import os


def _cpuinfo() -> dict:
    info = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if ":" in line:
                    k, v = line.split(":", 1)
                    info.setdefault(k.strip(), v.strip())
    except OSError:
        pass
    return info


def cpu_peak_gflops() -> dict:
    """``dict(gflops, cores, lanes, fma_units, mhz, model, how)``; gflops is None when the clock is unknown."""
    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        cores = min(cores, int(os.environ["OMP_NUM_THREADS"]))
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags or "fma" in flags else 4
    fma_units = 2 if lanes >= 8 else 1
    try:
        mhz = float(info.get("cpu MHz", ""))
    except ValueError:
        mhz = None
    gflops = None if mhz is None else cores * lanes * 2 * fma_units * mhz / 1000
    return dict(gflops=None if gflops is None else round(gflops, 1), cores=cores, lanes=lanes, fma_units=fma_units,
                mhz=mhz, model=info.get("model name"),
                how="cores x fp32 lanes x 2 (FMA) x FMA units x cpu MHz (nominal; 2 FMA units assumed)")
