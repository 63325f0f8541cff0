"""One training iteration, ours vs PyTorch in the same run (prints JSON).

An iteration is what the trainer does: forward with target assignment and sampling, the losses,
backward, gradient clipping (max norm 35) and the optimizer step, on a batch of 2 random images
with 5 random GT boxes each. Random weights.

* ``stage1``: the CLN of ``configs/synthetic/stage1_cln.py`` (ResNet-50 base 16, FPN 64, box-head FC
  256; batch-statistics BN; SGD) at 448×352, or with ``--full`` the widths of
  ``configs/coco_objects365_1ststage_rpn.py`` (base 64, FPN 256, FC 1024; frozen stem + layer1 and
  BN statistics) at 800×1344;
* ``stage2``: the partitioned CLIP stage 2 of ``configs/synthetic/stage2_partitioned.py`` (CLIP ResNet
  width 16, one block per stage, RoIAlign of the config's size (official 14), layer4, attention pool,
  two vocabularies of 30 and 20 classes, 1024-d; AdamW) at 576×448 with 300 proposals per image, or
  with ``--full`` RN50 (width 64, 3-4-6-3, frozen stem + layer1 and BN statistics, SGD) at 800×1088.

The PyTorch side (``benchmarks/torch_reference.py``) is the same network on the same weights; its
losses take the anchor/RoI targets and sampled class masks of one forward of ours (fixed), so it
does no assignment or sampling (PyTorch is favoured by that work). ``loss_diff`` is the largest
difference between our loss terms and the reference's on that first forward, the check that both
compute the same thing (``tests/test_benchmark_references.py`` checks it at small sizes, with
gradients). ``ratio`` = ours / PyTorch (< 1: ours is faster); medians of ``--repeat`` iterations
after one warm-up iteration each, run alternately. The reference's RoIAlign is PyTorch with a Python
loop over RoIs (torchvision is not a dependency): the forward + backward time of it and of our
kernel on the same RoIs and maps is reported (``roi_align_seconds``), with
``ratio_with_our_roi_align_time_in_torch``, the ratio after swapping the reference's RoIAlign time
for ours, so that the RoIAlign implementation does not decide the comparison.

``--cuda`` runs both on the GPU (a machine with an NVIDIA GPU: ours with ``jt.flags.use_cuda = 1``, the reference on
PyTorch's ``cuda`` device, each step timed to the end of its GPU work; the CPU-only levers do not apply, and the
RoIAlign swap is not made).

``--amp`` adds mixed precision, all four run alternately: ours with bfloat16 training convolutions (what
``unidet train --amp`` does on a CPU with AMX or AVX-512-BF16) and PyTorch under
``torch.autocast("cpu", dtype=torch.bfloat16)``: ``ratio_amp`` (ours / PyTorch, both mixed),
``ratio_amp_to_torch_float32`` and each side's speed-up over its float32 step.

  python benchmarks/train_step.py [--stages stage1 stage2] [--repeat 3] [--full] [--amp | --cuda]
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

from unidetector.config import load_config
from unidetector.engine.optim import build_optimizer, clip_grad_norm
from unidetector.models.builder import build_detector
from unidetector.models.detectors import parse_losses
from unidetector.models.layers import channels_last

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

STAGE1_SYNTH = os.path.join(ROOT, "configs", "synthetic", "stage1_cln.py")
STAGE2_SYNTH = os.path.join(ROOT, "configs", "synthetic", "stage2_partitioned.py")
GRAD_CLIP = 35.0
_ABSENT = object()


# ----------------------------------------------------------------------------- inputs
def random_batch(rng, h: int, w: int, batch: int = 2, boxes: int = 5, classes=(30, 20), proposals: int = 0):
    """Images (B, 3, pad_h, pad_w), metas, GT boxes/labels and (optionally) proposals (n, 5) per image."""
    pad_h, pad_w = -(-h // 32) * 32, -(-w // 32) * 32
    img = rng.standard_normal((batch, 3, pad_h, pad_w)).astype(np.float32)
    metas, gts, labels, props = [], [], [], []
    for i in range(batch):
        metas.append(dict(img_shape=(h, w, 3), pad_shape=(pad_h, pad_w, 3), ori_shape=(h, w, 3), flip=False,
                          scale_factor=np.ones(4, np.float32), dataset_id=i % len(classes)))
        xy = rng.uniform(0, [w * 0.7, h * 0.7], size=(boxes, 2))
        wh = rng.uniform(24, [w * 0.3, h * 0.3], size=(boxes, 2))
        gts.append(np.concatenate([xy, xy + wh], 1).astype(np.float32))
        labels.append(rng.integers(0, classes[i % len(classes)], size=boxes).astype(np.int64))
        if proposals:
            pxy = rng.uniform(0, [w - 32, h - 32], size=(proposals, 2))
            pwh = rng.uniform(16, [w * 0.5, h * 0.5], size=(proposals, 2))
            p = np.concatenate([pxy, np.minimum(pxy + pwh, [w, h])], 1)
            p[:boxes] = gts[-1] + rng.normal(0, 4, size=(boxes, 4))  # some positives
            props.append(np.concatenate([p, rng.uniform(0, 1, (proposals, 1))], 1).astype(np.float32))
    return img, metas, gts, labels, props


def model_inputs(img, metas, gts, labels, props):
    kw = dict(gt_bboxes=[jt.array(g) for g in gts], gt_labels=[jt.array(lab) for lab in labels])
    if props:
        kw["proposals"] = [jt.array(p) for p in props]
    return jt.array(img), metas, kw


# ----------------------------------------------------------------------------- models
def stage1_config(full: bool):
    cfg = load_config(os.path.join(ROOT, "configs", "coco_objects365_1ststage_rpn.py") if full else STAGE1_SYNTH)
    cfg.model.backbone.pop("init_cfg", None)
    cfg.model.backbone.pop("pretrained", None)
    return cfg


def stage1_model(cfg):
    """(our CLN of ``cfg``, reference kwargs)."""
    model = build_detector(cfg.model)
    b = cfg.model.backbone
    ref_kw = dict(base=b.get("base_channels", 64), fpn=cfg.model.neck.out_channels,
                  fc=cfg.model.roi_head.bbox_head.fc_out_channels, frozen_stages=b.get("frozen_stages", -1),
                  norm_eval=b.get("norm_eval", True), stage_blocks=tuple(b.get("stage_blocks") or (3, 4, 6, 3)))
    return model, ref_kw


def stage2_config(full: bool, tmp: str, classes=(30, 20), dim: int = 1024, width: int = 16, layers=(1, 1, 1, 1)):
    """The partitioned stage-2 config with random text embeddings (written to ``tmp``); ``full``: RN50 as the
    official stage 2 (frozen stem + layer1, CLIP's BN statistics, SGD)."""
    cfg = load_config(STAGE2_SYNTH)
    rng = np.random.default_rng(5)
    paths = []
    for i, c in enumerate(classes):
        paths.append(os.path.join(tmp, f"emb_{i}.npy"))
        np.save(paths[-1], rng.standard_normal((c, dim)).astype(np.float32))
    head = cfg.model.roi_head.bbox_head
    head.zeroshot_path, head.cat_freq_path, head.num_classes = paths, [None] * len(paths), max(classes)
    head.with_reg = True  # the official head's work, box regression included (the synthetic config has none)
    if full:
        width, layers = 64, (3, 4, 6, 3)
        cfg.model.backbone.update(frozen_stages=1, norm_eval=True)
        cfg.model.roi_head.shared_head.update(norm_eval=True, frozen=False)  # the official stage 2 trains layer4
        cfg.optimizer = dict(type="SGD", lr=0.002, momentum=0.9, weight_decay=0.0001)
    cfg.model.backbone.update(width=width, layers=list(layers))
    cfg.model.roi_head.shared_head.update(width=width, layers=list(layers))
    cfg.model.roi_head.bbox_roi_extractor.out_channels = width * 16
    head.in_channels = width * 32
    return cfg


def stage2_model(cfg):
    """(our partitioned stage-2 model of ``cfg``, reference kwargs)."""
    model = build_detector(cfg.model)
    head, b = cfg.model.roi_head.bbox_head, cfg.model.backbone
    embs = [np.load(p) for p in head.zeroshot_path]
    ref_kw = dict(embeddings=embs, num_classes=head.num_classes, layers=tuple(b.layers), width=b.width,
                  frozen_stages=b.get("frozen_stages", 1), norm_eval=b.get("norm_eval", True),
                  roi_size=int(cfg.model.roi_head.bbox_roi_extractor.roi_layer.output_size),
                  frozen_layer4=bool(cfg.model.roi_head.shared_head.get("frozen", False)))
    return model, ref_kw


# ----------------------------------------------------------------------------- our targets, captured
def capture_targets(model, stage: str, img, metas, kw):
    """One training forward of ours, recording the targets its assigners/samplers drew.

    Returns ``(losses, targets)``: our loss dict (jt Vars) and numpy targets for
    ``torch_reference.CLN.losses`` / ``Stage2Train.losses``."""
    got = {}
    roi_head = model.roi_head
    orig_roi = roi_head._bbox_forward_train

    def roi_forward_train(x, sampling_results, gt_bboxes, gt_labels, img_metas):
        res = orig_roi(x, sampling_results, gt_bboxes, gt_labels, img_metas)
        got["rois"] = res["rois"].numpy()
        got["roi_targets"] = [t.numpy() for t in res["targets"]]
        got["image_rows"] = [r.pos_bboxes.shape[0] + r.neg_bboxes.shape[0] for r in sampling_results]
        return res

    patches = [(roi_head, "_bbox_forward_train", roi_forward_train)]
    if stage == "stage1":
        rpn = model.rpn_head
        orig_loss = rpn.loss

        def rpn_loss(cls_scores, bbox_preds, objectness_scores, gt_bboxes, img_metas, gt_bboxes_ignore=None):
            losses, t = orig_loss(cls_scores, bbox_preds, objectness_scores, gt_bboxes, img_metas,
                                  gt_bboxes_ignore=gt_bboxes_ignore, return_targets=True)
            anchors, sizes, _ = rpn.get_anchors([c.shape[-2:] for c in cls_scores], img_metas)
            got["rpn"] = {k: (v.numpy() if isinstance(v, jt.Var) else v) for k, v in t.items()}
            got["rpn"].update(anchors=anchors.numpy(), level_sizes=list(sizes))
            return losses

        patches.append((rpn, "loss", rpn_loss))
    else:
        head = roi_head.bbox_head
        orig_sampler = head.neg_class_sampler
        got["class_masks"] = []

        def sampler(appeared, eligible):
            mask = orig_sampler(appeared, eligible)
            got["class_masks"].append(mask.astype(np.float32))
            return mask

        patches.append((head, "neg_class_sampler", sampler))
    saved = [(obj, name, obj.__dict__.get(name, _ABSENT)) for obj, name, _ in patches]
    for obj, name, fn in patches:
        obj.__dict__[name] = fn
    try:
        losses = model(img, metas, **kw)
        jt.sync(list(v for v in losses.values() if isinstance(v, jt.Var)))
    finally:
        for obj, name, old in saved:
            if old is _ABSENT:
                del obj.__dict__[name]
            else:
                obj.__dict__[name] = old
    return losses, to_reference_targets(stage, got, metas)


def to_reference_targets(stage: str, got: dict, metas) -> dict:
    import torch

    t = lambda a, dtype=torch.float32: torch.as_tensor(np.asarray(a), dtype=dtype)  # noqa: E731
    rt = got["roi_targets"]
    if stage == "stage1":
        rpn = dict(got["rpn"])
        out = dict(rpn={k: (t(v, torch.int64) if k == "labels" else t(v)) if isinstance(v, np.ndarray) else v
                        for k, v in rpn.items()})
        out["rcnn"] = dict(rois=t(got["rois"]), labels=t(rt[0], torch.int64), label_weights=t(rt[1]),
                           bbox_targets=t(rt[2]), bbox_weights=t(rt[3]), score_targets=t(rt[4]),
                           score_weights=t(rt[5]))
        return out
    bounds = np.cumsum([0] + got["image_rows"])
    return dict(rois=t(got["rois"]), labels=t(rt[0], torch.int64), bbox_targets=t(rt[2]), bbox_weights=t(rt[3]),
                image_rows=[(int(bounds[i]), int(bounds[i + 1])) for i in range(len(metas))],
                dataset_ids=[int(m.get("dataset_id", 0)) for m in metas],
                class_masks=[t(m) for m in got["class_masks"]])


def to_device(value, device: str):
    """``value`` (tensors in dicts and lists) on ``device``."""
    if hasattr(value, "to"):
        return value.to(device)
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_device(v, device) for v in value)
    return value


def loss_values(losses: dict) -> dict:
    """Loss terms as floats (lists summed), ``loss*`` keys only."""
    out = {}
    for k, v in losses.items():
        if "loss" not in k:
            continue
        vals = v if isinstance(v, (list, tuple)) else [v]
        out[k] = float(sum(float(x.item() if hasattr(x, "item") else x) for x in vals))
    return out


def build_reference(stage: str, model, ref_kw: dict):
    import torch_reference as tr

    ref = tr.CLN(**ref_kw) if stage == "stage1" else tr.Stage2Train(**ref_kw)
    missing = tr.load_jittor_weights(ref, model)
    if missing:
        raise RuntimeError(f"torch reference ({stage}): no Jittor weights for {missing[:5]}")
    return ref.train()


def torch_optimizer(ref, cfg):
    import torch

    opt = dict(cfg.optimizer)
    params = [p for p in ref.parameters() if p.requires_grad]
    if opt["type"] == "SGD":
        return torch.optim.SGD(params, lr=opt["lr"], momentum=opt.get("momentum", 0),
                               weight_decay=opt.get("weight_decay", 0))
    return torch.optim.AdamW(params, lr=opt["lr"], weight_decay=opt.get("weight_decay", 0.01))


# ----------------------------------------------------------------------------- timing
def bench_stage(stage: str, args, tmp: str) -> dict:
    import torch
    import torch_reference as tr

    rng = np.random.default_rng(0)
    jt.set_global_seed(0)
    np.random.seed(0)
    if stage == "stage1":
        cfg = stage1_config(args.full)
        model, ref_kw = stage1_model(cfg)
        h, w = (800, 1333) if args.full else (336, 448)
        batch = random_batch(rng, h, w, classes=(1,))
    else:
        cfg = stage2_config(args.full, tmp)
        model, ref_kw = stage2_model(cfg)
        h, w = (800, 1088) if args.full else (432, 576)
        batch = random_batch(rng, h, w, proposals=300)
    img, metas, kw = model_inputs(*batch)
    model.train()
    device = "cuda" if args.cuda else "cpu"
    ref = build_reference(stage, model, ref_kw).to(device)  # same weights, before any step
    ours_losses, targets = capture_targets(model, stage, img, metas, kw)
    targets = to_device(targets, device)
    t_img = torch.from_numpy(batch[0]).to(device)
    ref_losses = ref.losses(t_img, targets)
    ours_v, ref_v = loss_values(ours_losses), loss_values(ref_losses)
    loss_diff = max(abs(ours_v[k] - ref_v[k]) / max(abs(ref_v[k]), 1e-6) for k in ref_v)

    optimizer = build_optimizer(model, cfg.optimizer)
    t_opt = torch_optimizer(ref, cfg)
    sync = torch.cuda.synchronize if args.cuda else (lambda: None)

    def ours_step():
        t0 = time.perf_counter()
        loss, log_vars = parse_losses(model(img, metas, **kw))
        optimizer.backward(loss)
        jt.sync(list(log_vars.values()) + [g for _, _, g in optimizer.grads()])
        clip_grad_norm(optimizer, GRAD_CLIP)
        optimizer.step()
        jt.sync_all(True)
        return time.perf_counter() - t0

    def torch_step():
        sync()
        t0 = time.perf_counter()
        t_opt.zero_grad(set_to_none=True)
        loss = tr.total_loss(ref.losses(t_img, targets))
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in ref.parameters() if p.requires_grad], GRAD_CLIP)
        t_opt.step()
        sync()
        return time.perf_counter() - t0

    steps = dict(ours=ours_step, torch=torch_step)
    if args.amp:  # mixed precision: our bfloat16 training convolutions, PyTorch's bfloat16 autocast
        def ours_amp():
            with channels_last.training_dtype("bfloat16"):
                return ours_step()

        def torch_amp():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return torch_step()

        steps.update(ours_amp=ours_amp, torch_amp=torch_amp)
    first = {k: fn() for k, fn in steps.items()}  # warm-up (ours compiles its kernels)
    times = {k: [] for k in steps}
    for _ in range(args.repeat):
        for k, fn in steps.items():
            times[k].append(fn())
    med = {k: float(np.median(v)) for k, v in times.items()}
    amp = {}
    if args.amp:
        amp = dict(ratio_amp=round(med["ours_amp"] / med["torch_amp"], 3),
                   ratio_amp_to_torch_float32=round(med["ours_amp"] / med["torch"], 3),
                   amp_speedup_ours=round(med["ours"] / med["ours_amp"], 3),
                   amp_speedup_torch=round(med["torch"] / med["torch_amp"], 3))
    align = {}
    if not args.cuda:  # the swap of the reference's per-RoI Python RoIAlign for our kernel's time (CPU)
        t_align = roi_align_seconds(stage, ref, t_img, targets, args.repeat)
        align = dict(roi_align_seconds=dict((k, round(v, 4)) for k, v in t_align.items()),
                     ratio_with_our_roi_align_time_in_torch=round(
                         med["ours"] / (med["torch"] - t_align["torch"] + t_align["ours"]), 3))
    return dict(config=os.path.relpath(STAGE1_SYNTH if stage == "stage1" else STAGE2_SYNTH, ROOT)
                + (" (full width)" if args.full else ""),
                image_hw=[h, w], batch=2, seconds=dict((k, round(v, 4)) for k, v in med.items()),
                first_seconds=dict((k, round(v, 3)) for k, v in first.items()),
                ratio=round(med["ours"] / med["torch"], 3), loss_diff=float(f"{loss_diff:.3g}"), **align, **amp,
                losses=dict((k, round(v, 5)) for k, v in ours_v.items()))


def roi_align_seconds(stage: str, ref, img, targets: dict, repeat: int) -> dict:
    """Median seconds of RoIAlign forward + backward on the step's RoIs and the reference's feature maps:
    the reference's (``torch``: a Python loop over RoIs, no torchvision) and our kernel (``ours``)."""
    import torch
    import torch_reference as tr

    from unidetector.ops.roi_align import multilevel_roi_align

    with torch.no_grad():
        feats = ref.neck(ref.backbone(img))[:4] if stage == "stage1" else [ref.backbone(img)]
    rois = targets["rcnn"]["rois"] if stage == "stage1" else targets["rois"]
    strides = ref.strides if stage == "stage1" else (16,)
    size = 7 if stage == "stage1" else ref.roi_size
    jt_feats = [jt.array(f.numpy()) for f in feats]
    jt_rois = jt.array(rois.numpy())
    levels = jt.array(tr.map_roi_levels(rois, len(feats)).numpy().astype(np.int32))

    def torch_once():
        f = [x.detach().requires_grad_() for x in feats]
        t0 = time.perf_counter()
        out = (tr.multilevel_roi_align(f, rois, strides, size) if stage == "stage1"
               else tr.roi_align(f[0], rois, size, 1 / 16))
        out.backward(torch.ones_like(out))
        return time.perf_counter() - t0

    def ours_once():
        jt.sync_all(True)
        t0 = time.perf_counter()
        out = multilevel_roi_align(jt_feats, jt_rois, levels, [1 / s for s in strides], size, 0, True)
        jt.sync(jt.grad(out.sum(), jt_feats))
        return time.perf_counter() - t0

    out = {}
    for name, fn in (("torch", torch_once), ("ours", ours_once)):
        times = [fn() for _ in range(repeat + 1)]  # the first is a warm-up
        out[name] = float(np.median(times[1:]))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stages", nargs="+", default=["stage1", "stage2"], choices=["stage1", "stage2"])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--full", action="store_true", help="full widths (RN50 / ResNet-50 + FPN 256) at full size")
    ap.add_argument("--amp", action="store_true",
                    help="also time mixed precision: ours with bfloat16 training convolutions (--amp on the CPU), "
                         "PyTorch under bfloat16 autocast (processors with AMX / AVX-512-BF16)")
    ap.add_argument("--cuda", action="store_true",
                    help="both on the GPU: ours with jt.flags.use_cuda=1, the reference on torch's cuda device")
    args = ap.parse_args()
    import torch

    if args.cuda:
        if args.amp:
            ap.error("--amp times the CPU's bfloat16 convolutions; it does not go with --cuda")
        if not (jt.has_cuda and torch.cuda.is_available()):
            ap.error(f"--cuda: no CUDA device (jittor has_cuda={jt.has_cuda}, "
                     f"torch.cuda.is_available()={torch.cuda.is_available()})")
        jt.flags.use_cuda = 1

    threads = int(os.environ.get("OMP_NUM_THREADS", "0") or 0) or (os.cpu_count() or 1)
    torch.set_num_threads(threads)
    result = dict(benchmark="train_step", device="cuda" if args.cuda else "cpu", threads=threads, repeat=args.repeat,
                  torch_version=torch.__version__)
    with tempfile.TemporaryDirectory() as tmp:
        for stage in args.stages:
            result[stage] = bench_stage(stage, args, tmp)
    result["goal_ratio"] = 0.7
    result["meets_goal"] = all(result[s]["ratio"] <= 0.7 for s in args.stages)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
