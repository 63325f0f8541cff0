"""Stage-1 (CLN) speed on this machine, random weights, printed as JSON.

  python benchmarks/stage1.py [--config configs/coco_objects365_1ststage_rpn.py] [--size 800 1333] [--iters 3]

* ``infer_s_per_image``: test-mode forward (backbone, FPN, OlnRPNHead, RoI head, NMS, rescale) of one
  image of ``--size`` (H W), full width (ResNet-50 base 64, FPN 256), after one warm-up run;
* ``train_step_s``: forward + backward + SGD update on a batch of 2 such images with 5 GT boxes each.
  The random weights start every residual branch's last BatchNorm scale at 1 (``zero_init_residual=False``), as
  pretrained weights do: from mmdet's zero scales the first update at lr 1e-4 leaves denormal scales, and every
  later step ran ~1.6x slower than the first (``train_first_s`` 18.1 s, ``train_step_s`` 28.0 s at full width,
  2026-12-01), a cost no real training pays.
Timings use ``jt.sync_all(True)``; the first (compiling) run is reported separately.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

import unidetector  # noqa: F401  (runtime bootstrap before jittor)
import jittor as jt

from unidetector.config import load_config
from unidetector.runtime import STATE
from unidetector.models.builder import build_detector
from unidetector.models.detectors import parse_losses

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def timed(fn, iters):
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        jt.sync_all(True)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=os.path.join(ROOT, "configs", "coco_objects365_1ststage_rpn.py"))
    parser.add_argument("--size", type=int, nargs=2, default=(800, 1333), metavar=("H", "W"))
    parser.add_argument("--iters", type=int, default=3)
    args = parser.parse_args()
    h, w = args.size
    pad_h, pad_w = -(-h // 32) * 32, -(-w // 32) * 32
    rng = np.random.default_rng(0)
    jt.set_global_seed(0)

    cfg = load_config(args.config)
    cfg.model.backbone.pop("init_cfg", None)
    cfg.model.backbone.zero_init_residual = False  # see the module doc (denormal BatchNorm scales)
    model = build_detector(cfg.model)
    meta = dict(img_shape=(h, w, 3), pad_shape=(pad_h, pad_w, 3), ori_shape=(h, w, 3),
                scale_factor=np.ones(4, np.float32), flip=False)

    img1 = jt.array(rng.standard_normal((1, 3, pad_h, pad_w)).astype(np.float32))
    model.eval()

    def infer():
        with jt.no_grad():
            model(img1, [meta], rescale=True)

    t0 = time.perf_counter()
    infer()
    jt.sync_all(True)
    first_infer = time.perf_counter() - t0
    infer_s = timed(infer, args.iters)

    img2 = jt.array(rng.standard_normal((2, 3, pad_h, pad_w)).astype(np.float32))
    gts = []
    for _ in range(2):
        xy = rng.uniform(0, [w * 0.7, h * 0.7], size=(5, 2))
        wh = rng.uniform(32, [w * 0.3, h * 0.3], size=(5, 2))
        gts.append(jt.array(np.concatenate([xy, xy + wh], 1).astype(np.float32)))
    labels = [jt.zeros((5,), dtype="int64") for _ in range(2)]
    model.train()
    optimizer = jt.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, weight_decay=1e-4)

    def step():
        total, _ = parse_losses(model(img2, [meta, meta], gt_bboxes=gts, gt_labels=labels))
        optimizer.step(total)

    t0 = time.perf_counter()
    step()
    jt.sync_all(True)
    first_step = time.perf_counter() - t0
    train_s = timed(step, args.iters)
    print(json.dumps(dict(
        benchmark="stage1_cln", config=os.path.relpath(args.config, ROOT), image_hw=[h, w], batch_train=2,
        device="cuda" if jt.flags.use_cuda else "cpu", omp_threads=os.environ.get("OMP_NUM_THREADS"),
        onednn=bool(STATE.get("onednn")), iters=args.iters,
        infer_s_per_image=round(infer_s, 3), infer_first_s=round(first_infer, 3),
        train_step_s=round(train_s, 3), train_first_s=round(first_step, 3))))


if __name__ == "__main__":
    main()
