"""Golden case ``clip_backbone``: CLIPResNet → C4 → RoIAlign 14 → CLIPResLayer → AttentionPool2d,
outputs and gradients of ``L = Σc4·R_c4 + Σc5·R_c5 + Σemb·R_emb`` (see the manifest)."""
import numpy as np

import unidetector  # noqa: F401  (runtime bootstrap before jittor)
import jittor as jt

from unidetector.convert import load_state_dict
from unidetector.models.backbones import CLIPResNet  # noqa: F401  (registers the type)
from unidetector.models.layers import AttentionPool2d
from unidetector.models.roi_heads.shared_heads import CLIPResLayer  # noqa: F401
from unidetector.ops.roi_align import roi_align
from unidetector.registry import MODELS, build

PARTS = {"backbone.": "backbone", "roi_head.shared_head.": "shared_head", "roi_head.bbox_head.attnpool.": "attnpool"}


def build_parts(g):
    model_cfg, red = g.config["model"], g.config["reduction"]
    roi_cfg = model_cfg["roi_head"]
    backbone = build(model_cfg["backbone"], MODELS, key_path="model.backbone")
    shared = build(dict(roi_cfg["shared_head"], width=red["width"], in_channels=backbone.out_channels),
                   MODELS, key_path="model.roi_head.shared_head")
    attnpool = AttentionPool2d(**red["attnpool"])
    sd = g.state_dict()
    parts = {"backbone": backbone, "shared_head": shared, "attnpool": attnpool}
    for prefix, name in PARTS.items():
        report = load_state_dict(parts[name], sd, strict=True, prefix=prefix)
        assert not report.missing and not report.unexpected, report.format()
    return parts


def check(g):
    parts = build_parts(g)
    backbone, shared, attnpool = parts["backbone"], parts["shared_head"], parts["attnpool"]
    for m in parts.values():
        m.train()  # BN must stay in eval mode anyway
    extractor = g.config["model"]["roi_head"]["bbox_roi_extractor"]
    out_size = extractor["roi_layer"]["output_size"]
    scale = 1.0 / extractor["featmap_strides"][0]

    img = jt.array(g["in/img"])
    layer1 = backbone.layer1(backbone.stem(img))
    layer2 = backbone.layer2(layer1)
    c4 = backbone.layer3(layer2)
    (c4_again,) = backbone(img)
    roi_feats = roi_align(c4, jt.array(g["in/rois"]), out_size, scale,
                          extractor["roi_layer"].get("sampling_ratio", 0), aligned=True)
    c5 = shared(roi_feats)
    emb = attnpool(c5)
    loss = ((c4 * jt.array(g["in/R_c4"])).sum() + (c5 * jt.array(g["in/R_c5"])).sum()
            + (emb * jt.array(g["in/R_emb"])).sum())

    for key, got in (("out/layer1", layer1), ("out/layer2", layer2), ("out/c4", c4), ("out/c4", c4_again),
                     ("out/roi_feats", roi_feats), ("out/c5", c5), ("out/attnpool", emb)):
        g.assert_close(key, got, "out float32")
    g.assert_close("out/loss", loss.numpy().reshape(()), "out/loss", "out float32")

    named = {}
    for prefix, name in PARTS.items():
        named.update({prefix + k: v for k, v in parts[name].state_dict().items()})
    grad_keys = [k for k in g.keys("grad/") if k != "grad/roi_feats"]
    targets = [named[k[len("grad/"):]] for k in grad_keys]
    grads = jt.grad(loss, targets + [roi_feats])
    for key, grad in zip(grad_keys + ["grad/roi_feats"], grads):
        g.assert_close(key, grad, "grad float32")

    # frozen stem + layer1 (official _freeze_stages): no gradients flow into them
    for key, var in named.items():
        frozen = key.startswith(("backbone.conv", "backbone.bn", "backbone.layer1."))
        if key.endswith(("weight", "bias")) and "running" not in key:
            assert var.is_stop_grad() == frozen, f"{key}: stop_grad={var.is_stop_grad()}, expected {frozen}"
