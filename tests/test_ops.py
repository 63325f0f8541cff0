"""Detection ops: edge cases, bad inputs, registry names, and the paths the goldens do not cover
(linear/naive soft-NMS, offset=1, the sampler's random draw)."""
import numpy as np
import pytest

import unidetector  # noqa: F401  (runtime bootstrap before jittor)
import jittor as jt

from unidetector.models.roi_heads.roi_extractors import SingleRoIExtractor
from unidetector.ops import (AnchorGenerator, MaxIoUAssigner, RandomSampler, batched_nms, bbox2result, bbox2roi,
                             bbox_overlaps, clip_bboxes, delta2bbox, rescale_bboxes, multiclass_nms, nms, roi2bbox, roi_align, soft_nms)
from unidetector.registry import MODELS, TASK_UTILS, build


def random_boxes(rng, n, size=100.0):
    xy = rng.uniform(0, size, (n, 2))
    return np.concatenate([xy, xy + rng.uniform(1, size / 2, (n, 2))], 1).astype(np.float32)


def reference_soft_nms(boxes, scores, iou_thr, sigma, min_score, method, offset=0):
    """Literal transcription of mmcv's softnms_cpu (float64 is fine for these checks)."""
    b = boxes.astype(np.float64).copy()
    s = scores.astype(np.float64).copy()
    inds = np.arange(len(s))
    areas = (b[:, 2] - b[:, 0] + offset) * (b[:, 3] - b[:, 1] + offset)
    n, i, out = len(s), 0, []
    while i < n:
        m = i + int(np.argmax(s[i:n]))
        for arr in (b, s, inds, areas):
            arr[[i, m]] = arr[[m, i]]
        out.append((inds[i], s[i]))
        p = i + 1
        while p < n:
            wh = np.maximum(0, np.minimum(b[i, 2:], b[p, 2:]) - np.maximum(b[i, :2], b[p, :2]) + offset)
            inter = wh[0] * wh[1]
            ovr = inter / (areas[i] + areas[p] - inter)
            w = {"naive": 0.0 if ovr >= iou_thr else 1.0, "linear": 1 - ovr if ovr >= iou_thr else 1.0,
                 "gaussian": np.exp(-ovr * ovr / sigma)}[method]
            s[p] *= w
            if s[p] < min_score:
                n -= 1
                for arr in (b, s, inds, areas):
                    arr[p] = arr[n]
                p -= 1
            p += 1
        i += 1
    return np.array([o[0] for o in out], np.int64), np.array([o[1] for o in out], np.float32)


# ------------------------------------------------------------------------------------------- NMS
@pytest.mark.parametrize("method", ["linear", "naive"])
def test_soft_nms_methods_match_mmcv_algorithm(method):
    rng = np.random.default_rng(0)
    boxes, scores = random_boxes(rng, 80), rng.uniform(0, 1, 80).astype(np.float32)
    dets, inds = soft_nms(boxes, scores, 0.3, 0.5, 1e-3, method)
    ref_inds, ref_scores = reference_soft_nms(boxes, scores, 0.3, 0.5, 1e-3, method)
    np.testing.assert_array_equal(inds.numpy(), ref_inds)
    np.testing.assert_allclose(dets.numpy()[:, 4], ref_scores, rtol=1e-5)
    np.testing.assert_array_equal(dets.numpy()[:, :4], boxes[ref_inds])


def test_nms_offset_one_and_score_threshold_and_max_num():
    boxes = np.array([[0, 0, 9, 9], [0, 0, 9, 8], [20, 20, 30, 30], [21, 21, 30, 30]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.1], np.float32)
    # offset=1: IoU(0,1) = 90/100 = 0.9 -> suppressed at 0.85, kept at 0.95
    assert nms(boxes, scores, 0.85, offset=1)[1].numpy().tolist() == [0, 2, 3]
    assert nms(boxes, scores, 0.95, offset=1)[1].numpy().tolist() == [0, 1, 2, 3]
    assert nms(boxes, scores, 0.5, score_threshold=0.5)[1].numpy().tolist() == [0, 2]
    assert nms(boxes, scores, 0.95, max_num=2)[1].numpy().tolist() == [0, 1]


def test_nms_empty_inputs():
    for dets, keep in (nms(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), 0.5),
                       soft_nms(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)),
                       batched_nms(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32),
                                   np.zeros((0,), np.int64), dict(type="nms", iou_threshold=0.5))):
        assert dets.shape == (0, 5) and keep.shape == (0,) and str(keep.dtype) == "int64"
    dets, labels, inds = multiclass_nms(np.zeros((0, 4), np.float32), np.zeros((0, 3), np.float32), 0.05,
                                        dict(type="nms", iou_threshold=0.5), 100, return_inds=True)
    assert dets.shape == (0, 5) and labels.shape == (0,) and inds.shape == (0,)
    # candidates exist but none passes the (strict) threshold
    dets, labels = multiclass_nms(np.ones((2, 4), np.float32) * [0, 0, 5, 5], np.full((2, 3), 0.05, np.float32),
                                  0.05, dict(type="nms", iou_threshold=0.5))
    assert dets.shape == (0, 5) and labels.shape == (0,)


def test_batched_soft_nms_any_class_ids():
    rng = np.random.default_rng(5)
    boxes, scores = random_boxes(rng, 40), rng.uniform(0, 1, 40).astype(np.float32)
    ids = rng.integers(0, 3, 40)
    cfg = dict(type="soft_nms", iou_threshold=0.5, method="gaussian")
    dets, keep = batched_nms(boxes, scores, ids, cfg)
    for shifted in (ids - 7, ids * 5000):  # negative and sparse ids give the same kept set
        dets2, keep2 = batched_nms(boxes, scores, shifted, cfg, class_agnostic=False)
        assert sorted(keep2.numpy().tolist()) == sorted(keep.numpy().tolist())
    for c in range(3):  # per class it equals the single-class algorithm
        idx = np.flatnonzero(ids == c)
        ref_inds, ref_scores = reference_soft_nms(boxes[idx], scores[idx], 0.5, 0.5, 1e-3, "gaussian")
        mine = keep.numpy()[np.isin(keep.numpy(), idx)]
        assert sorted(mine.tolist()) == sorted(idx[ref_inds].tolist())


def test_nan_scores_are_dropped():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60]], np.float32)
    scores = np.array([np.nan, 0.5, 0.4], np.float32)
    dets, keep = nms(boxes, scores, 0.5)
    assert keep.numpy().tolist() == [1, 2]  # the NaN box neither survives nor suppresses box 1
    assert soft_nms(boxes, scores, method="gaussian")[1].numpy().tolist() == [1, 2]
    keep = batched_nms(boxes, scores, np.array([0, 0, 1]), dict(type="nms", iou_threshold=0.5))[1]
    assert keep.numpy().tolist() == [1, 2]
    multi = np.array([[np.nan, 0.9, 0], [0.3, np.nan, 0]], np.float32)
    dets, labels, inds = multiclass_nms(boxes[:2], multi, 0.0, dict(type="nms", iou_threshold=0.5),
                                        return_inds=True)
    assert inds.numpy().tolist() == [1, 2] and labels.numpy().tolist() == [1, 0]


def test_zero_area_boxes_do_not_produce_nan():
    boxes = np.array([[5, 5, 5, 5], [5, 5, 5, 5], [0, 0, 10, 10]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    dets, keep = soft_nms(boxes, scores, method="gaussian")
    assert keep.numpy().tolist() == [0, 1, 2] and np.isfinite(dets.numpy()).all()
    assert nms(boxes, scores, 0.5)[1].numpy().tolist() == [0, 1, 2]


def test_nms_shape_errors():
    with pytest.raises(ValueError, match="scores must have shape"):
        nms(np.zeros((3, 4), np.float32), np.zeros((2,), np.float32), 0.5)
    with pytest.raises(ValueError, match="boxes must have shape"):
        nms(np.zeros((3, 5), np.float32), np.zeros((3,), np.float32), 0.5)
    with pytest.raises(ValueError, match="idxs must have shape"):
        batched_nms(np.zeros((3, 4), np.float32), np.zeros((3,), np.float32), np.zeros((2,)),
                    dict(type="nms", iou_threshold=0.5))
    with pytest.raises(ValueError, match="multi_bboxes must be"):
        multiclass_nms(np.zeros((3, 8), np.float32), np.zeros((3, 4), np.float32), 0.1,
                       dict(type="nms", iou_threshold=0.5))
    with pytest.raises(ValueError, match="unsupported nms_cfg keys"):
        batched_nms(np.zeros((1, 4), np.float32), np.ones((1,), np.float32), np.zeros((1,)),
                    dict(type="nms", iou_threshold=0.5, sigma=0.5))


def test_multiclass_nms_class_specific_boxes_and_score_factors():
    rng = np.random.default_rng(1)
    boxes = np.concatenate([random_boxes(rng, 30), random_boxes(rng, 30)], 1)  # (30, 8): 2 classes
    scores = rng.uniform(0, 1, (30, 3)).astype(np.float32)
    factors = rng.uniform(0.5, 1, 30).astype(np.float32)
    dets, labels, inds = multiclass_nms(boxes, scores, 0.2, dict(type="nms", iou_threshold=0.5), 20,
                                        score_factors=factors, return_inds=True)
    inds, labels = inds.numpy(), labels.numpy()
    np.testing.assert_array_equal(labels, inds % 2)
    np.testing.assert_array_equal(dets.numpy()[:, :4], boxes.reshape(-1, 4)[inds])
    np.testing.assert_allclose(dets.numpy()[:, 4], scores[:, :2].reshape(-1)[inds] * factors[inds // 2], rtol=1e-6)
    assert (scores[:, :2].reshape(-1)[inds] > 0.2).all() and len(inds) <= 20


# ------------------------------------------------------------------------------------- RoIAlign
def test_roi_align_empty_rois_and_zero_area():
    feat = jt.array(np.random.default_rng(2).standard_normal((2, 3, 8, 8)).astype(np.float32))
    out = roi_align(feat, np.zeros((0, 5), np.float32), 7, 0.5)
    assert out.shape == (0, 3, 7, 7)
    assert np.abs(jt.grad(out.sum(), feat).numpy()).max() == 0
    rois = np.array([[1, 4, 4, 4, 10], [0, 3, 3, 3, 3]], np.float32)  # zero width; zero area
    out = roi_align(feat, rois, 7, 0.5)
    assert np.abs(out.numpy()).max() == 0  # no samples with sampling_ratio=0
    grad = jt.grad(out.sum(), feat).numpy()
    assert np.isfinite(grad).all() and np.abs(grad).max() == 0


def test_roi_align_errors():
    feat = jt.zeros((2, 3, 8, 8))
    with pytest.raises(ValueError, match=r"rois\[1\] has batch index 2\.0.*batch size 2"):
        roi_align(feat, np.array([[0, 1, 1, 4, 4], [2, 1, 1, 4, 4]], np.float32), 7, 0.5)
    with pytest.raises(ValueError, match="batch index -1"):
        roi_align(feat, np.array([[-1, 1, 1, 4, 4]], np.float32), 7, 0.5)
    with pytest.raises(ValueError, match=r"shape \(K, 5\)"):
        roi_align(feat, np.zeros((3, 4), np.float32), 7, 0.5)
    with pytest.raises(NotImplementedError, match="pool_mode"):
        roi_align(feat, np.zeros((1, 5), np.float32), 7, 0.5, pool_mode="max")


def test_single_roi_extractor_builds_and_matches_roi_align_on_one_level():
    rng = np.random.default_rng(3)
    extractor = build(dict(type="SingleRoIExtractor", roi_layer=dict(type="RoIAlign", output_size=7,
                                                                     sampling_ratio=0),
                           out_channels=4, featmap_strides=[16]), MODELS)
    feat = jt.array(rng.standard_normal((1, 4, 10, 12)).astype(np.float32))
    rois = np.concatenate([np.zeros((5, 1)), random_boxes(rng, 5, 150)], 1).astype(np.float32)
    np.testing.assert_array_equal(extractor([feat], rois).numpy(), roi_align(feat, rois, 7, 1 / 16).numpy())
    with pytest.raises(ValueError, match="not supported"):
        SingleRoIExtractor(dict(type="RoIPool", output_size=7), 4, [16])


# --------------------------------------------------------------------------- boxes and coders
def test_box_utils():
    a = np.array([[0, 0, 10, 10], [5, 5, 15, 15]], np.float32)
    b = np.array([[0, 0, 10, 10], [0, 0, 0, 0]], np.float32)
    np.testing.assert_allclose(bbox_overlaps(a, b).numpy(), [[1, 0], [25 / 175, 0]], rtol=1e-6)
    np.testing.assert_allclose(bbox_overlaps(a, b, is_aligned=True).numpy(), [1, 0])
    np.testing.assert_allclose(bbox_overlaps(a, b, mode="iof").numpy(), [[1, 0], [0.25, 0]])
    assert bbox_overlaps(np.zeros((0, 4)), a).shape == (0, 2)
    with pytest.raises(ValueError, match="is_aligned"):
        bbox_overlaps(a, b[:1], is_aligned=True)
    rois = bbox2roi([a, np.zeros((0, 4), np.float32), b])
    assert rois.numpy()[:, 0].tolist() == [0, 0, 2, 2]
    assert [r.shape[0] for r in roi2bbox(rois)] == [2, 0, 2]
    res = bbox2result(np.array([[0, 0, 1, 1, .9], [0, 0, 2, 2, .8], [1, 1, 3, 3, .7]], np.float32),
                      np.array([2, 0, 2]), 3)
    assert [r.shape for r in res] == [(1, 5), (0, 5), (2, 5)] and res[2][:, 4].tolist() == pytest.approx([.9, .7])
    assert [r.shape for r in bbox2result(np.zeros((0, 5), np.float32), np.zeros((0,)), 2)] == [(0, 5), (0, 5)]
    np.testing.assert_allclose(rescale_bboxes(np.array([[2, 4, 6, 8, 0.5]], np.float32), [2, 4, 2, 4]).numpy(),
                               [[1, 1, 3, 2, 0.5]])
    np.testing.assert_allclose(clip_bboxes(np.array([[-1, -2, 30, 40]], np.float32), (20, 25)).numpy(),
                               [[0, 0, 25, 20]])


def test_delta2bbox_shape_error():
    with pytest.raises(ValueError, match="do not match"):
        delta2bbox(np.zeros((3, 4), np.float32), np.zeros((3, 6), np.float32))


# --------------------------------------------------------------------- assigner and sampler
def test_registry_names():
    for cfg in (dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[0.1, 0.1, 0.2, 0.2]),
                dict(type="TBLRBBoxCoder", normalizer=1.0),
                dict(type="AnchorGenerator", scales=[8], ratios=[1.0], strides=[4, 8, 16, 32, 64]),
                dict(type="MaxIoUAssigner", pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3,
                     match_low_quality=True, ignore_iof_thr=-1),
                dict(type="RandomSampler", num=256, pos_fraction=0.5, neg_pos_ub=-1, add_gt_as_proposals=False)):
        assert type(build(cfg, TASK_UTILS)).__name__ == cfg["type"]


def test_assigner_empty_inputs_and_ignore():
    assigner = MaxIoUAssigner(0.5, 0.5, 0.5)
    gts = np.array([[0, 0, 10, 10]], np.float32)
    res = assigner.assign(np.zeros((0, 4), np.float32), gts, gt_labels=np.array([3]))
    assert res.gt_inds.shape == (0,) and res.labels.shape == (0,)
    boxes = np.array([[0, 0, 10, 10], [50, 50, 60, 60], [0, 0, 9, 10]], np.float32)
    res = assigner.assign(boxes, np.zeros((0, 4), np.float32))
    assert res.gt_inds.numpy().tolist() == [0, 0, 0] and res.labels is None
    # a box covered by an ignore region is ignored (-1) even if it is a negative
    res = MaxIoUAssigner(0.5, 0.5, 0.5, ignore_iof_thr=0.5).assign(
        boxes, gts, gt_bboxes_ignore=np.array([[45, 45, 70, 70]], np.float32), gt_labels=np.array([3]))
    assert res.gt_inds.numpy().tolist() == [1, -1, 1] and res.labels.numpy().tolist() == [3, -1, 3]
    with pytest.raises(ValueError, match="GT labels"):
        assigner.assign(boxes, gts, gt_labels=np.array([1, 2]))


def test_assigner_low_quality_later_gt_wins_ties():
    boxes = np.array([[0, 0, 10, 10], [100, 100, 110, 110]], np.float32)
    gts = np.array([[0, 0, 10, 20], [0, 0, 10, 20]], np.float32)  # duplicates: IoU 0.5 with box 0
    res = MaxIoUAssigner(0.7, 0.3, 0.3).assign(boxes, gts, gt_labels=np.array([4, 5]))
    assert res.gt_inds.numpy().tolist() == [2, 0] and res.labels.numpy().tolist() == [5, -1]
    res = MaxIoUAssigner(0.7, 0.3, 0.3, gt_max_assign_all=False).assign(boxes, gts, gt_labels=np.array([4, 5]))
    assert res.gt_inds.numpy().tolist() == [2, 0]


def test_random_sampler_takes_all_in_order_when_num_is_large_and_is_seedable():
    rng = np.random.default_rng(4)
    gts = random_boxes(rng, 3)
    boxes = np.concatenate([gts + rng.uniform(-2, 2, gts.shape).astype(np.float32), random_boxes(rng, 40)])
    labels = np.array([0, 1, 2])
    assign = MaxIoUAssigner(0.5, 0.5, 0.5).assign(boxes, gts, gt_labels=labels)
    gt_inds = assign.gt_inds.numpy()
    res = RandomSampler(100000, 0.25, add_gt_as_proposals=False).sample(assign, boxes, gts, labels)
    np.testing.assert_array_equal(res.pos_inds.numpy(), np.flatnonzero(gt_inds > 0))
    np.testing.assert_array_equal(res.neg_inds.numpy(), np.flatnonzero(gt_inds == 0))
    np.testing.assert_array_equal(res.pos_gt_bboxes.numpy(), gts[gt_inds[gt_inds > 0] - 1])

    def draw(seed):
        a = MaxIoUAssigner(0.5, 0.5, 0.5).assign(boxes, gts, gt_labels=labels)
        return RandomSampler(8, 0.25, neg_pos_ub=1, rng=seed).sample(a, boxes, gts, labels)

    a, b = draw(7), draw(7)
    np.testing.assert_array_equal(a.neg_inds.numpy(), b.neg_inds.numpy())
    # GTs are prepended as proposals: indices 0..2, flagged in pos_is_gt
    np.testing.assert_array_equal(a.pos_is_gt.numpy(), (a.pos_inds.numpy() < 3).astype(np.uint8))
    assert a.neg_inds.numpy().min() >= 3
    assert len(a.pos_inds) == 2 and len(a.neg_inds) == 2  # 8 * 0.25 positives; neg_pos_ub=1


def test_anchor_generator_errors():
    gen = AnchorGenerator(strides=[16], ratios=[0.5, 1.0, 2.0], scales=[2, 4])
    assert gen.num_base_anchors == [6]
    with pytest.raises(ValueError, match="feature map sizes"):
        gen.grid_anchors([(4, 4), (2, 2)])
    with pytest.raises(ValueError, match="either scales"):
        AnchorGenerator(strides=[16], ratios=[1.0])
