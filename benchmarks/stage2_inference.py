"""Stage-2 open-world inference speed at full width (prints JSON).

CLIP RN50 (width 64) C4 backbone on one 800x1088 padded image, 100 proposals with scores, RoIAlign 14x14,
CLIP layer4 + attention pool, 1230 random text embeddings (LVIS v0.5 size), β-fusion with calibration,
per-class gaussian soft-NMS, 300 detections. Random weights. Reports seconds per image for backbone /
RoI head / post-processing (median of --repeat runs after a warm-up), the achieved GFLOP/s of the
convolutions and linear layers (FLOPs counted from the layer shapes; the attention pool's folded
key/value products are not counted), and, in the same run, the time
with the channels-last CPU path switched off (``nchw_seconds_per_image``, every convolution then
reorders its input and output in oneDNN).

  python benchmarks/stage2_inference.py [--repeat 3] [--classes 1230] [--proposals 100]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np

import unidetector  # noqa: F401  (runtime bootstrap before jittor)
import jittor as jt
from jittor import nn

from unidetector.models import detectors  # noqa: F401  (registers the model types)
from unidetector.models.layers import channels_last
from unidetector.ops import bbox2roi
from unidetector.registry import MODELS, build


def count_flops(model):
    """Register hooks adding 2·MACs of every Conv2d/Linear call to the returned counter."""
    counter = {"flops": 0.0}

    def conv_hook(m, inputs, output):
        k = m.weight.shape[1] * m.weight.shape[2] * m.weight.shape[3]
        counter["flops"] += 2.0 * k * float(np.prod(output.shape))

    def linear_hook(m, inputs, output):
        counter["flops"] += 2.0 * m.weight.shape[1] * float(np.prod(output.shape))

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_hook(conv_hook)
        elif isinstance(m, nn.Linear):
            m.register_forward_hook(linear_hook)
    return counter


def timed(fn):
    jt.sync_all(True)
    t = time.perf_counter()
    out = fn()
    if isinstance(out, jt.Var):
        out.sync()
    jt.sync_all(True)
    return out, time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--classes", type=int, default=1230)
    ap.add_argument("--proposals", type=int, default=100)
    ap.add_argument("--height", type=int, default=800)
    ap.add_argument("--width", type=int, default=1088)
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        emb = os.path.join(tmp, "emb.npy")
        np.save(emb, rng.normal(size=(args.classes, 1024)).astype(np.float32))
        prior = os.path.join(tmp, "prior.npy")
        np.save(prior, rng.integers(1, 1000, size=args.classes).astype(np.float64))
        cfg = dict(
            type="FastRCNN",
            backbone=dict(type="CLIPResNet", layers=[3, 4, 6, 3]),
            roi_head=dict(
                type="StandardRoIHead", with_proposal_score=True,
                shared_head=dict(type="CLIPResLayer", layers=[3, 4, 6, 3]),
                bbox_roi_extractor=dict(type="SingleRoIExtractor",
                                        roi_layer=dict(type="RoIAlign", output_size=14, sampling_ratio=0),
                                        out_channels=1024, featmap_strides=[16]),
                bbox_head=dict(type="BBoxHeadCLIPInference", in_channels=2048, roi_feat_size=7, num_classes=args.classes,
                               zeroshot_path=emb, beta=0.3, withcalibration=True, gamma=0.6, resultfile=prior)),
            test_cfg=dict(rcnn=dict(score_thr=1e-4, nms=dict(type="soft_nms", iou_threshold=0.5, method="gaussian"),
                                    max_per_img=300)))
        model = build(cfg, MODELS)
    model.eval()
    flops = count_flops(model)

    h, w = args.height, args.width
    img = jt.array(rng.normal(size=(1, 3, h, w)).astype(np.float32))
    xy = rng.uniform(0, [w - 64, h - 64], size=(args.proposals, 2))
    wh = rng.uniform(16, 400, size=(args.proposals, 2))
    boxes = np.concatenate([xy, np.minimum(xy + wh, [w, h])], 1)
    scores = np.sort(rng.uniform(0, 1, size=(args.proposals, 1)), axis=0)[::-1]
    proposals = jt.array(np.concatenate([boxes, scores], 1).astype(np.float32))
    meta = dict(img_shape=(h, w), scale_factor=np.ones(4, np.float32), ori_shape=(h, w), pad_shape=(h, w))
    roi_head, head = model.roi_head, model.roi_head.bbox_head

    def run_once():
        flops["flops"] = 0.0
        with jt.no_grad():
            x, t_backbone = timed(lambda: model.extract_feat(img))
            flops_backbone = flops["flops"]
            rois = bbox2roi([proposals])
            (cls_score, bbox_pred), t_roi = timed(lambda: head(roi_head.shared_head(roi_head.bbox_roi_extractor(x, rois))))
            flops_roi = flops["flops"] - flops_backbone
            (dets, labels), t_post = timed(lambda: head.get_bboxes(rois, (cls_score, proposals[:, -1]), bbox_pred,
                                                                   meta["img_shape"], meta["scale_factor"], True,
                                                                   roi_head.test_cfg))
        return dict(backbone=t_backbone, roi_head=t_roi, postprocess=t_post, flops_backbone=flops_backbone,
                     flops_roi=flops_roi, detections=int(dets.shape[0]))

    def median_times(runs):
        return {k: float(np.median([r[k] for r in runs])) for k in ("backbone", "roi_head", "postprocess")}

    channels_last.ENABLED = False
    run_once()  # warm-up: compiles every kernel
    nchw_runs = [run_once() for _ in range(args.repeat)]
    nchw = median_times(nchw_runs)
    channels_last.ENABLED = True
    run_once()
    runs = [run_once() for _ in range(args.repeat)]
    med = median_times(runs)
    total = sum(med.values())
    for r in runs:  # the forward hooks only see the NCHW modules' calls; the FLOPs are the same
        r.update(flops_backbone=nchw_runs[0]["flops_backbone"], flops_roi=nchw_runs[0]["flops_roi"])
    gflop = (runs[0]["flops_backbone"] + runs[0]["flops_roi"]) / 1e9
    print(json.dumps(dict(
        benchmark="stage2_inference", image=[h, w], proposals=args.proposals, classes=args.classes,
        threads=int(os.environ.get("OMP_NUM_THREADS", "0") or 0), use_cuda=int(jt.flags.use_cuda),
        seconds_per_image=round(total, 4), seconds=dict((k, round(v, 4)) for k, v in med.items()),
        gflop=dict(backbone=round(runs[0]["flops_backbone"] / 1e9, 2), roi_head=round(runs[0]["flops_roi"] / 1e9, 2)),
        gflops_per_s=dict(backbone=round(runs[0]["flops_backbone"] / 1e9 / med["backbone"], 2),
                          roi_head=round(runs[0]["flops_roi"] / 1e9 / med["roi_head"], 2),
                          overall=round(gflop / total, 2)),
        detections=runs[0]["detections"], goal_seconds_per_image=2.5, meets_goal=total <= 2.5,
        nchw_seconds_per_image=round(sum(nchw.values()), 4),
        nchw_seconds=dict((k, round(v, 4)) for k, v in nchw.items()),
        speedup_vs_nchw=round(sum(nchw.values()) / total, 3)), indent=1))


if __name__ == "__main__":
    main()
