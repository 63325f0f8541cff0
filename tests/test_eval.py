"""Evaluation: COCO AP equals pycocotools, LVIS AP (incl. APr/APc/APf) equals the LVIS API, recall, formats."""
import contextlib
import copy
import io

import numpy as np
import pytest

from unidetector.evaluation import (coco_bbox_eval, coco_json_to_results, eval_recalls, lvis_bbox_eval,
                                    proposal_recall_report, results_to_coco_json)
from unidetector.evaluation.lvis import limit_dets_per_image


def make_gt(seed=0, n_images=12, n_cats=9, lvis=False):
    rng = np.random.default_rng(seed)
    cats = [dict(id=int(c), name=f"class {c}") for c in rng.permutation(np.arange(3, 3 + n_cats))]
    cat_ids = sorted(c["id"] for c in cats)
    if lvis:
        for k, c in enumerate(cats):
            c["frequency"] = "rcf"[k % 3]
    images, anns = [], []
    for i in range(n_images):
        w, h = int(rng.integers(200, 400)), int(rng.integers(200, 400))
        img = dict(id=100 + i, width=w, height=h, file_name=f"{i}.jpg")
        present = set()
        for _ in range(int(rng.integers(0, 7))):
            bw, bh = rng.uniform(4, w / 2), rng.uniform(4, h / 2)
            x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            cid = int(rng.choice(cat_ids))
            present.add(cid)
            a = dict(id=len(anns) + 1, image_id=img["id"], category_id=cid, bbox=[x, y, bw, bh], area=bw * bh,
                     segmentation=[[x, y, x + bw, y, x + bw, y + bh, x, y + bh]])
            if not lvis:
                a["iscrowd"] = int(rng.random() < 0.05)
            anns.append(a)
        if lvis:
            absent = [c for c in cat_ids if c not in present]
            img["neg_category_ids"] = [int(c) for c in rng.choice(absent, size=len(absent) // 2, replace=False)]
            img["not_exhaustive_category_ids"] = [int(c) for c in present if rng.random() < 0.3]
        images.append(img)
    return dict(images=images, annotations=anns, categories=cats)


def make_dets(gt, seed=1, per_image=(5, 60)):
    rng = np.random.default_rng(seed)
    cat_ids = [c["id"] for c in gt["categories"]]
    by_img = {}
    for a in gt["annotations"]:
        by_img.setdefault(a["image_id"], []).append(a)
    dets = []
    for img in gt["images"]:
        for a in by_img.get(img["id"], []):  # noisy true positives
            if rng.random() < 0.8:
                x, y, w, h = a["bbox"]
                j = rng.normal(0, 0.08, 4) * [w, h, w, h]
                dets.append(dict(image_id=img["id"], category_id=a["category_id"] if rng.random() < 0.85
                                 else int(rng.choice(cat_ids)), bbox=[x + j[0], y + j[1], w + j[2], h + j[3]],
                                 score=float(rng.random())))
        for _ in range(int(rng.integers(*per_image))):  # background false positives
            w, h = rng.uniform(2, img["width"] / 2), rng.uniform(2, img["height"] / 2)
            dets.append(dict(image_id=img["id"], category_id=int(rng.choice(cat_ids)),
                             bbox=[rng.uniform(0, img["width"] - w), rng.uniform(0, img["height"] - h), w, h],
                             score=float(np.round(rng.random(), 2))))  # rounded: score ties
    return dets


def test_coco_eval_equals_pycocotools():
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = make_gt(0)
    dets = make_dets(gt, per_image=(5, 40))
    ours = coco_bbox_eval(gt, dets)
    api = COCO()
    api.dataset = copy.deepcopy(gt)
    with contextlib.redirect_stdout(io.StringIO()):
        api.createIndex()
        ev = COCOeval(api, api.loadRes(copy.deepcopy(dets)), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    ref = dict(zip(("mAP", "mAP_50", "mAP_75", "mAP_s", "mAP_m", "mAP_l"), ev.stats[:6]))
    assert 0.05 < ours["mAP"] < 0.95
    for k, v in ref.items():
        assert ours[k] == pytest.approx(v, abs=1e-6), k
    assert coco_bbox_eval(gt, [])["mAP"] == 0.0


@pytest.fixture(scope="module")
def lvis_api():
    pytest.importorskip("lvis")
    if not hasattr(np, "float"):
        np.float = float  # lvis 0.5.3 uses np.float, removed in numpy 1.24
    import lvis

    return lvis


@pytest.mark.parametrize("seed", [0, 1])
def test_lvis_eval_equals_lvis_api(lvis_api, seed):
    gt = make_gt(seed, n_images=15, lvis=True)
    dets = make_dets(gt, seed=seed + 10, per_image=(20, 330))  # some images above the 300 cap
    ours = lvis_bbox_eval(gt, dets, max_dets=300)
    logging_off = contextlib.redirect_stdout(io.StringIO())
    with logging_off:
        lgt = lvis_api.LVIS.__new__(lvis_api.LVIS)
        lgt.logger = __import__("logging").getLogger("lvis")
        lgt.dataset = copy.deepcopy(gt)
        lgt._create_index()
        res = lvis_api.LVISResults(lgt, copy.deepcopy(dets), max_dets=300)
        ev = lvis_api.LVISEval(lgt, res, iou_type="bbox")
        ev.run()
    ref = ev.get_results()
    assert 0.005 < ours["AP"] < 0.95
    for ours_key, ref_key in [("AP", "AP"), ("AP50", "AP50"), ("AP75", "AP75"), ("APs", "APs"), ("APm", "APm"),
                              ("APl", "APl"), ("APr", "APr"), ("APc", "APc"), ("APf", "APf")]:
        assert ours[ours_key] == pytest.approx(ref[ref_key], abs=1e-6), ours_key


def test_limit_dets_per_image():
    dets = [dict(image_id=1, score=s) for s in (0.1, 0.9, 0.5)] + [dict(image_id=2, score=0.3)]
    kept = limit_dets_per_image(dets, 2)
    assert sorted(d["score"] for d in kept) == [0.3, 0.5, 0.9]


def test_lvis_eval_rejects_coco_json():
    with pytest.raises(ValueError, match="LVIS format"):
        lvis_bbox_eval(make_gt(0), [])


def test_recall_greedy_matching():
    gts = [np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32), np.zeros((0, 4), np.float32)]
    props = [np.array([[0, 0, 10, 10, 0.9], [20, 20, 30, 28, 0.1], [0, 0, 10, 9, 0.5]], np.float32),
             np.array([[0, 0, 5, 5, 1.0]], np.float32)]
    rec = eval_recalls(gts, props, proposal_nums=(1, 2, 3), iou_thrs=[0.5, 0.85])
    # top-1: only gt0 (IoU 1); top-2 adds the 0.5-score box (IoU 0.9 with gt0, but gt0 is taken) -> no gain;
    # top-3 adds the box with IoU 0.8 on gt1 (≥ 0.5, < 0.85)
    np.testing.assert_allclose(rec, [[0.5, 0.5], [0.5, 0.5], [1.0, 0.5]])
    data = dict(images=[dict(id=1), dict(id=2)], annotations=[
        dict(id=1, image_id=1, category_id=1, bbox=[0, 0, 10, 10], iscrowd=0),
        dict(id=2, image_id=1, category_id=2, bbox=[20, 20, 10, 10], iscrowd=0),
        dict(id=3, image_id=2, category_id=2, bbox=[0, 0, 3, 3], iscrowd=1)])
    rep = proposal_recall_report(data, [1, 2], props, proposal_nums=(1, 3), iou_thrs=[0.5],
                                 cat_subsets={"seen": [1], "novel": [2]})
    assert rep == {"AR@1": 0.5, "AR@3": 1.0, "novel_AR@1": 0.0, "novel_AR@3": 1.0, "seen_AR@1": 1.0,
                   "seen_AR@3": 1.0}


def test_result_format_round_trip():
    results = [[np.array([[0, 0, 10, 20, 0.5], [1, 1, 3, 3, 0.9]], np.float32), np.zeros((0, 5), np.float32)],
               [np.zeros((0, 5), np.float32), np.array([[5, 5, 6, 8, 0.3]], np.float32)]]
    dets = results_to_coco_json(results, [7, 9], [4, 2])
    assert dets[0] == dict(image_id=7, bbox=[0.0, 0.0, 10.0, 20.0], score=0.5, category_id=4)
    back = coco_json_to_results(dets, [7, 9], [4, 2])
    np.testing.assert_allclose(back[0][0], results[0][0][[1, 0]])  # sorted by score
    np.testing.assert_allclose(back[1][1], results[1][1])
    assert back[0][1].shape == (0, 5)
    with pytest.raises(ValueError, match="2 results for 3 images"):
        results_to_coco_json(results, [1, 2, 3], [4, 2])


def test_result_conversion_equals_per_detection_floats():
    """The stacked conversion gives each value as ``float()`` of the float32 input, widths in float64."""
    rng = np.random.default_rng(0)
    results = [[(rng.random((k, 5)) * 300).astype(np.float32) for k in (3, 0, 2)], [np.zeros((0, 5), np.float32)] * 3]
    dets = results_to_coco_json(results, [5, 6], [10, 20, 30])
    expected = [dict(image_id=5, category_id=c, score=float(b[4]),
                     bbox=[float(b[0]), float(b[1]), float(b[2]) - float(b[0]), float(b[3]) - float(b[1])])
                for c, arr in zip((10, 20, 30), results[0]) for b in arr]
    assert dets == expected
    proposals = [(rng.random((4, 5)) * 50).astype(np.float32)]
    assert [d["category_id"] for d in results_to_coco_json(proposals, [9], [10, 20])] == [1] * 4
