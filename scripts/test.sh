#!/usr/bin/env bash
# Run the test suite in .venv (after scripts/install.sh). Extra arguments go to pytest.
set -uo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
.venv/bin/python -m pytest -q --durations=15 "$@"
