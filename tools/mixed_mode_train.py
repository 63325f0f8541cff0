#!/usr/bin/env python
"""Seed command kept for its users (its "mixed mode" was PyTorch + Jittor; everything is Jittor now):
same flags as tools/jittor_train.py, runs `unidet train`."""
from __future__ import annotations

import sys

from _wrap import run_unidet
from jittor_train import translate

if __name__ == "__main__":
    sys.exit(run_unidet(translate(sys.argv[1:])))
