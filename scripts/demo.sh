#!/usr/bin/env bash
# The main job. `unidet experiment` (the whole pipeline on the synthetic open world)
# is not built yet; until it is, this checks the runtime and prints what it found.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/unidet doctor
