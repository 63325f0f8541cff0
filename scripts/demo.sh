#!/usr/bin/env bash
# The main job: the whole UniDetector pipeline on the built-in synthetic open world (CPU), quick schedule.
# Writes work_dirs/experiment/report.md, report.json and PNGs. For the longer run: `.venv/bin/unidet experiment`.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/unidet doctor
.venv/bin/unidet experiment --quick --work-dir work_dirs/experiment "$@"
