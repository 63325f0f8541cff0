"""Golden case ``end2end_rpn``: ``RPNHead`` on C4 (end-to-end variant): test proposals with the official
and a small test cfg, forward_train losses, training proposals and gradients."""
import numpy as np

import unidetector  # noqa: F401  (runtime bootstrap before jittor)
import jittor as jt

from unidetector.convert import load_state_dict
from unidetector.models import dense_heads  # noqa: F401  (registers RPNHead)
from unidetector.registry import MODELS, build

PREFIX = "rpn_head."


def build_head(g):
    cfg = dict(g.config["rpn_head"])
    head = build(cfg, MODELS, key_path="rpn_head")
    report = load_state_dict(head, g.state_dict(), strict=True, prefix=PREFIX)
    assert not report.missing and not report.unexpected, report.format()
    return head


def metas(g, num):
    return [dict(img_shape=tuple(int(v) for v in g[f"in/img{k}_img_shape"]),
                 pad_shape=tuple(int(v) for v in g[f"in/img{k}_pad_shape"])) for k in range(num)]


def check(g):
    head = build_head(g)
    c4 = jt.array(g["in/c4"])
    num_imgs = c4.shape[0]
    img_metas = metas(g, num_imgs)

    cls_scores, bbox_preds = head([c4[:1]])
    g.assert_close("out/test_rpn_cls", cls_scores[0])
    g.assert_close("out/test_rpn_reg", bbox_preds[0])
    (props,) = head.simple_test_rpn([c4[:1]], img_metas[:1])
    g.assert_close("out/test_proposals", props, "proposal boxes")
    (props,) = head.get_bboxes(cls_scores, bbox_preds, img_metas[:1], g.config["small_test_cfg"])
    g.assert_close("out/test_proposals_small_cfg", props, "proposal boxes")

    losses, proposals = head.forward_train([c4], img_metas, [jt.array(g[f"in/gt_bboxes_img{k}"])
                                                            for k in range(num_imgs)],
                                           proposal_cfg=g.config["train_proposal_cfg"])
    loss_cls, loss_bbox = sum(losses["loss_rpn_cls"]), sum(losses["loss_rpn_bbox"])
    g.assert_close("out/train_loss_rpn_cls", loss_cls.numpy().reshape(()))
    g.assert_close("out/train_loss_rpn_bbox", loss_bbox.numpy().reshape(()))
    for k in range(num_imgs):
        g.assert_close(f"out/train_proposals_img{k}", proposals[k], "proposal boxes")

    named = {PREFIX + k: v for k, v in head.state_dict().items()}
    grad_keys = [k for k in g.keys("grad/") if k != "grad/c4"]
    grads = jt.grad(loss_cls + loss_bbox, [named[k[len("grad/"):]] for k in grad_keys] + [c4])
    for key, grad in zip(grad_keys + ["grad/c4"], grads):
        g.assert_close(key, grad, "grad/*")
    assert np.isfinite(loss_cls.item())
