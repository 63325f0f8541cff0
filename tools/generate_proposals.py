#!/usr/bin/env python
"""Seed command kept for its users: `python tools/generate_proposals.py --config CFG --checkpoint CKPT
--ann A.json --img-dir DIR --out rp.pkl [...]` == `unidet proposals CFG CKPT --ann ... --img-dir ... --out ...`
(all other flags are passed through)."""
from __future__ import annotations

import argparse
import sys

from _wrap import run_unidet


def translate(argv) -> list:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--config", required=True)
    p.add_argument("--checkpoint", required=True)
    a, rest = p.parse_known_args(argv)
    return ["proposals", a.config, a.checkpoint, *rest]


if __name__ == "__main__":
    sys.exit(run_unidet(translate(sys.argv[1:])))
