"""Vocabulary swap: full detection vs re-scoring the cached region features, printed as JSON.

  python benchmarks/vocab_swap.py --checkpoint work_dirs/stage2_partitioned/latest.pkl \\
      --proposal-checkpoint work_dirs/stage1_cln/latest.pkl --images data/synthetic/images/val \\
      --classes "red star,blue ring" --classes-swap "green cross,yellow hexagon,purple ring"

Per image (median over ``--images``, at most ``--max-images``), after one warm-up image per path:

* ``full_s``: ``Detector.detect`` without cached regions = stage 1 + stage 2 (backbone, RoIAlign, CLIP
  ``layer4``, attention pool) + scoring; split into ``stage1_s``, ``regions_s``, ``score_s``;
* ``rescore_s``: ``detect`` with a different vocabulary on the same image (cached regions: cosine
  logits, fusion, decode, soft-NMS only);
* ``speedup`` = ``full_s / rescore_s`` and ``speedup_stage2`` = ``(regions_s + score_s) / rescore_s``
  (what it saves when proposals are given).
Text embeddings are encoded (and cached) before timing.
"""
from __future__ import annotations

import argparse
import json
import os
import platform

import numpy as np

import unidetector  # noqa: F401  (runtime bootstrap before jittor)
from unidetector.api import Detector
from unidetector.commands.detect import list_images


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--proposal-checkpoint", required=True)
    p.add_argument("--images", nargs="+", required=True, help="image files or folders")
    p.add_argument("--classes", required=True)
    p.add_argument("--classes-swap", required=True)
    p.add_argument("--encoder", default=None)
    p.add_argument("--max-images", type=int, default=5)
    args = p.parse_args()

    images, _ = list_images(args.images)
    images = images[:args.max_images + 1]
    if len(images) < 2:
        raise SystemExit("need at least 2 images (the first one only warms up)")
    det = Detector.from_checkpoint(args.checkpoint, proposal_checkpoint=args.proposal_checkpoint,
                                   classes=args.classes, encoder=args.encoder, score_thr=0.0)
    det.embeddings(det.vocabulary)
    swap = [c.strip() for c in args.classes_swap.split(",") if c.strip()]
    det.embeddings(swap)
    det.detect(images[0])                      # warm-up: compile both paths
    det.detect(images[0], classes=swap)
    rows = []
    for image in images[1:]:
        det.detect(image, reuse_regions=False)
        full = dict(det.last_timings)
        det.detect(image, classes=swap)
        assert det.last_timings["reused"]
        rows.append((full["total"], full["stage1"], full["regions"], full["score"], det.last_timings["total"]))
    full_s, stage1_s, regions_s, score_s, rescore_s = (float(np.median(c)) for c in zip(*rows))
    print(json.dumps({
        "images": len(rows), "classes": len(det.vocabulary), "classes_swap": len(swap),
        "full_s": round(full_s, 4), "stage1_s": round(stage1_s, 4), "regions_s": round(regions_s, 4),
        "score_s": round(score_s, 4), "rescore_s": round(rescore_s, 4),
        "speedup": round(full_s / rescore_s, 1), "speedup_stage2": round((regions_s + score_s) / rescore_s, 1),
        "threads": os.environ.get("OMP_NUM_THREADS"), "machine": platform.machine(),
    }, indent=1))


if __name__ == "__main__":
    main()
