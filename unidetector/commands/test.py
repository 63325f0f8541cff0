"""Run a trained detector over ``data.test`` (mmdet ``tools/test.py``).

  unidet test CONFIG CHECKPOINT [--out raw.pkl] [--eval bbox|proposal ...]
                                [--format-only --json-out F] [--cfg-options k=v ...]

``--out`` writes the raw mmdet results (pickle list over images); for a stage-1 (proposal) config
this is the proposal file of the stage-2 configs. ``--json-out`` writes COCO/LVIS result json.
Under ``mpirun -np N`` each process runs a slice of the images and rank 0 gathers them.
"""
from __future__ import annotations

HELP = "test a checkpoint: dump raw results / json, evaluate bbox AP or proposal recall"


def add_arguments(parser):
    from ..config import DictAction

    parser.add_argument("config")
    parser.add_argument("checkpoint")
    parser.add_argument("--out", default=None, help="raw results pickle (.pkl)")
    parser.add_argument("--eval", nargs="+", default=None, choices=("bbox", "proposal", "proposal_fast"),
                        help="metrics computed by the dataset's evaluate")
    parser.add_argument("--format-only", action="store_true", help="only write --json-out, no evaluation")
    parser.add_argument("--json-out", default=None, help="COCO/LVIS result json")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, default=None)
    parser.add_argument("--eval-options", nargs="+", action=DictAction, default=None,
                        help="extra kwargs for dataset.evaluate, e.g. classwise=True")
    parser.add_argument("--no-progress", action="store_true")


def run(args) -> int:
    from ..config import load_config
    from ..engine.runner import test_from_config

    cfg = load_config(args.config, args.cfg_options)
    test_from_config(cfg, args.checkpoint, out=args.out, eval_metrics=args.eval, format_only=args.format_only,
                     json_out=args.json_out, eval_options=args.eval_options, progress=not args.no_progress)
    return 0
