#!/usr/bin/env python
"""Seed command kept for its users: `python tools/generate_clip_embeddings.py ...` == `unidet embed ...`
(flags passed through: --ann/--classes/--names, --encoder clip:RN50.pt|synthetic, --out, ...)."""
from __future__ import annotations

import sys

from _wrap import run_unidet


def translate(argv) -> list:
    return ["embed", *argv]


if __name__ == "__main__":
    sys.exit(run_unidet(translate(sys.argv[1:])))
