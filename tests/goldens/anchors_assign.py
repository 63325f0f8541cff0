"""AnchorGenerator (base/grid anchors, valid and inside flags) and MaxIoUAssigner."""
import unidetector  # noqa: F401  (runtime bootstrap before jittor)
import jittor as jt
import numpy as np

from unidetector.ops import AnchorGenerator, MaxIoUAssigner, anchor_inside_flags, bbox_overlaps


def _images(g):
    """Image indices k with in/img{k}_pad_shape."""
    return sorted(int(k[len("in/img"):].split("_")[0]) for k in g.keys("in/img") if k.endswith("_pad_shape"))


def _check_anchors(g, name, cfg):
    cfg = dict(cfg)
    cfg.pop("type")
    gen = AnchorGenerator(**cfg)
    sizes = [tuple(s) for s in g[f"in/{name}_featmap_sizes"]]
    for i in range(gen.num_levels):
        g.assert_close(f"out/{name}_base_anchors_l{i}", gen.base_anchors[i])
    anchors = gen.grid_anchors(sizes)
    for i, a in enumerate(anchors):
        g.assert_close(f"out/{name}_anchors_l{i}", a)
    for k in _images(g):
        flags = gen.valid_flags(sizes, g[f"in/img{k}_pad_shape"])
        for i, f in enumerate(flags):
            g.assert_close(f"out/{name}_valid_flags_img{k}_l{i}", f)
        inside = anchor_inside_flags(jt.concat(anchors), jt.concat(flags), g[f"in/img{k}_img_shape"],
                                     g.config.get("allowed_border", 0))
        g.assert_close(f"out/{name}_inside_flags_img{k}", inside)


def _check_assigner(g, name, cfg):
    cfg = dict(cfg)
    cfg.pop("type")
    assigner = MaxIoUAssigner(**cfg)
    bboxes, gts, labels = g[f"in/{name}_bboxes"], g[f"in/{name}_gt_bboxes"], g[f"in/{name}_gt_labels"]
    g.assert_close(f"out/{name}_overlaps", bbox_overlaps(gts, bboxes))
    res = assigner.assign(bboxes, gts, gt_labels=labels)
    g.assert_close(f"out/{name}_gt_inds", res.gt_inds)
    g.assert_close(f"out/{name}_max_overlaps", res.max_overlaps)
    g.assert_close(f"out/{name}_labels", res.labels)
    empty = assigner.assign(bboxes, np.zeros((0, 4), np.float32), gt_labels=np.zeros((0,), np.int64))
    g.assert_close(f"out/{name}_nogt_gt_inds", empty.gt_inds)
    g.assert_close(f"out/{name}_nogt_max_overlaps", empty.max_overlaps)
    g.assert_close(f"out/{name}_nogt_labels", empty.labels)


def check(g):
    for name, cfg in g.config["anchor_generators"].items():
        _check_anchors(g, name, cfg)
    for name, cfg in g.config["assigners"].items():
        _check_assigner(g, name, cfg)
