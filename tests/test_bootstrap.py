"""Paired bootstrap of LVIS-style AP over test images (``evaluation/bootstrap.py``) against ``lvis_bbox_eval``:
the full test set, a resample with duplicated images, the percentile interval of a direct loop, and the
rare-class true-positive count. No Jittor."""
import copy
import time

import numpy as np
import pytest

from test_eval import make_dets, make_gt
from unidetector.evaluation import lvis_bbox_eval
from unidetector.evaluation.bootstrap import (METRICS, GroundTruth, bootstrap_lvis, resample_counts,
                                              resample_indices, resampled_metrics, true_positives)


def lvis_case(seed, n_images=14, per_image=(2, 20), crowd=False, distinct_scores=False, score_step=None):
    """A small LVIS-format test set (r/c/f categories, negative and not-exhaustive ids) and detections
    (``score_step``: scores rounded to it, many ties between true and false positives)."""
    gt = make_gt(seed, n_images=n_images, lvis=True)
    if crowd:
        rng = np.random.default_rng(seed)
        for a in gt["annotations"]:
            a["iscrowd"] = int(rng.random() < 0.1)
    dets = make_dets(gt, seed=seed + 10, per_image=per_image)
    if distinct_scores:  # no ties between images: duplicated images under new ids then rank the same way
        for d, s in zip(dets, np.random.default_rng(seed + 20).permutation(len(dets))):
            d["score"] = float((s + 1) / (len(dets) + 1))
    for d in dets if score_step else ():
        d["score"] = float(np.round(d["score"] / score_step) * score_step)
    return gt, dets


def duplicated(gt, dets, idx):
    """The test set made of images ``idx`` (indices into the sorted image ids; repeats allowed), each copy under
    a new id, with its objects and detections: the direct computation of a bootstrap resample."""
    ids = sorted(im["id"] for im in gt["images"])
    images = {im["id"]: im for im in gt["images"]}
    anns, new_gt_images, new_dets = [], [], []
    for j, i in enumerate(idx):
        old, new = ids[i], j + 1
        new_gt_images.append(dict(copy.deepcopy(images[old]), id=new))
        anns += [dict(a, id=len(anns) + k + 1, image_id=new)
                 for k, a in enumerate(a for a in gt["annotations"] if a["image_id"] == old)]
        new_dets += [dict(d, image_id=new) for d in dets if d["image_id"] == old]
    return dict(gt, images=new_gt_images, annotations=anns), new_dets


@pytest.mark.parametrize("seed,per_image,crowd,step", [(0, (20, 330), False, None), (1, (2, 20), False, None),
                                                      (2, (2, 20), True, None), (8, (2, 20), False, 0.1)])
def test_full_test_set_equals_lvis_eval(seed, per_image, crowd, step):
    """Every image once: the numbers of lvis_bbox_eval (faster-coco-eval), incl. score ties, the 300 cap and crowd."""
    gt, dets = lvis_case(seed, per_image=per_image, crowd=crowd, score_step=step)
    ref = lvis_bbox_eval(gt, dets, max_dets=300)
    g = GroundTruth.from_lvis(gt)
    assert set(g.frequency) == {"r", "c", "f"} and any(im["not_exhaustive_category_ids"] for im in gt["images"])
    ours = resampled_metrics(g, dets, np.ones((1, len(g.image_ids))))
    assert ref["AP"] > 0.005
    for k in METRICS:
        assert ours[k][0] == pytest.approx(ref[k], abs=1e-12), k
    boot = bootstrap_lvis(gt, {"x": dets}, [], n_boot=5, metrics=METRICS)
    assert boot["runs"]["x"] == pytest.approx({k: ref[k] for k in METRICS}, abs=1e-12)


@pytest.mark.parametrize("seed", [3, 4])
def test_resample_with_duplicates_equals_duplicated_test_set(seed):
    gt, dets = lvis_case(seed, n_images=12, distinct_scores=True)
    g = GroundTruth.from_lvis(gt)
    draws = [np.array([0, 0, 0, 3, 5, 5, 7, 8, 8, 8, 11, 11])] + list(resample_indices(12, 3, seed))
    counts = np.stack([np.bincount(d, minlength=12) for d in draws])
    ours = resampled_metrics(g, dets, counts)
    for r, idx in enumerate(draws):
        ref = lvis_bbox_eval(*duplicated(gt, dets, idx))
        for k in METRICS:
            if ref[k] < 0:  # LVIS's "no category of this group has objects"
                assert np.isnan(ours[k][r]), (r, k)
            else:
                assert ours[k][r] == pytest.approx(ref[k], abs=1e-12), (r, k)
    assert not np.allclose(ours["AP"], ours["AP"][0])  # the resamples differ


def test_interval_equals_direct_loop_over_resamples():
    gt, dets_a = lvis_case(5, n_images=10, distinct_scores=True)
    dets_b = copy.deepcopy(dets_a)
    rng = np.random.default_rng(0)
    for d in dets_b:  # another run: the same detections, rescored
        d["score"] = float(d["score"] * rng.uniform(0.5, 1.5))
    n_boot, metrics = 20, ("AP", "AP50", "APr", "APf")
    boot = bootstrap_lvis(gt, {"a": dets_a, "b": dets_b}, [("a", "b")], n_boot=n_boot, seed=7, metrics=metrics,
                          level=0.9)
    assert boot["n_boot"] == n_boot and boot["n_images"] == 10 and boot["level"] == 0.9
    direct = {"a": [], "b": []}
    for idx in resample_indices(10, n_boot, seed=7):
        for name, dets in (("a", dets_a), ("b", dets_b)):
            direct[name].append(lvis_bbox_eval(*duplicated(gt, dets, idx)))
    for k in metrics:
        a, b = (np.array([r[k] for r in direct[n]]) for n in "ab")
        valid = (a >= 0) & (b >= 0)
        lo, hi = np.percentile((b - a)[valid], [5, 95])
        diff = boot["differences"]["b - a"][k]
        assert diff["low"] == pytest.approx(lo, abs=1e-12) and diff["high"] == pytest.approx(hi, abs=1e-12), k
        assert diff["value"] == pytest.approx(lvis_bbox_eval(gt, dets_b)[k] - lvis_bbox_eval(gt, dets_a)[k],
                                              abs=1e-12)
        sd, value_a = np.std(a[a >= 0], ddof=1), lvis_bbox_eval(gt, dets_a)[k]   # one run: value ± z·sd
        z = 1.6448536269514722  # the 95th percentile of the standard normal (a 90 % interval)
        assert boot["intervals"]["a"][k] == pytest.approx([value_a - z * sd, value_a + z * sd], abs=1e-9)
    assert boot["differences"]["b - a"]["AP"]["low"] < boot["differences"]["b - a"]["AP"]["high"]


def test_identical_runs_differ_by_zero_with_zero_width():
    gt, dets = lvis_case(6)
    boot = bootstrap_lvis(gt, {"raw": dets, "same": copy.deepcopy(dets)}, [("raw", "same")], n_boot=50)
    for k, d in boot["differences"]["same - raw"].items():
        assert d == {"value": 0.0, "low": 0.0, "high": 0.0}, k
    lo, hi = boot["intervals"]["raw"]["AP"]
    assert lo < boot["runs"]["raw"]["AP"] < hi
    with pytest.raises(KeyError, match="not given"):
        bootstrap_lvis(gt, {"raw": dets}, [("raw", "calibrated")], n_boot=2)


def test_resample_counts_draw_n_images_each():
    counts = resample_counts(9, 100, seed=3)
    assert counts.shape == (100, 9) and (counts.sum(axis=1) == 9).all() and (counts == 0).any()
    assert (counts == np.stack([np.bincount(r, minlength=9) for r in resample_indices(9, 100, seed=3)])).all()


def test_true_positives_before_and_after_the_cap():
    """Two rare objects found by low-scoring detections that the 300 highest-scoring frequent-class
    detections push out of the per-image cap."""
    cats = [dict(id=1, name="rare thing", frequency="r"), dict(id=2, name="common thing", frequency="f")]
    gt = dict(categories=cats, images=[dict(id=5, width=400, height=400, neg_category_ids=[],
                                            not_exhaustive_category_ids=[])],
              annotations=[dict(id=1, image_id=5, category_id=1, bbox=[10, 10, 50, 50], area=2500),
                           dict(id=2, image_id=5, category_id=1, bbox=[200, 200, 40, 60], area=2400),
                           dict(id=3, image_id=5, category_id=2, bbox=[100, 300, 80, 80], area=6400)])
    dets = [dict(image_id=5, category_id=2, bbox=[100 + i % 7, 300, 80, 80], score=0.9 - i * 1e-4)
            for i in range(300)]
    dets += [dict(image_id=5, category_id=1, bbox=[10, 10, 50, 50], score=0.2),
             dict(image_id=5, category_id=1, bbox=[12, 11, 50, 50], score=0.15),  # a duplicate: no second match
             dict(image_id=5, category_id=1, bbox=[203, 200, 40, 60], score=0.1),
             dict(image_id=5, category_id=1, bbox=[300, 10, 40, 40], score=0.05)]  # background
    assert true_positives(gt, dets, [1], max_dets=300) == 0
    assert true_positives(gt, dets, [1], max_dets=None) == 2
    assert true_positives(gt, dets, [2], max_dets=300) == 1
    # one of each class at IoU >= 0.9: the detection of the second rare object has IoU 0.86
    assert true_positives(gt, dets, [1, 2], iou=0.9, max_dets=None) == 2
    # without the cap the other classes' detections do not matter (the experiment converts only the rare ones);
    # with it they do
    rare_only = [d for d in dets if d["category_id"] == 1]
    assert true_positives(gt, rare_only, [1], max_dets=None) == true_positives(gt, dets, [1], max_dets=None) == 2
    assert true_positives(gt, rare_only, [1], max_dets=300) == 2 != true_positives(gt, dets, [1], max_dets=300)


def test_uncapped_true_positives_do_not_depend_on_other_categories():
    """The property the experiment's uncapped rare-class count relies on, on random LVIS-style cases."""
    for seed in range(3):
        gt, dets = lvis_case(seed, per_image=(20, 330))
        for group in ("r", "c"):
            ids = [c["id"] for c in gt["categories"] if c["frequency"] == group]
            kept = [d for d in dets if d["category_id"] in ids]
            count = true_positives(gt, dets, ids, max_dets=None)
            assert ids and count > 0 and true_positives(gt, kept, ids, max_dets=None) == count


def big_case(n_images=60, n_cats=300, per_image=300, n_runs=3, seed=0):
    """A test set of the size of the experiment's: 300 categories, ~10 objects and 300 detections per image."""
    rng = np.random.default_rng(seed)
    cats = [dict(id=c + 1, name=f"class {c}", frequency="rcf"[min(2, c % 5)]) for c in range(n_cats)]
    images, anns = [], []
    for i in range(n_images):
        present = rng.choice(n_cats, size=int(rng.integers(3, 8)), replace=False) + 1
        absent = np.setdiff1d(np.arange(1, n_cats + 1), present)
        images.append(dict(id=i + 1, width=448, height=448, neg_category_ids=rng.choice(absent, 20).tolist(),
                           not_exhaustive_category_ids=present[:1].tolist()))
        for c in rng.choice(present, size=int(rng.integers(5, 15))):
            x, y, w, h = *rng.uniform(0, 380, 2), *rng.uniform(20, 60, 2)
            anns.append(dict(id=len(anns) + 1, image_id=i + 1, category_id=int(c), bbox=[x, y, w, h], area=w * h))
    gt = dict(images=images, annotations=anns, categories=cats)
    runs = {}
    for r in range(n_runs):
        dets = []
        for a in anns:
            for _ in range(3):
                j = rng.normal(0, 0.1, 4) * a["bbox"][2]
                dets.append(dict(image_id=a["image_id"], category_id=a["category_id"] if rng.random() < 0.7 else
                                 int(rng.integers(1, n_cats + 1)), bbox=list(np.add(a["bbox"], j)),
                                 score=float(rng.random())))
        for im in images:
            allowed = np.r_[im["neg_category_ids"], [a["category_id"] for a in anns if a["image_id"] == im["id"]]]
            for _ in range(per_image - sum(d["image_id"] == im["id"] for d in dets)):
                c = int(rng.choice(allowed)) if rng.random() < 0.5 else int(rng.integers(1, n_cats + 1))
                dets.append(dict(image_id=im["id"], category_id=c, bbox=[*rng.uniform(0, 380, 2),
                                                                         *rng.uniform(10, 80, 2)],
                                 score=float(rng.random() * 0.8)))
        runs[f"run{r}"] = dets
    return gt, runs


def test_timing_experiment_sized_bootstrap(capsys):
    gt, runs = big_case()
    t = time.perf_counter()
    boot = bootstrap_lvis(gt, runs, [("run0", "run1"), ("run0", "run2")], n_boot=1000)
    took = time.perf_counter() - t
    with capsys.disabled():
        print(f"\nbootstrap_lvis: 3 runs x 1000 resamples, 60 images x 300 classes x 300 dets: {took:.1f} s")
    assert boot["runs"]["run0"]["AP"] == pytest.approx(lvis_bbox_eval(gt, runs["run0"])["AP"], abs=1e-12)
