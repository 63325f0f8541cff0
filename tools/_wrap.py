"""Shared helper of the seed-compatible wrappers in tools/: translate the seed's flags, call `unidet`."""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def run_unidet(argv: list) -> int:
    print("unidet " + " ".join(argv), flush=True)
    from unidetector.cli import main

    return main(argv)
