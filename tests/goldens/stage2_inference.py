"""Golden case ``stage2_inference``: the decoupled stage-2 detector (FastRCNN + StandardRoIHead with
proposal scores + BBoxHeadCLIPInference) on one image, without and with calibration.

Intermediates are compared directly; post-processing (soft-NMS, cap) is tested in isolation on the
stored pre-NMS boxes/scores and, end to end, as sets of detections matched on (label, box), because
near-equal scores may legitimately swap order.
"""
import pickle
import tempfile
from pathlib import Path

import numpy as np

import unidetector  # noqa: F401  (runtime bootstrap before jittor)
import jittor as jt

from unidetector.convert import load_state_dict
from unidetector.models import detectors  # noqa: F401  (registers the model types)
from unidetector.ops import bbox2roi, multiclass_nms
from unidetector.registry import MODELS, build


def model_config(g, mode: str, tmp: Path) -> dict:
    cfg = g.config[f"model_{mode}"]
    red = g.config["reduction"]
    width = red["width"]
    roi = dict(cfg["roi_head"])
    head = dict(roi["bbox_head"], zeroshot_path=g["in/zs_npy"],
                attnpool=dict(spacial_dim=roi["bbox_head"]["roi_feat_size"], embed_dim=width * 32,
                              num_heads=red["heads"], output_dim=red["out_dim"]))
    if head.get("withcalibration"):
        # a raw-results pickle whose per-class detection counts are in/cnum (the official prior source)
        counts = g["in/cnum"].astype(np.int64)
        raw = [[np.zeros((int(n), 5), np.float32) for n in counts]]
        path = tmp / "raw_results.pkl"
        path.write_bytes(pickle.dumps(raw))
        head.update(resultfile=str(path), calibration_smoothing=0.0)  # the fixture prior has no smoothing
    roi.update(bbox_head=head, shared_head=dict(roi["shared_head"], width=width))
    return dict(cfg, backbone=dict(cfg["backbone"]), roi_head=roi)


def build_model(g, mode):
    with tempfile.TemporaryDirectory() as tmp:
        cfg = model_config(g, mode, Path(tmp))
        model = build(cfg, MODELS, key_path="model")
    report = load_state_dict(model, g.state_dict())
    assert not report.missing and not report.unexpected, report.format()
    g.assert_close("w/roi_head.bbox_head.zs_weights", model.roi_head.bbox_head.zs_weights)  # from in/zs_npy
    model.eval()
    return model


def img_metas(g):
    return [dict(img_shape=tuple(int(v) for v in g["in/img_shape"]), ori_shape=tuple(int(v) for v in g["in/ori_shape"]),
                 pad_shape=tuple(int(v) for v in g["in/pad_shape"]), scale_factor=g["in/scale_factor"])]


def match_detections(got_dets, got_labels, ref_dets, ref_labels, box_atol):
    """Indices pairing every got detection with a reference one of the same label whose box is within
    ``box_atol`` (one-to-one); asserts the two sets are equal."""
    assert len(got_dets) == len(ref_dets), f"{len(got_dets)} detections, expected {len(ref_dets)}"
    same = got_labels[:, None] == ref_labels[None, :]
    dist = np.abs(got_dets[:, None, :4] - ref_dets[None, :, :4]).max(-1)
    dist = np.where(same, dist, np.inf)
    nearest = dist.argmin(1)
    ok = dist[np.arange(len(got_dets)), nearest] <= box_atol
    assert ok.all(), f"{int((~ok).sum())} detections have no (label, box) match, e.g. {got_dets[~ok][:3]}"
    assert len(np.unique(nearest)) == len(nearest), "detections do not match one-to-one"
    return nearest


def check_detection_set(g, key_dets, key_labels, got_dets, got_labels):
    ref_dets, ref_labels = g[key_dets], g[key_labels]
    got_dets, got_labels = np.asarray(got_dets.numpy()), np.asarray(got_labels.numpy())
    box_tol = g.tol(key_dets, "boxes (pixels)")
    pair = match_detections(got_dets, got_labels, ref_dets, ref_labels, box_tol["atol"] * 10)
    g.assert_close(key_dets, got_dets[np.argsort(pair)], "boxes (pixels)", ref=ref_dets)
    score_tol = g.tol(key_dets, "scores")
    assert np.allclose(got_dets[:, 4], ref_dets[pair, 4], rtol=score_tol["rtol"], atol=score_tol["atol"])
    # the order is by descending score: the sorted score lists agree
    assert np.allclose(got_dets[:, 4], ref_dets[:, 4], rtol=score_tol["rtol"], atol=score_tol["atol"])


def check(g):
    metas = img_metas(g)
    img = jt.array(g["in/img"])
    proposals = jt.array(g["in/proposals"])
    rcnn_cfg = g.config["model_nocalib"]["test_cfg"]["rcnn"]
    for mode in ("nocalib", "calib"):
        model = build_model(g, mode)
        roi_head, head = model.roi_head, model.roi_head.bbox_head
        x = model.extract_feat(img)
        g.assert_close("out/c4", x[0], "out/c4, out/attnpool")
        rois = bbox2roi([proposals])
        feats = roi_head.shared_head(roi_head.bbox_roi_extractor(x, rois))
        g.assert_close("out/attnpool", head.attnpool(feats), "out/c4, out/attnpool")
        cls_score, bbox_pred = head(feats)
        g.assert_close("out/cls_score", cls_score, "out/cls_score")
        g.assert_close("out/bbox_pred", bbox_pred)

        boxes, scores = roi_head.simple_test_bboxes(x, metas, [proposals], None, rescale=True)
        g.assert_close(f"out/{mode}_decoded_bboxes", boxes[0], "boxes (pixels)")
        g.assert_close(f"out/{mode}_fused_scores", scores[0], "scores")

        # post-processing in isolation, on the official pre-NMS intermediates
        pre_boxes, pre_scores = g[f"out/{mode}_decoded_bboxes"], g[f"out/{mode}_fused_scores"]
        dets, labels = multiclass_nms(pre_boxes, pre_scores, rcnn_cfg["score_thr"], rcnn_cfg["nms"], max_num=-1)
        check_detection_set(g, f"out/{mode}_nms_untruncated_dets", f"out/{mode}_nms_untruncated_labels", dets, labels)
        dets, labels = multiclass_nms(pre_boxes, pre_scores, rcnn_cfg["score_thr"], rcnn_cfg["nms"],
                                      rcnn_cfg["max_per_img"])
        check_detection_set(g, f"out/{mode}_det_bboxes", f"out/{mode}_det_labels", dets, labels)

        # end to end: FastRCNN.execute in eval mode -> per-class results (bbox2result)
        (result,) = model(img, metas, proposals=[proposals])
        counts = np.array([len(r) for r in result], np.int64)
        g.assert_close(f"out/{mode}_result_counts", counts)
        concat = np.concatenate(result, 0)
        labels = np.repeat(np.arange(len(result)), counts)
        ref = g[f"out/{mode}_result_concat"]
        pair = match_detections(concat, labels, ref, labels, 10 * g.tol("", "boxes (pixels)")["atol"])
        g.assert_close(f"out/{mode}_result_concat", concat[np.argsort(pair)], "boxes (pixels)", ref=ref)
