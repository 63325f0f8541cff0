#!/usr/bin/env bash
# Install everything this project needs on a Debian/Ubuntu machine, into ./.venv.
#   - Debian libdnnl-dev (oneDNN; without it Jittor's convolutions are ~100x slower)
#   - a virtual environment with the package and its test extra
#   - a warm Jittor compile cache (the first use of every op compiles C++)
#   - with --reference: the reference implementations that tests compare against
#     (PyTorch CPU, OpenAI's CLIP code, the LVIS API); never used at run time; and for the web
#     app's browser test, Debian's chromium and Playwright for Python (which drives that browser:
#     no browser download)
# Re-running it is cheap: every step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
REFERENCE=0
for arg in "$@"; do
    case "$arg" in
        --reference) REFERENCE=1 ;;
        *) echo "usage: scripts/install.sh [--reference]" >&2; exit 2 ;;
    esac
done

# the interpreter of .venv (made from $PY when missing): Jittor 1.3.11 pins numpy < 2, which has no wheels for 3.13
if [ -x .venv/bin/python ]; then
    VPY=.venv/bin/python
else
    VPY=$PY
    if ! "$PY" -c 'import sys; sys.exit(not (3, 9) <= sys.version_info[:2] <= (3, 12))'; then
        echo "[install] $PY is Python $("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])'); Jittor 1.3.11" \
             "needs 3.9-3.12 (it pins numpy < 2, which has no wheels for 3.13)." >&2
        echo "[install]   install python3.12 (or 3.11) and run: PYTHON=python3.12 make demo" >&2
        exit 2
    fi
fi

need_debs=()
[ -e /usr/include/oneapi/dnnl/dnnl.h ] || need_debs+=(libdnnl-dev)
# Jittor compiles its kernels against Python's headers (python3.X-dev; not installed by default on Ubuntu)
has_headers='import os, sys, sysconfig; sys.exit(not os.path.isfile(sysconfig.get_path("include") + "/Python.h"))'
"$VPY" -c "$has_headers" || need_debs+=("python$("$VPY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')-dev")
command -v mpirun >/dev/null && command -v mpicc >/dev/null || need_debs+=(openmpi-bin libopenmpi-dev)
if [ "$REFERENCE" = 1 ] && ! command -v chromium >/dev/null; then need_debs+=(chromium); fi
if [ ${#need_debs[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "[install] apt-get install ${need_debs[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null || true
        apt-get install -y -qq --no-install-recommends "${need_debs[@]}" >/dev/null
    else
        echo "[install] WARNING: missing Debian packages: ${need_debs[*]}" >&2
        echo "[install]   run: sudo apt-get install ${need_debs[*]}" >&2
        echo "[install]   without libdnnl-dev Jittor runs convolutions ~100x slower." >&2
    fi
fi

if [ ! -x .venv/bin/python ]; then
    echo "[install] creating .venv"
    "$PY" -m venv .venv
fi
echo "[install] pip install -e .[test,app]"
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e ".[test,app]"
if [ "$REFERENCE" = 1 ]; then
    echo "[install] reference implementations for the tests (torch CPU, OpenAI CLIP code, lvis)"
    # clip-anytorch without its dependencies: its torchvision pin would pull another torch build.
    .venv/bin/python -m pip install -q "torch==2.13.0" "lvis==0.5.3"
    .venv/bin/python -m pip install -q --no-deps "clip-anytorch==2.6.0"
    .venv/bin/python -m pip install -q "playwright==1.65.2"   # drives /usr/bin/chromium; never `playwright install`
fi

echo "[install] warming the Jittor compile cache (minutes on a cold cache)"
.venv/bin/unidet doctor --warm
