#!/usr/bin/env bash
# Prepares, on this machine, what scripts/device_check.sh needs on a machine with an NVIDIA GPU lent by the
# `device` tool (Python 3.12 with PyTorch, numpy 2, CUDA 13 and no network there): the wheels of the Python
# packages it lacks in .whl/ and the golden fixtures in .goldens/ (both git-ignored, ~45 MB with the tree: under the
# tool's 64 MiB). Then, with the tool:  run(command="bash scripts/device_check.sh", carry=[".whl", ".goldens"]).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
GOLDENS=${UNIDET_GOLDENS_DIR:-../shared/goldens/visible}
rm -rf .whl && mkdir -p .whl
"$PY" -m pip download -q --no-deps -d .whl jittor==1.3.11.0   # an sdist: pure Python, it compiles itself on import
# the versions this project's .venv runs (Jittor 1.3.11 needs numpy < 2)
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
    numpy==1.26.4 astunparse==1.6.3 mmengine==0.10.7 addict==2.4.0 yapf==0.43.0 termcolor==3.3.0 \
    platformdirs==4.14.9 pycocotools==2.0.11 faster-coco-eval==1.8.0 ftfy==6.3.1 wcwidth==0.9.4
rm -rf .goldens && cp -r "$GOLDENS" .goldens
du -sh .whl .goldens
