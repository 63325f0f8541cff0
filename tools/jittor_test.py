#!/usr/bin/env python
"""Seed command kept for its users: `python tools/jittor_test.py --config CFG --checkpoint CKPT [--out raw.pkl]
[--eval bbox] [--batch-size B] [--json-out F] [--cfg-options ...]` == `unidet test CFG CKPT ...`."""
from __future__ import annotations

import argparse
import sys

from _wrap import run_unidet


def translate(argv) -> list:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--config", required=True)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out")
    p.add_argument("--eval", nargs="+")
    p.add_argument("--batch-size", type=int, help="test images per batch (data.test.samples_per_gpu)")
    p.add_argument("--json-out")
    p.add_argument("--format-only", action="store_true")
    p.add_argument("--cfg-options", nargs="+", default=[])
    a = p.parse_args(argv)
    out = ["test", a.config, a.checkpoint]
    if a.out:
        out += ["--out", a.out]
    if a.eval:
        out += ["--eval", *a.eval]
    if a.json_out:
        out += ["--json-out", a.json_out]
    if a.format_only:
        out += ["--format-only"]
    opts = list(a.cfg_options)
    if a.batch_size:
        opts.append(f"data.test.samples_per_gpu={a.batch_size}")
    if opts:
        out += ["--cfg-options", *opts]
    return out


if __name__ == "__main__":
    sys.exit(run_unidet(translate(sys.argv[1:])))
