"""Speed of the detection ops, as one JSON object.

* RoIAlign forward + backward: 512 RoIs x 1024 channels -> 14x14, from a 50x68 map
  (stride 16, i.e. an 800x1088 image), sampling_ratio 0, aligned.
* multiclass soft-NMS (gaussian, sigma 0.5, min_score 1e-3): 100 proposals x 1230 classes,
  score_thr 1e-4, max 300 detections (the LVIS inference setting).

When ``torch`` is importable the same run also times straightforward references
(RoIAlign written with PyTorch tensor ops + autograd, one RoI at a time; soft-NMS in
numpy, one class at a time) and prints our speed-up over them.

    python benchmarks/ops.py [--repeat 5] [--seed 0]
"""
import argparse
import json
import time


def best_time(fn, repeat, sync=lambda: None):
    fn()  # warm-up (compiles on first use)
    sync()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return min(times)


def make_inputs(seed):
    import numpy as np

    rng = np.random.default_rng(seed)
    feat = rng.standard_normal((1, 1024, 50, 68), dtype=np.float32)
    xy = rng.uniform(0, [1088, 800], (512, 2))
    wh = rng.uniform(16, 400, (512, 2))
    rois = np.concatenate([np.zeros((512, 1)), xy, np.minimum(xy + wh, [1088, 800])], 1).astype(np.float32)
    grad_out = rng.standard_normal((512, 1024, 14, 14), dtype=np.float32)
    pxy = rng.uniform(0, [1000, 700], (100, 2))
    proposals = np.concatenate([pxy, pxy + rng.uniform(20, 300, (100, 2))], 1).astype(np.float32)
    scores = rng.uniform(0, 1, (100, 1231)).astype(np.float32) ** 4  # many small, some large
    return feat, rois, grad_out, proposals, scores


# ----------------------------------------------------------------------------------------- references
def torch_roi_align(feat, rois, out_size, scale):
    """mmcv RoIAlign (aligned, adaptive sampling, avg) with plain PyTorch ops, one RoI at a time."""
    import math

    import torch

    outs = []
    _, _, H, W = feat.shape
    for r in rois:
        b, x1, y1, x2, y2 = r.tolist()
        sw, sh = x1 * scale - 0.5, y1 * scale - 0.5
        rw, rh = (x2 - x1) * scale, (y2 - y1) * scale
        gh, gw = max(math.ceil(rh / out_size), 0), max(math.ceil(rw / out_size), 0)
        if gh * gw == 0:
            outs.append(feat.new_zeros(feat.shape[1], out_size, out_size))
            continue
        ys = sh + (torch.arange(out_size)[:, None] + (torch.arange(gh)[None, :] + 0.5) / gh).reshape(-1) * rh / out_size
        xs = sw + (torch.arange(out_size)[:, None] + (torch.arange(gw)[None, :] + 0.5) / gw).reshape(-1) * rw / out_size
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        inside = ((yy >= -1) & (yy <= H) & (xx >= -1) & (xx <= W)).float()
        yy, xx = yy.clamp(0, H - 1), xx.clamp(0, W - 1)
        y0, x0 = yy.floor().long().clamp(max=H - 1), xx.floor().long().clamp(max=W - 1)
        y1_, x1_ = (y0 + 1).clamp(max=H - 1), (x0 + 1).clamp(max=W - 1)
        ly, lx = yy - y0, xx - x0
        f = feat[int(b)]
        val = (f[:, y0, x0] * (1 - ly) * (1 - lx) + f[:, y0, x1_] * (1 - ly) * lx
               + f[:, y1_, x0] * ly * (1 - lx) + f[:, y1_, x1_] * ly * lx) * inside
        outs.append(val.reshape(-1, out_size, gh, out_size, gw).mean((2, 4)))
    return torch.stack(outs)


def numpy_multiclass_soft_nms(boxes, scores, score_thr, max_num, sigma=0.5, min_score=1e-3):
    """Per-class gaussian soft-NMS in numpy (one class at a time), then top ``max_num``."""
    import numpy as np

    dets, labels = [], []
    for c in range(scores.shape[1] - 1):
        s = scores[:, c].copy()
        idx = np.flatnonzero(s > score_thr)
        b, s = boxes[idx], s[idx]
        area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        while s.size:
            i = int(np.argmax(s))
            dets.append(np.append(b[i], s[i]))
            labels.append(c)
            rest = np.arange(s.size) != i
            b, s, a = b[rest], s[rest], area[rest]
            bi, ai = dets[-1][:4], area[i]
            wh = np.clip(np.minimum(bi[2:], b[:, 2:]) - np.maximum(bi[:2], b[:, :2]), 0, None)
            inter = wh[:, 0] * wh[:, 1]
            s = s * np.exp(-(inter / (ai + a - inter)) ** 2 / sigma)
            keep = s >= min_score
            b, s, area = b[keep], s[keep], a[keep]
    dets = np.array(dets, np.float32).reshape(-1, 5)
    order = np.argsort(-dets[:, 4], kind="stable")[:max_num]
    return dets[order], np.array(labels)[order]


# ----------------------------------------------------------------------------------------- main
def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import os

    import numpy as np

    import unidetector  # noqa: F401  (bootstrap before jittor)
    import jittor as jt
    from unidetector.ops import multiclass_nms, roi_align

    feat_np, rois_np, grad_np, proposals, scores = make_inputs(args.seed)
    feat, rois, grad_out = jt.array(feat_np), jt.array(rois_np), jt.array(grad_np)
    nms_cfg = dict(type="soft_nms", iou_threshold=0.5, method="gaussian")
    sync = lambda: jt.sync_all(True)  # noqa: E731

    def jt_roi_align():
        out = roi_align(feat, rois, 14, 1 / 16, 0)
        grad = jt.grad((out * grad_out).sum(), feat)
        jt.sync([out, grad])

    def jt_soft_nms():
        dets, labels = multiclass_nms(proposals, scores, 1e-4, nms_cfg, 300)
        jt.sync([dets, labels])

    result = {
        "benchmark": "ops",
        "device": "cuda" if jt.flags.use_cuda else "cpu",
        "threads": int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)),
        "repeat": args.repeat,
        "roi_align_fwd_bwd_s": best_time(jt_roi_align, args.repeat, sync),
        "roi_align_setting": "512 RoIs x 1024 ch, 14x14 from 50x68 (stride 16), sampling_ratio 0, aligned",
        "multiclass_soft_nms_s": best_time(jt_soft_nms, args.repeat, sync),
        "multiclass_soft_nms_setting": "100 proposals x 1230 classes, score_thr 1e-4, gaussian sigma 0.5, max 300",
    }
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        tfeat, trois, tgrad = (torch.from_numpy(a) for a in (feat_np, rois_np, grad_np))

        def torch_fwd_bwd():
            f = tfeat.clone().requires_grad_(True)
            (torch_roi_align(f, trois, 14, 1 / 16) * tgrad).sum().backward()

        ref_repeat = max(1, min(args.repeat, 2))
        result["torch_version"] = torch.__version__
        result["torch_threads"] = torch.get_num_threads()
        result["reference_roi_align_fwd_bwd_s"] = best_time(torch_fwd_bwd, ref_repeat)
        result["reference_multiclass_soft_nms_s"] = best_time(
            lambda: numpy_multiclass_soft_nms(proposals, scores, 1e-4, 300), ref_repeat)
        result["speedup_roi_align"] = result["reference_roi_align_fwd_bwd_s"] / result["roi_align_fwd_bwd_s"]
        result["speedup_multiclass_soft_nms"] = (result["reference_multiclass_soft_nms_s"]
                                                 / result["multiclass_soft_nms_s"])
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
