"""Stage-1 proposals (official ``tools/dist_test.sh <1ststage cfg> <ckpt> N --out rp.pkl``, SPEC §3).

  unidet proposals CONFIG CHECKPOINT --ann A.json --img-dir DIR --out rp.pkl
                   [--ann B.json --img-dir DIR2 --out rp_b.pkl ...] [--cfg-options k=v ...]

For each ``--ann/--img-dir/--out`` triple, ``data.test`` of CONFIG is pointed at that annotation file
and image folder, the CLN runs in test mode over every image of the file (unfiltered, in the file's
image order, ``test_mode=True``) and the official proposal pickle is written: one float32 ``(n, 5)``
``[x1, y1, x2, y2, score]`` array per image, original pixels, sorted by score. When the annotation
file has boxes, class-agnostic AR@100/300/1000 is printed.
"""
from __future__ import annotations

HELP = "run a stage-1 (CLN) checkpoint over annotation files and write proposal pickles (+ AR@k)"


def add_arguments(parser):
    from ..config import DictAction

    parser.add_argument("config", help="stage-1 config (e.g. configs/synthetic/stage1_cln.py)")
    parser.add_argument("checkpoint", help="trained stage-1 checkpoint (.pkl)")
    parser.add_argument("--ann", action="append", required=True, help="COCO-style annotation json (repeatable)")
    parser.add_argument("--img-dir", action="append", required=True, help="image folder of each --ann")
    parser.add_argument("--out", action="append", required=True, help="output pickle of each --ann")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, default=None)
    parser.add_argument("--no-progress", action="store_true")


def run(args) -> int:
    if not len(args.ann) == len(args.img_dir) == len(args.out):
        raise SystemExit(f"give one --img-dir and one --out per --ann (got {len(args.ann)} --ann, "
                         f"{len(args.img_dir)} --img-dir, {len(args.out)} --out)")
    from ..config import load_config
    from ..engine.proposals import generate_proposals
    from ..engine.runner import build_model, load_weights

    cfg = load_config(args.config, args.cfg_options)
    model = build_model(cfg)
    load_weights(model, args.checkpoint, allow_partial=bool(cfg.get("allow_partial_load")), what="checkpoint",
                 model_cfg=cfg.model)
    for ann, img_dir, out in zip(args.ann, args.img_dir, args.out):
        generate_proposals(cfg, args.checkpoint, ann, img_dir, out, model=model, progress=not args.no_progress)
    return 0
