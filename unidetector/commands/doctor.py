"""Check the runtime: Jittor, CUDA/cuDNN, oneDNN, threads, bfloat16 instructions, MPI, compile cache.

Prints what was found and, for each missing piece, what to do about it.
``--json`` prints one JSON object instead; ``--warm`` also compiles the kernels of
``unidet experiment --quick``, so that the first real run does not pay for them.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HELP = "check the Jittor runtime (oneDNN, CUDA, MPI, compile cache) and say what to fix"


def add_arguments(parser):
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--warm", action="store_true", help="also compile the kernels of the quick experiment (minutes when cold)")


def _folder_size(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def _mpi_report() -> dict:
    mpirun = shutil.which("mpirun")
    version = None
    if mpirun:
        try:
            out = subprocess.run([mpirun, "--version"], capture_output=True, text=True, timeout=20).stdout
            version = out.strip().splitlines()[0] if out.strip() else None
        except (OSError, subprocess.SubprocessError):
            pass
    return {"mpirun": mpirun, "mpicc": shutil.which("mpicc"), "version": version}


def _bf16_report(onednn: bool) -> str | None:
    """The processor's bfloat16 instructions oneDNN uses (``amx_bf16``, ``avx512_bf16``), or None: what
    ``--amp`` and ``UNIDET_INFERENCE_DTYPE=bfloat16`` compute with on the CPU."""
    from ..ops.onednn import bf16_instructions

    return (" + ".join(bf16_instructions()) or None) if onednn else None


def collect() -> dict:
    """Import Jittor through the bootstrap and report what it runs with."""
    from .. import runtime

    import jittor as jt
    from jittor import compile_extern, compiler

    state = dict(runtime.STATE)
    report = {
        "python": sys.version.split()[0],
        "jittor_version": jt.__version__,
        "onednn": compile_extern.mkl_ops is not None,
        "onednn_detail": state.get("onednn_reason"),
        "cuda_devices": state.get("cuda_devices", 0),
        "cuda": bool(compiler.has_cuda),
        "nvcc": getattr(compiler, "nvcc_path", "") or None,
        "cudnn": compile_extern.cudnn is not None,
        "threads": state.get("threads"),
        "bfloat16": _bf16_report(compile_extern.mkl_ops is not None),
        "mpi": _mpi_report(),
        "in_mpi": bool(jt.in_mpi),
        "cache_dir": str(compiler.cache_path),
        "cache_bytes": _folder_size(Path(compiler.cache_path)),
        "env_set_by_bootstrap": state.get("env_set", {}),
    }
    fixes = []
    if not report["onednn"]:
        fixes.append("oneDNN is off, so convolutions are ~100x slower: `sudo apt-get install libdnnl-dev`, "
                     "then run `unidet doctor` again (the link into Jittor's cache is made automatically).")
    if report["cuda_devices"] == 0:
        fixes.append("no CUDA device: running on the CPU (fine for the synthetic world; real datasets need GPUs).")
    elif not report["cudnn"]:
        fixes.append("CUDA without cuDNN: Jittor 1.3.11 looks for cuDNN 8; with cuDNN 9 set `conv_opt=1` "
                     "or install cuDNN 8.")
    if not report["mpi"]["mpirun"]:
        fixes.append("no MPI: multi-process training needs `sudo apt-get install openmpi-bin libopenmpi-dev`.")
    if state.get("imported_too_late"):
        fixes.append("jittor was imported before unidetector.runtime: import unidetector first.")
    report["fixes"] = fixes
    return report


def warm() -> float:
    """Compile the kernels of ``unidet experiment --quick`` by running all its steps on a world of a few
    images in a temporary directory (Jittor fuses and compiles per graph, so a toy network would miss
    most of them); returns seconds."""
    import tempfile

    from ..experiment import Experiment

    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="unidet-warm-") as work_dir:
        Experiment(work_dir, plan="warm", progress=False, log=lambda *_: None).run()
    return time.time() - t0


def run(args) -> int:
    report = collect()
    if args.warm:
        report["warm_seconds"] = round(warm(), 2)
    if args.json:
        print(json.dumps(report, indent=None, sort_keys=True))
        return 0
    ok, bad = "ok ", "-- "
    lines = [
        f"{ok}python {report['python']}, jittor {report['jittor_version']}",
        f"{ok if report['onednn'] else bad}oneDNN: {'on' if report['onednn'] else 'OFF'} ({report['onednn_detail']})",
        f"{ok if report['cuda_devices'] else bad}CUDA devices: {report['cuda_devices']}"
        f" (jittor cuda={'on' if report['cuda'] else 'off'}, cuDNN={'on' if report['cudnn'] else 'off'})",
        f"{ok}CPU threads: {report['threads']}",
        f"{ok if report['bfloat16'] else bad}bfloat16 on the CPU: "
        + (f"{report['bfloat16']} (--amp trains convolutions in bfloat16; UNIDET_INFERENCE_DTYPE=bfloat16 available)"
           if report["bfloat16"] else "no AMX / AVX-512-BF16 (or no oneDNN): --amp and bfloat16 inference compute "
           "in float32"),
        f"{ok if report['mpi']['mpirun'] else bad}MPI: {report['mpi']['version'] or 'not found'}",
        f"{ok}compile cache: {report['cache_dir']} ({report['cache_bytes'] / 2**20:.0f} MiB)",
    ]
    if "warm_seconds" in report:
        lines.append(f"{ok}kernels of the quick experiment compiled in {report['warm_seconds']} s")
    print("\n".join(lines))
    if report["fixes"]:
        print("\nWhat to do:")
        for f in report["fixes"]:
            print(f"  * {f}")
    return 0
