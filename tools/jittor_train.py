#!/usr/bin/env python
"""Seed command kept for its users: `python tools/jittor_train.py --config CFG [--work-dir D] [--epochs N]
[--batch-size B] [--accumulate-steps K] [--resume [CKPT]] [--seed S] [--amp] [--cfg-options ...]`
== `unidet train CFG ...` (--epochs -> runner.max_epochs, --batch-size -> data.samples_per_gpu)."""
from __future__ import annotations

import argparse
import sys

from _wrap import run_unidet


def translate(argv) -> list:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--config", required=True)
    p.add_argument("--work-dir")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int, help="images per process (data.samples_per_gpu)")
    p.add_argument("--accumulate-steps", type=int)
    p.add_argument("--resume", nargs="?", const="")
    p.add_argument("--seed", type=int)
    p.add_argument("--amp", action="store_true")
    p.add_argument("--cfg-options", nargs="+", default=[])
    a = p.parse_args(argv)
    out = ["train", a.config]
    if a.work_dir:
        out += ["--work-dir", a.work_dir]
    if a.resume is not None:
        out += ["--resume"] + ([a.resume] if a.resume else [])
    if a.accumulate_steps:
        out += ["--accumulate-steps", str(a.accumulate_steps)]
    if a.seed is not None:
        out += ["--seed", str(a.seed)]
    if a.amp:
        out += ["--amp"]
    opts = list(a.cfg_options)
    if a.epochs:
        opts.append(f"runner.max_epochs={a.epochs}")
    if a.batch_size:
        opts.append(f"data.samples_per_gpu={a.batch_size}")
    if opts:
        out += ["--cfg-options", *opts]
    return out


if __name__ == "__main__":
    sys.exit(run_unidet(translate(sys.argv[1:])))
