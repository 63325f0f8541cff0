#!/usr/bin/env python
"""Seed command kept for its users: checks the installation == `unidet doctor` (flags passed through)."""
from __future__ import annotations

import sys

from _wrap import run_unidet


def translate(argv) -> list:
    return ["doctor", *argv]


if __name__ == "__main__":
    sys.exit(run_unidet(translate(sys.argv[1:])))
