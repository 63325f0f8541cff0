"""The whole UniDetector pipeline on the built-in synthetic open world, end to end, on a CPU.

  unidet experiment [--work-dir D] [--quick | --plan quick|full|warm] [--seed S] [--only STEP ...]

Generates the world (two training sets with different label spaces, an LVIS-style test set with
novel classes), trains stage 1 (CLN) on both training sets, dumps proposals (AR for seen vs novel
classes), trains the partitioned stage-2 CLIP RoI classifier, tests open-world detection raw and
calibrated, runs a shuffled-text-embedding control, and writes D/report.json, D/report.md and PNGs.
"""
from __future__ import annotations

HELP = "run the whole pipeline on the synthetic open world and write a report"


def add_arguments(parser):
    from ..experiment import PLANS, STEPS

    parser.add_argument("--work-dir", default="work_dirs/experiment", help="everything goes here")
    plan = parser.add_mutually_exclusive_group()
    plan.add_argument("--quick", action="store_true", help="short schedules (~3.5 min on 2 cores with a warm compile "
                      "cache); the same as --plan quick")
    plan.add_argument("--plan", choices=sorted(PLANS), default=None, help="full (default), quick, or warm (every step "
                      "on a world of a few images: compiles the quick run's kernels)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="+", choices=STEPS, default=None,
                        help="run only these steps (the earlier ones' outputs must exist in --work-dir)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args) -> int:
    from ..experiment import Experiment

    Experiment(args.work_dir, quick=args.quick, plan=args.plan, seed=args.seed,
               progress=not args.no_progress).run(only=args.only)
    return 0
