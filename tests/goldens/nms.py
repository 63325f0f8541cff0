"""mmcv nms / batched_nms / soft_nms and mmdet multiclass_nms.

Detections are compared as the README advises: first as sets matched on (label, box),
then in order, where only detections with equal scores may trade places.
"""
import numpy as np

from unidetector.ops import batched_nms, multiclass_nms, nms, soft_nms

TOL = "float32 (dets)"
# multiclass inputs in/mc_<name>_* -> config entry multiclass_nms_<...>
MC_CONFIG = {"lvis": "lvis", "split": "lvis", "cs": "class_specific"}


def _compare(g, prefix, dets, index_key, index, labels=None):
    """Compare (dets, index[, labels]) with out/<prefix>_dets etc., allowing tied scores to swap."""
    dets, index = np.asarray(dets.numpy()), np.asarray(index.numpy())
    labels = None if labels is None else np.asarray(labels.numpy())
    ref_dets, ref_index = g[f"out/{prefix}_dets"], g[index_key]
    ref_labels = g[f"out/{prefix}_labels"] if labels is not None else None
    assert dets.shape == ref_dets.shape, f"{prefix}: {dets.shape[0]} detections, expected {ref_dets.shape[0]}"
    same_order = (index == ref_index).all() and (labels is None or (labels == ref_labels).all())
    if not same_order:
        # sets matched on (label, index): the index identifies the box (and class) uniquely
        key = index if labels is None else index * (int(max(labels.max(), ref_labels.max())) + 1) + labels
        ref_key = ref_index if labels is None else ref_index * (int(max(labels.max(), ref_labels.max())) + 1) + ref_labels
        assert np.array_equal(np.sort(key), np.sort(ref_key)), f"{prefix}: detected sets differ"
        perm = np.argsort(key)[np.argsort(np.argsort(ref_key))]  # our row matching each reference row
        g.assert_close(f"out/{prefix}_dets", dets[perm], TOL)
        # order: a swap is only allowed between equal scores
        g.assert_close(f"out/{prefix}_dets", dets[:, 4], TOL, ref=ref_dets[:, 4])
        return
    g.assert_close(f"out/{prefix}_dets", dets, TOL)
    g.assert_close(index_key, index)
    if labels is not None:
        g.assert_close(f"out/{prefix}_labels", labels)


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
