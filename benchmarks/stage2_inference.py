"""Stage-2 open-world inference speed at full width, ours vs PyTorch in the same run (prints JSON).

CLIP RN50 (width 64) C4 backbone on one 800x1088 padded image, 100 proposals with scores, RoIAlign 14x14,
CLIP layer4 + attention pool, 1230 random text embeddings (LVIS v0.5 size), β-fusion with calibration,
per-class gaussian soft-NMS, 300 detections. Random weights. Reports seconds per image for backbone /
RoI head / post-processing (median of --repeat runs after a warm-up), the achieved GFLOP/s of the
convolutions and linear layers (FLOPs counted from the layer shapes; the attention pool's folded
key/value products are not counted) and their fraction of the processor's fp32 peak, and, in the
same run, alternately:

* ``torch``: the same network in plain PyTorch (``benchmarks/torch_reference.py``: OpenAI's
  ``ModifiedResNet`` C4, RoIAlign 14x14, ``layer4``, OpenAI's ``AttentionPool2d(7, 2048, 32, 1024)``,
  1230-class cosine logits, ``fc_reg``) on the same weights, NCHW and channels-last
  (``torch.channels_last``), with the ratio ours / PyTorch per part (< 1: ours is faster); the
  reference's equality with ours is ``tests/test_benchmark_references.py``, and the run reports the
  largest logit difference as a check. The reference's RoIAlign is plain PyTorch per RoI (no
  torchvision, a Python loop over RoIs): its time inside the RoI head is reported (``roi_align`` in
  ``torch*_seconds``), and ``ratio_vs_best_torch`` compares with the faster PyTorch layout per part
  after swapping that time for our kernel's (``our_roi_align_seconds``). Post-processing
  (ours: decode, calibrated fusion, soft-NMS) is reported beside it, not compared;
* ``nchw``: ours with the channels-last CPU path switched off (every convolution then reorders its
  input and output in oneDNN, and BatchNorm, residual add and ReLU are separate passes);
* ``ours_bf16`` and ``torch_bf16`` (``--bf16``; by default where the processor has AMX or AVX-512-BF16):
  ours with ``UNIDET_INFERENCE_DTYPE=bfloat16`` (the channels-last layers in bfloat16, float32
  accumulation; an opt-in) and PyTorch channels-last under ``torch.autocast("cpu", torch.bfloat16)``.
  ``bf16_ratio_vs_torch_bf16`` compares the two bfloat16 modes, ``bf16_ratio_vs_best_torch_float32``
  ours in bfloat16 with PyTorch's best float32 layout; ``bf16_vs_float32`` gives the logit differences
  between our two modes and how often they agree on the top class.

  python benchmarks/stage2_inference.py [--repeat 3] [--classes 1230] [--proposals 100] [--no-torch]
                                        [--no-nchw] [--bf16 auto|on|off]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

import unidetector  # noqa: F401  (runtime bootstrap before jittor)
import jittor as jt
from jittor import nn

from unidetector.models import detectors  # noqa: F401  (registers the model types)
from unidetector.models.layers import channels_last
from unidetector.ops import bbox2roi, onednn
from unidetector.registry import MODELS, build

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cpu_peak import cpu_peak_gflops  # noqa: E402


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


def build_ours(args, rng):
    """Our FastRCNN stage-2 model (random weights) and the text embeddings it holds."""
    with tempfile.TemporaryDirectory() as tmp:
        emb = os.path.join(tmp, "emb.npy")
        embeddings = rng.normal(size=(args.classes, 1024)).astype(np.float32)
        np.save(emb, embeddings)
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
                bbox_head=dict(type="BBoxHeadCLIPInference", in_channels=2048, roi_feat_size=7,
                               num_classes=args.classes,
                               zeroshot_path=emb, beta=0.3, withcalibration=True, gamma=0.6, resultfile=prior)),
            test_cfg=dict(rcnn=dict(score_thr=1e-4, nms=dict(type="soft_nms", iou_threshold=0.5, method="gaussian"),
                                    max_per_img=300)))
        model = build(cfg, MODELS)
    model.eval()
    return model, embeddings


def torch_runner(model, embeddings, img_np, rois_np, channels_last_format: bool, bf16: bool = False):
    """A ``run_once`` of the plain-PyTorch reference on our weights: times backbone and RoI head
    (``bf16``: under ``torch.autocast("cpu", torch.bfloat16)``, PyTorch's own bfloat16 mode)."""
    import contextlib

    import torch
    from torch_reference import Stage2, load_jittor_weights, roi_align

    ref = Stage2(embeddings).eval()
    missing = load_jittor_weights(ref, model)
    if missing:
        raise RuntimeError(f"torch reference: no Jittor weights for {missing[:5]}")
    img, rois = torch.from_numpy(img_np), torch.from_numpy(rois_np)
    if channels_last_format:
        ref = ref.to(memory_format=torch.channels_last)
        img = img.contiguous(memory_format=torch.channels_last)

    def run_once():
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with torch.inference_mode(), autocast:
            t = time.perf_counter()
            c4 = ref.backbone(img)
            t_backbone = time.perf_counter() - t
            t = time.perf_counter()
            logits, deltas = ref.roi_head(c4, rois)
            t_roi = time.perf_counter() - t
            t = time.perf_counter()
            roi_align(c4, rois, 14, 1 / 16)
            t_align = time.perf_counter() - t
        return dict(backbone=t_backbone, roi_head=t_roi, roi_align=t_align, logits=logits.float().numpy())

    return run_once


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--classes", type=int, default=1230)
    ap.add_argument("--proposals", type=int, default=100)
    ap.add_argument("--height", type=int, default=800)
    ap.add_argument("--width", type=int, default=1088)
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch reference")
    ap.add_argument("--no-nchw", action="store_true", help="skip ours without the channels-last path")
    ap.add_argument("--bf16", choices=["auto", "on", "off"], default="auto",
                    help="also time bfloat16 inference (ours and PyTorch's autocast); auto: where the CPU has it")
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    model, embeddings = build_ours(args, rng)
    flops = count_flops(model)

    h, w = args.height, args.width
    img_np = rng.normal(size=(1, 3, h, w)).astype(np.float32)
    img = jt.array(img_np)
    xy = rng.uniform(0, [w - 64, h - 64], size=(args.proposals, 2))
    wh = rng.uniform(16, 400, size=(args.proposals, 2))
    boxes = np.concatenate([xy, np.minimum(xy + wh, [w, h])], 1)
    scores = np.sort(rng.uniform(0, 1, size=(args.proposals, 1)), axis=0)[::-1]
    proposals = jt.array(np.concatenate([boxes, scores], 1).astype(np.float32))
    rois_np = np.concatenate([np.zeros((args.proposals, 1)), boxes], 1).astype(np.float32)
    meta = dict(img_shape=(h, w), scale_factor=np.ones(4, np.float32), ori_shape=(h, w), pad_shape=(h, w))
    roi_head, head = model.roi_head, model.roi_head.bbox_head

    def run_once():
        flops["flops"] = 0.0
        with jt.no_grad():
            x, t_backbone = timed(lambda: model.extract_feat(img))
            flops_backbone = flops["flops"]
            rois = bbox2roi([proposals])
            (cls_score, bbox_pred), t_roi = timed(
                lambda: head(roi_head.shared_head(roi_head.bbox_roi_extractor(x, rois))))
            flops_roi = flops["flops"] - flops_backbone
            _, t_align = timed(lambda: roi_head.bbox_roi_extractor(x, rois))
            (dets, labels), t_post = timed(lambda: head.get_bboxes(rois, (cls_score, proposals[:, -1]), bbox_pred,
                                                                   meta["img_shape"], meta["scale_factor"], True,
                                                                   roi_head.test_cfg))
        return dict(backbone=t_backbone, roi_head=t_roi, postprocess=t_post, flops_backbone=flops_backbone,
                    flops_roi=flops_roi, detections=int(dets.shape[0]), logits=cls_score.numpy(), roi_align=t_align)

    def with_layout(enabled, fn, dtype="float32"):
        def run():
            channels_last.ENABLED, channels_last.DTYPE = enabled, dtype
            try:
                return fn()
            finally:
                channels_last.ENABLED, channels_last.DTYPE = True, "float32"
        return run

    bf16 = args.bf16 == "on" or (args.bf16 == "auto" and onednn.bf16_supported())
    variants = {"ours": with_layout(True, run_once)}
    if bf16:
        variants["ours_bf16"] = with_layout(True, run_once, "bfloat16")
    if not args.no_nchw:
        variants["nchw"] = with_layout(False, run_once)
    if not args.no_torch:
        import torch

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "0") or 0) or (os.cpu_count() or 1))
        variants["torch"] = torch_runner(model, embeddings, img_np, rois_np, False)
        variants["torch_channels_last"] = torch_runner(model, embeddings, img_np, rois_np, True)
        if bf16:
            variants["torch_bf16"] = torch_runner(model, embeddings, img_np, rois_np, True, bf16=True)
    runs = {k: [] for k in variants}
    first = {k: fn() for k, fn in variants.items()}  # warm-up: compiles every kernel
    for _ in range(args.repeat):  # alternately, so that a busy machine slows every variant alike
        for k, fn in variants.items():
            runs[k].append(fn())

    def median_times(rs, parts):
        return {k: float(np.median([r[k] for r in rs])) for k in parts}

    med = median_times(runs["ours"], ("backbone", "roi_head", "postprocess"))
    med["network"] = med["backbone"] + med["roi_head"]
    total = med["network"] + med["postprocess"]
    ours_align = float(np.median([r["roi_align"] for r in runs["ours"]]))
    # the forward hooks only see the calls of NCHW modules (the channels-last path calls oneDNN directly)
    fl = first["nchw"] if "nchw" in first else with_layout(False, run_once)()
    gflop_b, gflop_r = fl["flops_backbone"] / 1e9, fl["flops_roi"] / 1e9
    peak = cpu_peak_gflops()
    result = dict(
        benchmark="stage2_inference", image=[h, w], proposals=args.proposals, classes=args.classes,
        threads=int(os.environ.get("OMP_NUM_THREADS", "0") or 0) or os.cpu_count(), repeat=args.repeat,
        use_cuda=int(jt.flags.use_cuda), seconds_per_image=round(total, 4),
        seconds=dict((k, round(v, 4)) for k, v in med.items()),
        gflop=dict(backbone=round(gflop_b, 2), roi_head=round(gflop_r, 2)),
        gflops_per_s=dict(backbone=round(gflop_b / med["backbone"], 2), roi_head=round(gflop_r / med["roi_head"], 2),
                          network=round((gflop_b + gflop_r) / med["network"], 2)),
        cpu_peak=peak, detections=runs["ours"][0]["detections"])
    if peak["gflops"] and gflop_b:
        result["fraction_of_peak"] = dict(backbone=round(gflop_b / med["backbone"] / peak["gflops"], 3),
                                          network=round((gflop_b + gflop_r) / med["network"] / peak["gflops"], 3))
    if "nchw" in runs:
        nchw = median_times(runs["nchw"], ("backbone", "roi_head", "postprocess"))
        result["nchw_seconds"] = dict((k, round(v, 4)) for k, v in nchw.items())
        result["speedup_vs_nchw"] = round(sum(nchw.values()) / total, 3)
    if "ours_bf16" in runs:
        b = median_times(runs["ours_bf16"], ("backbone", "roi_head", "postprocess"))
        b["network"] = b["backbone"] + b["roi_head"]
        result["bf16_seconds"] = dict((k, round(v, 4)) for k, v in b.items())
        diff = np.abs(first["ours_bf16"]["logits"] - first["ours"]["logits"])
        result["bf16_vs_float32"] = dict(
            max_logit_diff=float(diff.max()), mean_logit_diff=float(diff.mean()),
            top1_agreement=float(np.mean(first["ours_bf16"]["logits"].argmax(1) == first["ours"]["logits"].argmax(1))))
    fair = {}  # each reference with its RoIAlign time replaced by ours (its RoIAlign loops over RoIs in Python)
    for name in ("torch", "torch_channels_last", "torch_bf16"):
        if name in runs:
            t = median_times(runs[name], ("backbone", "roi_head", "roi_align"))
            t["network"] = t["backbone"] + t["roi_head"]
            result[f"{name}_seconds"] = dict((k, round(v, 4)) for k, v in t.items())
            result[f"ratio_vs_{name}"] = dict((k, round(med[k] / t[k], 3)) for k in ("backbone", "roi_head", "network"))
            result[f"{name}_max_logit_diff"] = float(np.abs(first[name]["logits"] - first["ours"]["logits"]).max())
            swap = ours_align - t["roi_align"]
            fair[name] = dict(backbone=t["backbone"], roi_head=t["roi_head"] + swap, network=t["network"] + swap)
    if "torch_bf16" in fair and "bf16_seconds" in result:
        bf = fair.pop("torch_bf16")
        result["torch_bf16_seconds_with_our_roi_align_time"] = dict((k, round(v, 4)) for k, v in bf.items())
        result["bf16_ratio_vs_torch_bf16"] = dict((k, round(result["bf16_seconds"][k] / v, 3)) for k, v in bf.items())
    if fair:
        result["our_roi_align_seconds"] = round(ours_align, 4)
        best = {k: min(f[k] for f in fair.values()) for k in ("backbone", "roi_head", "network")}
        result["best_torch_seconds_with_our_roi_align_time"] = dict((k, round(v, 4)) for k, v in best.items())
        result["ratio_vs_best_torch"] = dict((k, round(med[k] / v, 3)) for k, v in best.items())
        result["goal_network_ratio"] = 0.4
        result["meets_goal"] = result["ratio_vs_best_torch"]["network"] <= 0.4
        if "bf16_seconds" in result:  # ours in bfloat16 (opt-in) against PyTorch's float32 layouts
            result["bf16_ratio_vs_best_torch_float32"] = dict(
                (k, round(result["bf16_seconds"][k] / v, 3)) for k, v in best.items())
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
