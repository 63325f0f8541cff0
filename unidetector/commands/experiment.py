"""The whole UniDetector pipeline on the built-in synthetic open world, end to end, on a CPU.

  unidet experiment [--work-dir D] [--quick | --plan quick|full|warm] [--seed S] [--only STEP ...] [--amp]
  unidet experiment --ablations [--quick | --plan ...] [--only STEP ...]     (work dir: work_dirs/ablations)
  unidet experiment --ablations --quick --seeds 0 1 2      (one plan per seed in D/seed_<S>, then D/spread.md)

Generates the world (two training sets with different label spaces, an LVIS-style test set with
novel classes), trains stage 1 (CLN) on both training sets, dumps proposals (AR for seen vs novel
classes), trains the partitioned stage-2 CLIP RoI classifier, tests open-world detection raw and
calibrated, runs a shuffled-text-embedding control, and writes D/report.json, D/report.md and PNGs.
``--ablations`` runs the ablation plan instead (:mod:`unidetector.ablations`): the paper's three claims against
alternatives trained with the same budget and seed, written to D/ablations.json, D/ablations.md and PNGs.
"""
from __future__ import annotations

HELP = "run the whole pipeline on the synthetic open world and write a report"


def add_arguments(parser):
    from ..ablations import STEPS as ABLATION_STEPS
    from ..experiment import PLANS, STEPS

    parser.add_argument("--work-dir", default=None, help="everything goes here (default: work_dirs/experiment, "
                        "with --ablations work_dirs/ablations)")
    plan = parser.add_mutually_exclusive_group()
    plan.add_argument("--quick", action="store_true", help="short schedules (~10-11 min on 2 cores with a warm compile "
                      "cache, world-CLIP pretraining included; ~2.7 min once it is cached); the same as --plan quick")
    plan.add_argument("--plan", choices=sorted(PLANS), default=None, help="full (default), quick, or warm (every step "
                      "on a world of a few images: compiles the quick run's kernels)")
    parser.add_argument("--seed", type=int, default=None, help="the world's seed (default 0)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, metavar="S",
                        help="with --ablations: run the plan once per seed (each in <work-dir>/seed_<S>, its own world "
                        "and world-CLIP) and write <work-dir>/spread.md: every claim's difference per seed, mean ± sd")
    parser.add_argument("--only", nargs="+", choices=list(dict.fromkeys(STEPS + ABLATION_STEPS)), default=None,
                        help="run only these steps (the earlier ones' outputs must exist in --work-dir)")
    parser.add_argument("--ablations", action="store_true", help="the ablation plan: the paper's three claims "
                        "(class-agnostic proposals, partitioned multi-dataset training, calibration) against "
                        "alternatives with the same budget and seed, with bootstrap intervals (quick: ~5 min, "
                        "full: 25-32 min with the world-CLIP cached; a world-CLIP not cached yet adds ~7.5 min)")
    parser.add_argument("--amp", action="store_true", help="mixed precision as unidet train --amp: the training "
                        "convolutions compute in bfloat16 on processors with AMX / AVX-512-BF16 (float32 elsewhere); "
                        "its world-CLIP is cached apart from the float32 one")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args) -> int:
    from ..errors import UsageError

    if args.ablations:
        from ..ablations import STEPS, Ablations as runner
    else:
        from ..experiment import STEPS, Experiment as runner
    wrong = [s for s in args.only or () if s not in STEPS]
    if wrong:
        plan = "the ablation plan" if args.ablations else "the experiment"
        raise UsageError(f"--only {' '.join(wrong)}: not a step of {plan}; its steps are {', '.join(STEPS)}")
    if args.seeds is not None and not args.ablations:
        raise UsageError("--seeds goes with --ablations (the spread of the claims over seeds); "
                         "for the main experiment use --seed S")
    if args.seeds is not None and args.seed is not None:
        raise UsageError("--seed and --seeds together: give the seeds of the spread with --seeds only")
    work_dir = args.work_dir or ("work_dirs/ablations" if args.ablations else "work_dirs/experiment")
    if args.seeds is not None:
        return _seed_spread(runner, work_dir, args)
    job = runner(work_dir, quick=args.quick, plan=args.plan, seed=args.seed or 0, progress=not args.no_progress,
                 amp=args.amp)
    job.run(only=args.only)
    return 0


def _seed_spread(runner, work_dir, args) -> int:
    from pathlib import Path

    from ..ablations_report import write_seed_spread

    seeds = list(dict.fromkeys(args.seeds))
    reports = {}
    for seed in seeds:
        job = runner(Path(work_dir) / f"seed_{seed}", quick=args.quick, plan=args.plan, seed=seed,
                     progress=not args.no_progress, amp=args.amp)
        reports[seed] = job.run(only=args.only)
    write_seed_spread(reports, work_dir)
    print(f"spread over seeds {', '.join(map(str, seeds))}: {Path(work_dir) / 'spread.md'}")
    return 0
