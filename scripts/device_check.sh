#!/usr/bin/env bash
# On a machine with an NVIDIA GPU lent by the `device` tool, in one call (after scripts/device_prepare.sh here):
#   run(command="bash scripts/device_check.sh", carry=[".whl", ".goldens"], timeout_s=600)
# 1. installs .whl/ into /tmp/site (no network there); 2. imports Jittor with CUDA (it compiles its core and then
#    each CUDA kernel on first use: minutes); 3. the golden cases with jt.flags.use_cuda=1 (UNIDET_TEST_CUDA=1);
# 4. one training step of each synthetic stage, ours on the GPU against PyTorch on the GPU (train_step.py --cuda).
# Everything lands in $OUT: device_check.log (steps, times, errors), goldens.log, train_step.json.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/device_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$PWD UNIDET_GOLDENS_DIR=$PWD/.goldens
export conv_opt=1  # Jittor 1.3.11 looks for cuDNN 8, the machine has cuDNN 9: Jittor's own convolution kernels
log() { echo "[$(date +%T)] $*" | tee -a "$OUT/device_check.log"; }

log "install .whl into /tmp/site"
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --no-cache-dir --target /tmp/site \
    .whl/* >>"$OUT/device_check.log" 2>&1 || { log "pip install failed"; exit 1; }
nvidia-smi -L >>"$OUT/device_check.log" 2>&1
log "import jittor with CUDA (compiles its core), then three kernels compiled in parallel"
# On Python 3.12 the bootstrap compiles kernels one at a time (Jittor's parallel op compiler segfaulted on Python
# 3.12.1 here): try the parallel compiler first, since 16 cores compile CUDA kernels much faster together
probe="
import unidetector, jittor as jt
print('jittor', jt.__version__, 'has_cuda', jt.has_cuda, 'python', __import__('sys').version.split()[0])
jt.flags.use_cuda = 1
x = jt.array([0.5, 1.5, 2.5])
print('on the GPU:', [v.numpy().tolist() for v in (jt.logical_not(jt.isnan(x * 3.5)), (x + 0.25).exp(), x.sqrt())])"
if use_parallel_op_compiler=16 timeout 300 python3 -c "$probe" >>"$OUT/device_check.log" 2>&1; then
    export use_parallel_op_compiler=16
    log "parallel op compiler works here"
else
    log "parallel op compiler failed (rc $?): compiling one kernel at a time"
    timeout 300 python3 -c "$probe" >>"$OUT/device_check.log" 2>&1 || log "jittor failed (rc $?)"
fi
log "goldens with UNIDET_TEST_CUDA=1"
UNIDET_TEST_CUDA=1 timeout 420 python3 -m pytest -q -rP tests/test_goldens.py >"$OUT/goldens.log" 2>&1
log "goldens rc $?: $(tail -n 1 "$OUT/goldens.log")"
log "training steps, ours vs PyTorch, both on the GPU"
timeout 240 python3 benchmarks/train_step.py --cuda --repeat 3 >"$OUT/train_step.json" 2>>"$OUT/device_check.log"
log "train_step rc $?"
