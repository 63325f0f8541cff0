#!/usr/bin/env python
"""Seed command kept for its users: `python tools/jittor_test.py --config CFG --checkpoint CKPT [--out raw.pkl]
[--eval bbox] [--batch-size B] [--json-out F] [--cfg-options ...]` == `unidet test CFG CKPT ...`.

The seed README's LVIS inference runs a calibrated config (``withcalibration=True``) twice: first with
``--out`` to write the raw results, then to test with the calibration prior read from the config's
``resultfile``. So, when the config calibrates and its ``resultfile`` does not exist yet (or is the
``--out`` file itself), a run with ``--out`` is that raw step: it runs without calibration (said on
the first line) and writes the raw results; without ``--out`` it is an error that says how to make
the prior.
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys

from _wrap import ToolError, load_tool_config, run_tool

RAW_OPTION = "model.roi_head.bbox_head.withcalibration=False"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tools/jittor_test.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out")
    p.add_argument("--eval", nargs="+")
    p.add_argument("--batch-size", type=int, help="test images per batch (data.test.samples_per_gpu)")
    p.add_argument("--json-out")
    p.add_argument("--format-only", action="store_true")
    p.add_argument("--cfg-options", nargs="+", default=[])
    return p


def translate(argv) -> list:
    a = build_parser().parse_args(argv)
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


def calibration_step(config: str, cfg_options, out) -> list:
    """Extra ``--cfg-options`` for the seed's two-step calibrated inference (see the module doc).

    Returns ``[RAW_OPTION]`` for the raw step, else ``[]``. Raises :class:`ToolError` naming the config
    and the missing prior when a calibrated run has neither the prior nor ``--out``.
    """
    cfg = load_tool_config(config, cfg_options)
    head = ((cfg.get("model") or {}).get("roi_head") or {}).get("bbox_head") or {}
    resultfile = head.get("withcalibration") and head.get("resultfile")
    if not resultfile:
        return []
    is_out = bool(out) and osp.abspath(out) == osp.abspath(resultfile)
    if osp.exists(resultfile) and not is_out:
        return []
    if not out:
        raise ToolError(
            f"{config}: the calibration prior model.roi_head.bbox_head.resultfile={resultfile} does not exist; "
            f"write the raw results first: python tools/jittor_test.py --config {config} --checkpoint CKPT "
            f"--out {resultfile} --eval bbox (runs without calibration), or test without calibration: "
            f"--cfg-options {RAW_OPTION}")
    where = ("" if is_out else f"; the calibrated run reads {resultfile}: point resultfile at this file with "
             f"--cfg-options model.roi_head.bbox_head.resultfile={out}")
    print(f"jittor_test.py: raw step of the calibrated inference (resultfile {resultfile} "
          f"{'is --out' if is_out else 'does not exist yet'}): testing without calibration, raw results -> "
          f"{out}{where}", flush=True)
    return [RAW_OPTION]


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv

    def prepare():
        cmd = translate(argv)
        a = build_parser().parse_args(argv)
        extra = calibration_step(a.config, cmd[cmd.index("--cfg-options") + 1:] if "--cfg-options" in cmd else [],
                                 a.out)
        if extra:
            cmd += extra if "--cfg-options" in cmd else ["--cfg-options", *extra]
        return [cmd]

    return run_tool(prepare)


if __name__ == "__main__":
    sys.exit(main())
