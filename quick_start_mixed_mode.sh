#!/usr/bin/env bash
# The seed README's one-click start ("./quick_start_mixed_mode.sh"). Its "mixed mode" ran MMDetection (PyTorch)
# base components next to Jittor heads; here mixed mode = pure Jittor. As the seed's script, it checks the
# environment and then runs both stages; with no dataset to download, it runs the embedded default, the
# built-in synthetic open world (= scripts/demo.sh): `unidet doctor`, then `unidet experiment --quick`
# (stage 1 -> proposals -> stage 2 -> open-world test, raw and calibrated; ~4 min on a 2-core CPU) with the
# report in work_dirs/experiment/report.md. Extra arguments go to `unidet experiment` (e.g. --work-dir D,
# without --quick: the longer run: `./quick_start_mixed_mode.sh --full`). The real COCO + Objects365 -> LVIS
# experiment: experiments/run_coco_objects365_lvis_experiment.sh (docs/real_data.md).
set -euo pipefail
cd "$(dirname "$0")"
UNIDET=${UNIDET:-.venv/bin/unidet}
if [ ! -x "$UNIDET" ]; then
    UNIDET=$(command -v unidet || true)
    [ -n "$UNIDET" ] || { echo "error: no .venv/bin/unidet and no unidet on PATH: run 'make install'" >&2; exit 2; }
fi
quick=(--quick)
if [ "${1:-}" = "--full" ]; then quick=(); shift; fi
"$UNIDET" doctor
"$UNIDET" experiment "${quick[@]}" --work-dir work_dirs/experiment "$@"
