"""mmcv nms / batched_nms / soft_nms and mmdet multiclass_nms, compared bit for bit.

For every call: the same number of detections, the same kept indices (and labels), and every
detection's box and (decayed) score bit-identical (float32) to the official one, in the official
order. The only freedom: detections whose scores are exactly equal (bit for bit) may come in another
order, since mmcv's sort leaves the order of exact ties unspecified.
"""
import numpy as np

from unidetector.ops import batched_nms, multiclass_nms, nms, soft_nms

# multiclass inputs in/mc_<name>_* -> config entry multiclass_nms_<...>
MC_CONFIG = {"lvis": "lvis", "split": "lvis", "cs": "class_specific"}


def _canonical(scores, key):
    """Row order by descending score, exact ties by ``key``: permutes only within tied-score runs
    of a list that is already sorted by descending score."""
    return np.lexsort((key, -scores.astype(np.float64)))


def _compare(g, prefix, dets, index_key, index, labels=None):
    """Assert (dets, index[, labels]) equal out/<prefix>_dets etc. bit for bit, up to exact score ties."""
    dets, index = np.asarray(dets.numpy()), np.asarray(index.numpy())
    ref_dets, ref_index = g[f"out/{prefix}_dets"], g[index_key]
    assert dets.shape == ref_dets.shape, f"{prefix}: {dets.shape[0]} detections, expected {ref_dets.shape[0]}"
    assert dets.dtype == ref_dets.dtype == np.float32, f"{prefix}: dets dtype {dets.dtype}, expected float32"
    key, ref_key = index.astype(np.int64), ref_index.astype(np.int64)
    if labels is not None:  # (index, label) identifies a detection
        labels, ref_labels = np.asarray(labels.numpy()), g[f"out/{prefix}_labels"]
        base = int(max(labels.max(initial=0), ref_labels.max(initial=0))) + 1
        key, ref_key = key * base + labels, ref_key * base + ref_labels
    bits, ref_bits = dets.view(np.uint32), ref_dets.view(np.uint32)
    # the score sequence is the official one, bit for bit (so only exact ties can be reordered)
    differ = np.flatnonzero(bits[:, 4] != ref_bits[:, 4])
    assert differ.size == 0, (f"{prefix}: {differ.size}/{len(dets)} scores differ from the official ones "
                              f"(first at row {differ[0] if differ.size else -1}: max |diff| "
                              f"{np.abs(dets[:, 4] - ref_dets[:, 4]).max():.3g})")
    order, ref_order = _canonical(dets[:, 4], key), _canonical(ref_dets[:, 4], ref_key)
    g.assert_close(index_key, index[order], ref=ref_index[ref_order])
    if labels is not None:
        g.assert_close(f"out/{prefix}_labels", labels[order], ref=ref_labels[ref_order])
    rows = np.flatnonzero((bits[order] != ref_bits[ref_order]).any(1))
    assert rows.size == 0, (f"{prefix}: {rows.size}/{len(dets)} detections are not bit-identical "
                            f"(max |diff| {np.abs(dets[order] - ref_dets[ref_order]).max():.3g})")


def check(g):
    cfg = g.config
    boxes, scores, class_ids = g["in/boxes"], g["in/scores"], g["in/class_ids"]
    offset = cfg["nms"].get("offset", 0)
    for thr in cfg["nms"]["iou_thresholds"]:
        dets, keep = nms(boxes, scores, thr, offset=offset)
        _compare(g, f"nms_{thr}", dets, f"out/nms_{thr}_keep", keep)
    for nms_cfg in cfg["batched_nms"]:
        dets, keep = batched_nms(boxes, scores, class_ids, nms_cfg)
        prefix = f"batched_nms_{nms_cfg['iou_threshold']}"
        _compare(g, prefix, dets, f"out/{prefix}_keep", keep)
    sn = dict(cfg["soft_nms"])
    dets, inds = soft_nms(boxes, scores, sn["iou_threshold"], sn["sigma"], sn["min_score"], sn["method"],
                          sn.get("offset", 0))
    _compare(g, "soft_nms", dets, "out/soft_nms_inds", inds)
    dets, keep = batched_nms(boxes, scores, class_ids, cfg["batched_soft_nms"])
    _compare(g, "batched_soft_nms", dets, "out/batched_soft_nms_keep", keep)

    for key in g.keys("in/mc_"):
        if not key.endswith("_bboxes"):
            continue
        name = key[len("in/mc_"):-len("_bboxes")]
        mc = cfg["multiclass_nms_" + MC_CONFIG.get(name, name)]
        max_num = mc.get("max_per_img", mc.get("max_num", -1))
        dets, labels, inds = multiclass_nms(g[key], g[f"in/mc_{name}_scores"], mc["score_thr"], mc["nms"],
                                            max_num, return_inds=True)
        _compare(g, f"mc_{name}", dets, f"out/mc_{name}_inds", inds, labels)
