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
    import json

    from ..config import load_config
    from ..data import save_proposals
    from ..engine.inference import inference
    from ..engine.runner import build_dataset, build_model, load_weights
    from ..evaluation import proposal_recall_report

    cfg = load_config(args.config, args.cfg_options)
    model = build_model(cfg.model)
    load_weights(model, args.checkpoint)
    for ann, img_dir, out in zip(args.ann, args.img_dir, args.out):
        test_cfg = dict(cfg.data.test)
        test_cfg.pop("samples_per_gpu", None)
        test_cfg.update(ann_file=ann, img_prefix=img_dir, test_mode=True, proposal_file=None)
        dataset = build_dataset(test_cfg, "data.test", test_mode=True)
        results = inference(model, dataset, samples_per_gpu=1, workers_per_gpu=int(cfg.data.get("workers_per_gpu", 0)),
                            progress=not args.no_progress)
        save_proposals(results, out)
        print(f"{out}: proposals of {len(results)} images ({ann})")
        with open(ann, encoding="utf-8") as f:
            data = json.load(f)
        if data.get("annotations"):
            img_ids = [img["id"] for img in data["images"]]
            report = proposal_recall_report(data, img_ids, results)
            print("  " + "  ".join(f"{k}={v:.4f}" for k, v in report.items()))
    return 0
