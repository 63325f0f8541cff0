"""mmcv RoIAlign (forward + grad w.r.t. the map) and mmdet SingleRoIExtractor (FPN levels)."""
import unidetector  # noqa: F401  (runtime bootstrap before jittor)
import jittor as jt

from unidetector.models.roi_heads.roi_extractors import SingleRoIExtractor
from unidetector.ops import roi_align


def _check_roi_align(g, name, cfg):
    # the map a config uses is named by its gradient key: grad/<feat>_<config name>
    (grad_key,) = [k for k in g.keys("grad/") if k.endswith("_" + name)]
    feat_name = grad_key[len("grad/"):-len(name) - 1]
    feat = jt.array(g["in/" + feat_name])
    out = roi_align(feat, jt.array(g["in/rois"]), cfg["output_size"], cfg["spatial_scale"], cfg["sampling_ratio"],
                    cfg.get("pool_mode", "avg"), cfg.get("aligned", True))
    g.assert_close("out/" + name, out)
    grad = jt.grad((out * jt.array(g["in/grad_out_" + name])).sum(), feat)
    g.assert_close(grad_key, grad)


def _check_extractor(g, cfg):
    cfg = dict(cfg)
    cfg.pop("type")
    extractor = SingleRoIExtractor(**cfg)
    feats = [jt.array(g[f"in/fpn_feat_l{i}"]) for i in range(len(cfg["featmap_strides"]))]
    rois = jt.array(g["in/fpn_rois"])
    g.assert_close("out/fpn_levels", extractor.map_roi_levels(rois, len(feats)))
    out = extractor(feats, rois)
    g.assert_close("out/fpn_roi_feats", out)
    grads = jt.grad((out * jt.array(g["in/fpn_grad_out"])).sum(), feats)
    for i, grad in enumerate(grads):
        g.assert_close(f"grad/fpn_feat_l{i}", grad)


def check(g):
    for name, cfg in g.config.items():
        if cfg["type"] == "RoIAlign":
            _check_roi_align(g, name, cfg)
        elif cfg["type"] == "SingleRoIExtractor":
            _check_extractor(g, cfg)
        else:
            raise AssertionError(f"roi_align case: unknown config entry {name!r} of type {cfg['type']!r}")
