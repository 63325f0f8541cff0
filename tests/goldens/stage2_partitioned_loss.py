"""Golden case ``stage2_partitioned_loss``: ``BBoxHeadCLIPPartitioned`` logits per dataset, targets from
MaxIoUAssigner + RandomSampler (GTs prepended), the per-image masked BCE with the recorded negative-class
masks, the L1 box loss and gradients."""
import json
import tempfile
from pathlib import Path

import numpy as np

import unidetector  # noqa: F401  (runtime bootstrap before jittor)
import jittor as jt

from unidetector.convert import load_state_dict
from unidetector.models import roi_heads  # noqa: F401  (registers the heads)
from unidetector.registry import MODELS, TASK_UTILS, build

PREFIX = "roi_head.bbox_head."


class RecordedMasks:
    """Negative-class sampler replaying the official draws: returns ``in/fed_mask_img{k}`` in call order
    and records the eligibility vector it was given."""

    def __init__(self, masks):
        self.masks, self.eligible, self.appeared = list(masks), [], []

    def __call__(self, appeared, eligible):
        mask = self.masks[len(self.eligible)]
        self.appeared.append(appeared)
        self.eligible.append(eligible)
        return mask


def write_cat_info(folder: Path, counts: np.ndarray, name: str) -> str:
    """A cat-info json with the given image counts (ids 1..C, listed in a shuffled order)."""
    cats = [dict(id=i + 1, name=f"c{i}", image_count=int(c), instance_count=int(c)) for i, c in enumerate(counts)]
    order = np.random.default_rng(0).permutation(len(cats))
    path = folder / name
    path.write_text(json.dumps([cats[i] for i in order]))
    return str(path)


def build_head(g, tmp: Path, sampler):
    cfg = dict(g.config["bbox_head"])
    num_sets = len(cfg["zeroshot_path"])
    cfg["zeroshot_path"] = [g[f"in/zs_npy_{d}"] for d in range(num_sets)]
    cfg["cat_freq_path"] = [write_cat_info(tmp, g[f"in/cat_image_count_{d}"], f"cat_info_{d}.json")
                            if f"in/cat_image_count_{d}" in g else None for d in range(num_sets)]
    red = g.config["reduction"]
    head = build(dict(cfg, attnpool=red["attnpool"], neg_class_sampler=sampler), MODELS, key_path="bbox_head")
    assert head.fc_reg.weight.shape[1] == red["fc_reg"]["in_features"]
    report = load_state_dict(head, g.state_dict(), strict=True, prefix=PREFIX)
    assert not report.missing and not report.unexpected, report.format()
    for d in range(num_sets):  # the buffers are built from the embeddings, never loaded
        key = f"w/{PREFIX}zs_weights_{d}"
        g.assert_close(key, getattr(head, f"zs_weights_{d}"))
    return head


def sample_targets(g, head):
    train_cfg = g.config["rcnn_train_cfg"]
    assigner = build(train_cfg["assigner"], TASK_UTILS)
    sampler = build(train_cfg["sampler"], TASK_UTILS)
    num_imgs = len(g["in/dataset_ids"])
    results, gt_bboxes, gt_labels = [], [], []
    for k in range(num_imgs):
        boxes, labels = jt.array(g[f"in/gt_bboxes_img{k}"]), jt.array(g[f"in/gt_labels_img{k}"])
        proposals = jt.array(g[f"in/proposals_img{k}"])
        assign = assigner.assign(proposals, boxes, None, labels)
        results.append(sampler.sample(assign, proposals, boxes, labels))
        gt_bboxes.append(boxes)
        gt_labels.append(labels)
    return results, head.get_targets(results, gt_bboxes, gt_labels, train_cfg)


def check(g):
    from unidetector.ops import bbox2roi

    num_imgs = len(g["in/dataset_ids"])
    recorder = RecordedMasks([g[f"in/fed_mask_img{k}"] for k in range(num_imgs)])
    with tempfile.TemporaryDirectory() as tmp:
        head = build_head(g, Path(tmp), recorder)
    head.train()

    sampling_results, targets = sample_targets(g, head)
    rois = bbox2roi([r.bboxes for r in sampling_results])
    g.assert_close("out/rois", rois, "boxes")
    for key, got in zip(("out/labels", "out/label_weights", "out/bbox_targets", "out/bbox_weights"), targets):
        g.assert_close(key, got)
    g.assert_close("out/num_rois_per_img",
                   np.array([r.bboxes.shape[0] for r in sampling_results], np.int64))

    feats = jt.array(g["in/roi_feats"])
    g.assert_close("out/attnpool", head.attnpool(feats))
    cls_scores, bbox_pred = head(feats)
    for d, score in enumerate(cls_scores):
        g.assert_close(f"out/cls_score_{d}", score, f"out/cls_score_{d}", "out/cls_score_*")
    g.assert_close("out/bbox_pred", bbox_pred)

    img_metas = [dict(dataset_id=int(d)) for d in g["in/dataset_ids"]]
    losses = head.loss(cls_scores, bbox_pred, rois, img_metas, sampling_results, *targets)
    g.assert_close("out/loss_cls", losses["loss_cls"].numpy().reshape(()))
    g.assert_close("out/loss_bbox", losses["loss_bbox"].numpy().reshape(()))
    for k in range(num_imgs):
        # the official draw probability = our eligibility; the replayed mask contains every appeared class
        g.assert_close(f"out/fed_sampling_prob_img{k}", recorder.eligible[k].astype(np.float32))
        assert not (recorder.appeared[k][:-1] & ~g[f"in/fed_mask_img{k}"]).any()

    # per-image losses: one image at a time with the same recorded masks
    bounds = np.cumsum([0] + [r.bboxes.shape[0] for r in sampling_results])
    labels = targets[0].numpy()
    for k in range(num_imgs):
        d = img_metas[k]["dataset_id"]
        rows = slice(int(bounds[k]), int(bounds[k + 1]))
        replay = RecordedMasks([g[f"in/fed_mask_img{k}"]])
        got = head.sampled_bce(cls_scores[d][rows], labels[rows], head.num_classes, head.image_counts[d], replay)
        g.assert_close(f"out/loss_cls_img{k}", got.numpy().reshape(()))

    total = losses["loss_cls"] + losses["loss_bbox"]
    named = {PREFIX + k: v for k, v in head.state_dict().items()}
    grad_keys = [k for k in g.keys("grad/") if k != "grad/roi_feats"]
    grads = jt.grad(total, [named[k[len("grad/"):]] for k in grad_keys] + [feats])
    for key, grad in zip(grad_keys + ["grad/roi_feats"], grads):
        g.assert_close(key, grad, "grad/*")
    # the frozen text embeddings get no gradient
    assert all(named[PREFIX + f"zs_weights_{d}"].is_stop_grad() for d in range(len(cls_scores)))
