"""MMCV (>= 1.3.8) / MMDetection 2.x APIs that configs and users call: ``batched_nms``'s ``nms_cfg``
keys (``score_threshold``, ``iou_thr``, ``split_thr``, ``max_num``, ``offset``, ``class_agnostic``)
and ``AnchorGenerator.num_base_priors`` / ``grid_priors``. Expected values come from a direct numpy
transcription of mmcv's algorithm, not from our own ops.
"""
import warnings

import numpy as np
import pytest

import unidetector  # noqa: F401  (runtime bootstrap before jittor)
from unidetector.ops import AnchorGenerator, batched_nms, multiclass_nms
from unidetector.registry import TASK_UTILS, build


def random_boxes(rng, n, size=100.0):
    xy = rng.uniform(0, size, (n, 2))
    return np.concatenate([xy, xy + rng.uniform(1, size / 2, (n, 2))], 1).astype(np.float32)


def numpy_batched_nms(boxes, scores, idxs, iou_threshold, score_threshold=0.0, max_num=-1, offset=0,
                      class_agnostic=False):
    """mmcv ``batched_nms`` with ``type='nms'`` in float32 numpy: class offset ``idx * (max + 1)`` over
    ALL boxes, then ``nms``: drop ``score <= score_threshold`` (if > 0), greedy NMS by descending
    score (suppress ``IoU > thr``), keep the first ``max_num``. Returns ``(dets (k, 5), keep (k,))``."""
    boxes = boxes.astype(np.float32)
    if class_agnostic:
        shifted = boxes
    else:
        shifted = boxes + (idxs.astype(np.float32) * (boxes.max() + np.float32(1)))[:, None]
    cand = np.flatnonzero(scores > score_threshold) if score_threshold > 0 else np.arange(len(scores))
    order = cand[np.argsort(-scores[cand], kind="stable")]
    x1, y1, x2, y2 = shifted.T
    area = (x2 - x1 + offset) * (y2 - y1 + offset)
    keep, alive = [], np.ones(len(order), bool)
    for a, i in enumerate(order):
        if not alive[a]:
            continue
        keep.append(i)
        j = order[a + 1:]
        w = np.maximum(np.float32(0), np.minimum(x2[i], x2[j]) - np.maximum(x1[i], x1[j]) + offset)
        h = np.maximum(np.float32(0), np.minimum(y2[i], y2[j]) - np.maximum(y1[i], y1[j]) + offset)
        inter = w * h
        alive[a + 1:] &= ~(inter / (area[i] + area[j] - inter) > iou_threshold)
    keep = np.asarray(keep, np.int64)
    if max_num > 0:
        keep = keep[:max_num]
    return np.concatenate([boxes[keep], scores[keep, None]], 1), keep


@pytest.fixture
def world():
    rng = np.random.default_rng(22)
    boxes = random_boxes(rng, 120)
    scores = rng.uniform(0, 1, 120).astype(np.float32)
    idxs = rng.integers(0, 4, 120)
    return boxes, scores, idxs


@pytest.mark.parametrize("score_threshold", [0.0, 0.3, 0.75])
@pytest.mark.parametrize("class_agnostic", [False, True])
def test_batched_nms_score_threshold_matches_numpy(world, score_threshold, class_agnostic):
    boxes, scores, idxs = world
    cfg = dict(type="nms", iou_threshold=0.4, score_threshold=score_threshold)
    dets, keep = batched_nms(boxes, scores, idxs, cfg, class_agnostic=class_agnostic)
    ref_dets, ref_keep = numpy_batched_nms(boxes, scores, idxs, 0.4, score_threshold,
                                           class_agnostic=class_agnostic)
    np.testing.assert_array_equal(keep.numpy(), ref_keep)
    np.testing.assert_array_equal(dets.numpy(), ref_dets)
    if score_threshold > 0:
        assert (scores[keep.numpy()] > score_threshold).all()
        # the filter removes boxes that plain NMS keeps (else the test proves nothing)
        plain = batched_nms(boxes, scores, idxs, dict(type="nms", iou_threshold=0.4), class_agnostic)[1].numpy()
        assert (scores[plain] <= score_threshold).any()


def test_batched_nms_score_threshold_is_strict_and_zero_disables():
    boxes = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]], np.float32)
    scores = np.array([0.9, 0.5, 0.0], np.float32)
    idxs = np.zeros(3, np.int64)
    keep = batched_nms(boxes, scores, idxs, dict(type="nms", iou_threshold=0.5, score_threshold=0.5))[1]
    assert keep.numpy().tolist() == [0]  # 0.5 is not > 0.5
    keep = batched_nms(boxes, scores, idxs, dict(type="nms", iou_threshold=0.5, score_threshold=0))[1]
    assert keep.numpy().tolist() == [0, 1, 2]  # 0 disables the filter (a 0.0 score stays)
    dets, keep = batched_nms(boxes, scores, idxs, dict(type="nms", iou_threshold=0.5, score_threshold=0.95))
    assert dets.shape == (0, 5) and keep.shape == (0,)


def test_batched_nms_max_num_split_thr_offset_and_class_agnostic_keys(world):
    boxes, scores, idxs = world
    ref_dets, ref_keep = numpy_batched_nms(boxes, scores, idxs, 0.5, 0.2, max_num=7)
    for extra in ({}, {"split_thr": 1}, {"split_thr": 10 ** 9}):  # split_thr picks mmcv's path only
        dets, keep = batched_nms(boxes, scores, idxs,
                                 dict(type="nms", iou_threshold=0.5, score_threshold=0.2, max_num=7, **extra))
        np.testing.assert_array_equal(keep.numpy(), ref_keep)
        np.testing.assert_array_equal(dets.numpy(), ref_dets)
    ref_keep1 = numpy_batched_nms(boxes, scores, idxs, 0.5, offset=1)[1]
    keep1 = batched_nms(boxes, scores, idxs, dict(type="nms", iou_threshold=0.5, offset=1))[1]
    np.testing.assert_array_equal(keep1.numpy(), ref_keep1)
    ref_agn = numpy_batched_nms(boxes, scores, idxs, 0.5, class_agnostic=True)[1]
    agn = batched_nms(boxes, scores, idxs, dict(type="nms", iou_threshold=0.5, class_agnostic=True))[1]
    np.testing.assert_array_equal(agn.numpy(), ref_agn)


def test_batched_nms_iou_thr_alias(world):
    boxes, scores, idxs = world
    ref_keep = numpy_batched_nms(boxes, scores, idxs, 0.45)[1]
    with pytest.warns(UserWarning, match="iou_thr"):
        keep = batched_nms(boxes, scores, idxs, dict(type="nms", iou_thr=0.45))[1]
    np.testing.assert_array_equal(keep.numpy(), ref_keep)
    with pytest.raises(ValueError, match="both iou_thr and iou_threshold"):
        batched_nms(boxes, scores, idxs, dict(type="nms", iou_thr=0.45, iou_threshold=0.5))


@pytest.mark.parametrize("cfg, message", [
    (dict(type="soft_nms", iou_threshold=0.5, score_threshold=0.1), "score_threshold is an option of type='nms'"),
    (dict(type="nms", iou_threshold=0.5, score_thr=0.1), r"unsupported nms_cfg keys \['score_thr'\]"),
    (dict(type="nms", iou_threshold=0.5, min_score=0.1), r"unsupported nms_cfg keys \['min_score'\]"),
    (dict(type="nms"), "needs iou_threshold"),
    (dict(type="nms_rotated", iou_threshold=0.5), "nms type must be"),
    (dict(type="nms", iou_threshold=0.5, offset=2), "offset must be 0 or 1"),
    (dict(type="nms", iou_threshold="0.5"), "iou_threshold must be a number"),
    (dict(type="nms", iou_threshold=0.5, score_threshold=None), "score_threshold must be a number"),
    (dict(type="nms", iou_threshold=0.5, split_thr="big"), "split_thr must be a number"),
    (dict(type="soft_nms", iou_threshold=0.5, method="cubic"), "method must be"),
])
def test_batched_nms_rejects_bad_cfg_clearly(world, cfg, message):
    boxes, scores, idxs = world
    with pytest.raises(ValueError, match=message):
        batched_nms(boxes, scores, idxs, cfg)


def test_multiclass_nms_passes_score_threshold_through():
    rng = np.random.default_rng(3)
    boxes = random_boxes(rng, 40)
    scores = rng.uniform(0, 1, (40, 4)).astype(np.float32)  # 3 classes + background
    cfg = dict(type="nms", iou_threshold=0.5, score_threshold=0.6)
    dets, labels, inds = multiclass_nms(boxes, scores, 0.05, cfg, return_inds=True)
    flat = scores[:, :-1].reshape(-1)
    cand = np.flatnonzero(flat > 0.05)
    ref_dets, ref_keep = numpy_batched_nms(boxes[cand // 3], flat[cand], cand % 3, 0.5, 0.6)
    np.testing.assert_array_equal(inds.numpy(), cand[ref_keep])
    np.testing.assert_array_equal(labels.numpy(), cand[ref_keep] % 3)
    np.testing.assert_array_equal(dets.numpy(), ref_dets)


@pytest.mark.parametrize("kwargs", [
    dict(strides=[4, 8, 16, 32, 64], ratios=[1.0], scales=[8]),
    dict(strides=[16], ratios=[0.5, 1.0, 2.0], scales=[2, 4, 8, 16, 32]),
    dict(strides=[8, 16], ratios=[0.5, 2.0], octave_base_scale=4, scales_per_octave=3),
])
def test_anchor_generator_num_base_priors(kwargs):
    gen = AnchorGenerator(**kwargs)
    n_scales = len(kwargs["scales"]) if "scales" in kwargs else kwargs["scales_per_octave"]
    expected = [len(kwargs["ratios"]) * n_scales] * len(kwargs["strides"])
    assert gen.num_base_priors == expected == gen.num_base_anchors
    built = build(dict(type="AnchorGenerator", **kwargs), TASK_UTILS)
    assert built.num_base_priors == expected
    sizes = [(5, 7)] * len(kwargs["strides"])
    priors = gen.grid_priors(sizes, dtype="float32", device="cuda")  # mmdet's signature; dtype/device ignored
    for lvl, (p, a) in enumerate(zip(priors, gen.grid_anchors(sizes))):
        assert p.shape == (5 * 7 * expected[lvl], 4)
        np.testing.assert_array_equal(p.numpy(), a.numpy())
        # numpy: cell (y, x) -> base anchors shifted by (x * stride, y * stride), row (y * W + x) * A + a
        stride = kwargs["strides"][lvl]
        ys, xs = np.meshgrid(np.arange(5), np.arange(7), indexing="ij")
        shifts = np.stack([xs, ys, xs, ys], -1).reshape(-1, 1, 4).astype(np.float32) * stride
        ref = (gen.base_anchors[lvl][None] + shifts).reshape(-1, 4)
        np.testing.assert_array_equal(p.numpy(), ref)
        np.testing.assert_array_equal(gen.single_level_grid_priors((5, 7), lvl, device="cpu").numpy(), ref)
    flags = gen.valid_flags(sizes, (5 * min(kwargs["strides"]), 7 * min(kwargs["strides"])), device="cuda")
    assert [f.shape[0] for f in flags] == [5 * 7 * n for n in expected]
