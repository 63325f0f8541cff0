"""Stage 2: partitioned loss, negative-class sampling, calibration prior, vocabulary-swap loading,
embedding checks, `unidet calibrate`, and a few SGD steps of the stage-2 detector on a synthetic world."""
import json
import pickle
from types import SimpleNamespace

import numpy as np
import pytest

import unidetector  # noqa: F401  (runtime bootstrap before jittor)
import jittor as jt

from unidetector.calibration import calibration_weights, class_counts_from_results, load_prior
from unidetector.cli import main
from unidetector.convert import load_state_dict
from unidetector.models import detectors  # noqa: F401  (registers the model types)
from unidetector.models.roi_heads.bbox_heads import BBoxHeadCLIP, BBoxHeadCLIPInference, BBoxHeadCLIPPartitioned
from unidetector.models.roi_heads.bbox_heads.bbox_head_clip import HEAD_PRIOR, UniformNegativeClassSampler
from unidetector.registry import MODELS, ConfigError, build

IN_CH, DIM = 64, 16  # RoI feature channels (attnpool embed dim, 1 head of 64) and text-embedding dim


def embeddings(tmp_path, name, num_classes, seed):
    path = tmp_path / f"{name}.npy"
    np.save(path, np.random.default_rng(seed).normal(size=(num_classes, DIM)).astype(np.float32) * 10)
    return str(path)


def cat_info(tmp_path, name, counts):
    path = tmp_path / f"{name}_cat_info.json"
    path.write_text(json.dumps([dict(id=i + 1, name=f"c{i}", image_count=int(c)) for i, c in enumerate(counts)]))
    return str(path)


def partitioned_head(tmp_path, sizes=(6, 9), cat_freq=None, **kw):
    return BBoxHeadCLIPPartitioned(in_channels=IN_CH, num_classes=max(sizes),
                                   zeroshot_path=[embeddings(tmp_path, f"emb{d}", c, d) for d, c in enumerate(sizes)],
                                   cat_freq_path=cat_freq or [None] * len(sizes), **kw)


def test_partitioned_loss_uses_only_own_dataset_logits(tmp_path):
    head = partitioned_head(tmp_path, neg_class_sampler=UniformNegativeClassSampler(50, rng=0))
    rows = (5, 7)  # image 0 (dataset 0), image 1 (dataset 1)
    n = sum(rows)
    scores = [jt.randn(n, c + 1) for c in head.classes_per_dataset]
    bbox_pred = jt.randn(n, 4)
    bg = head.num_classes
    labels = jt.array(np.array([0, 5, bg, bg, bg, 8, 2, bg, bg, bg, bg, bg], np.int64))
    targets = (labels, jt.ones(n), jt.zeros((n, 4)), jt.zeros((n, 4)))
    results = [SimpleNamespace(pos_bboxes=jt.zeros((2, 4)), neg_bboxes=jt.zeros((r - 2, 4))) for r in rows]
    metas = [dict(dataset_id=0), dict(dataset_id=1)]
    losses = head.loss(scores, bbox_pred, jt.zeros((n, 5)), metas, results, *targets)
    g0, g1 = jt.grad(losses["loss_cls"], scores)
    g0, g1 = g0.numpy(), g1.numpy()
    assert np.abs(g0[rows[0]:]).max() == 0 and np.abs(g1[:rows[0]]).max() == 0   # other dataset: no gradient
    assert np.abs(g0[:rows[0], :-1]).max() > 0 and np.abs(g1[rows[0]:, :-1]).max() > 0
    assert np.abs(g0[:, -1]).max() == 0 and np.abs(g1[:, -1]).max() == 0          # background column unused
    assert np.isfinite(losses["loss_cls"].item()) and losses["loss_bbox"].item() == 0


def test_without_box_regression_boxes_are_the_proposals(tmp_path):
    """``with_reg=False``: no ``fc_reg`` weights, no ``loss_bbox``, zero deltas, detections on the proposals' boxes."""
    head = partitioned_head(tmp_path, with_reg=False, neg_class_sampler=UniformNegativeClassSampler(50, rng=0))
    assert not [k for k in head.state_dict() if "fc_reg" in k] and head.embed_dim == DIM
    feats = jt.randn(3, IN_CH, 7, 7)
    scores, deltas = head(feats)
    assert deltas.shape == (3, 4) and np.abs(deltas.numpy()).max() == 0
    labels = jt.array(np.array([0, 2, head.num_classes], np.int64))
    results = [SimpleNamespace(pos_bboxes=jt.zeros((2, 4)), neg_bboxes=jt.zeros((1, 4)))]
    losses = head.loss(scores, deltas, jt.zeros((3, 5)), [dict(dataset_id=0)], results, labels, jt.ones(3),
                       jt.zeros((3, 4)), jt.zeros((3, 4)))
    assert set(losses) == {"loss_cls", "acc"}
    rois = jt.array(np.array([[0, 10, 20, 50, 60], [0, 5.5, 7.25, 30, 90], [0, 0, 0, 99, 99]], np.float32))
    boxes, _ = head.get_bboxes(rois, scores[0], deltas, (100, 100, 3), 1.0)
    np.testing.assert_allclose(boxes.numpy().reshape(3, -1)[:, :4], rois.numpy()[:, 1:], atol=1e-4)


def test_negative_sampler_excludes_zero_image_classes_and_caps_at_50():
    c = 200
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 5, size=c)
    sampler = UniformNegativeClassSampler(50, rng=1)
    for _ in range(20):
        appeared = np.zeros(c + 1, bool)
        appeared[rng.choice(c, 5, replace=False)] = True
        appeared[c] = True  # some RoIs are background
        eligible = np.append(counts > 0, True) & ~appeared
        mask = sampler(appeared, eligible)
        assert mask.shape == (c,) and mask.sum() <= 50
        assert mask[appeared[:c]].all()                              # every appeared class is used
        assert not (mask & (counts == 0) & ~appeared[:c]).any()      # zero-image classes never sampled
    many = np.zeros(c + 1, bool)
    many[:60] = True
    assert (sampler(many, ~many) == many[:c]).all()                  # >= 50 appeared: nothing drawn
    few = np.zeros(11, bool)
    few[0] = True
    assert sampler(few, ~few).sum() == 10                            # fewer eligible than 50: all of them


def test_sampled_bce_respects_cat_info(tmp_path):
    counts = [3, 0, 2, 0, 1, 4, 0, 0, 5]
    seen = []

    def sampler(appeared, eligible):
        seen.append(eligible.copy())
        return UniformNegativeClassSampler(50, rng=0)(appeared, eligible)

    head = partitioned_head(tmp_path, cat_freq=[None, cat_info(tmp_path, "b", counts)], neg_class_sampler=sampler)
    labels = np.array([2, head.num_classes, head.num_classes])
    head.sampled_bce(jt.randn(3, 10), labels, head.num_classes, head.image_counts[1], sampler)
    expected = np.append(np.array(counts) > 0, True)
    expected[2] = expected[9] = False  # appeared: class 2 and the background slot
    assert (seen[0] == expected).all()


def test_calibration_prior_smoothing_and_no_nan(tmp_path):
    raw = [[np.zeros((2, 5)), np.zeros((0, 5)), np.zeros((1, 5))],
           [np.zeros((3, 5)), np.zeros((0, 5)), np.zeros((0, 5))]]
    path = tmp_path / "raw.pkl"
    path.write_bytes(pickle.dumps(raw))
    assert class_counts_from_results(str(path)).tolist() == [5, 0, 1]
    prior = load_prior(str(path))                                   # default smoothing 10
    assert prior.tolist() == [15, 10, 11]
    w = calibration_weights(prior, 0.6)
    assert np.isfinite(w).all() and np.isclose(w.mean(), 1) and w[1] > w[2] > w[0]
    with pytest.raises(ValueError, match="smoothing"):
        calibration_weights(load_prior(str(path), smoothing=0), 0.6)   # zero count, no smoothing
    with pytest.raises(ValueError, match="classes"):
        load_prior(str(path), num_classes=4)

    # the inference head: calibrated, fused scores stay finite even for a class with zero detections
    head = BBoxHeadCLIPInference(in_channels=IN_CH, num_classes=3, zeroshot_path=embeddings(tmp_path, "e", 3, 0),
                                 withcalibration=True, resultfile=str(path), beta=0.3, gamma=0.6)
    logits = jt.randn(4, 4) * 10
    fused = head.fuse_scores(logits, jt.array(np.float32([0.9, 0.5, 0.1, 0.0]))).numpy()
    p = 1 / (1 + np.exp(-logits.numpy()))
    ref = (p * np.append(w, 1)) ** 0.3 * np.float32([0.9, 0.5, 0.1, 0.0])[:, None] ** 0.7
    assert np.isfinite(fused).all() and np.allclose(fused, ref, rtol=1e-5, atol=1e-6)
    # explicit weights override the head's prior (None = raw scores, as re-scoring cached regions uses)
    raw = head.fuse_scores(logits, jt.array(np.float32([0.9, 0.5, 0.1, 0.0])), calibration=None).numpy()
    assert np.allclose(raw, p ** 0.3 * np.float32([0.9, 0.5, 0.1, 0.0])[:, None] ** 0.7, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="2 class weights"):
        head.fuse_scores(logits, jt.array(np.float32([0.9, 0.5, 0.1, 0.0])), calibration=np.ones(2))


def test_calibrate_command(tmp_path, capsys):
    raw = [[np.zeros((4, 5)), np.zeros((0, 5))]]
    (tmp_path / "raw.pkl").write_bytes(pickle.dumps(raw))
    out = tmp_path / "prior.npy"
    assert main(["calibrate", str(tmp_path / "raw.pkl"), "--out", str(out), "--smoothing", "2"]) == 0
    assert np.load(out).tolist() == [6, 2]
    assert load_prior(str(out), smoothing=100).tolist() == [6, 2]   # a .npy prior is used as is
    assert main(["calibrate", "--from-cat-info", cat_info(tmp_path, "t", [3, 0, 1]), "--out", str(out)]) == 0
    assert np.load(out).tolist() == [13, 10, 11]
    assert main(["calibrate", str(tmp_path / "raw.pkl"), "--out", str(out), "--smoothing", "0"]) == 2
    assert "unidet calibrate: error: 1 of 2 classes have a zero prior" in capsys.readouterr().err


def test_vocabulary_swap_loads_every_weight_and_reports_embeddings(tmp_path):
    trained = partitioned_head(tmp_path)
    sd = {k: v.numpy() for k, v in trained.state_dict().items()}
    lvis = BBoxHeadCLIPInference(in_channels=IN_CH, num_classes=12, zeroshot_path=embeddings(tmp_path, "lvis", 12, 7))
    own = lvis.zs_weights.numpy().copy()
    report = load_state_dict(lvis, sd, strict=True)
    assert not report.missing and not report.unexpected and not report.mismatched
    assert sorted(report.loaded) == sorted(k for k in sd if not k.startswith("zs_weights"))
    assert report.embeddings_kept == ["zs_weights"]
    assert [k for k, _ in report.embeddings_replaced] == ["zs_weights_0", "zs_weights_1"]
    text = report.format()
    assert "kept the model's own zs_weights" in text and "zs_weights_0 (16, 7)" in text and "ERROR): 0" in text
    np.testing.assert_array_equal(lvis.zs_weights.numpy(), own)                  # own vocabulary kept
    np.testing.assert_array_equal(lvis.fc_reg.weight.numpy(), sd["fc_reg.weight"])  # weights loaded


def test_embedding_row_count_must_match_num_classes(tmp_path):
    with pytest.raises(ValueError, match="5 rows but the head has num_classes=7"):
        BBoxHeadCLIP(in_channels=IN_CH, num_classes=7, zeroshot_path=embeddings(tmp_path, "e", 5, 0))
    with pytest.raises(ValueError, match="largest vocabulary"):
        BBoxHeadCLIPPartitioned(in_channels=IN_CH, num_classes=8,
                                zeroshot_path=[embeddings(tmp_path, "a", 6, 0), embeddings(tmp_path, "b", 9, 1)])
    with pytest.raises(ValueError, match="lists 3 categories"):
        partitioned_head(tmp_path, cat_freq=[None, cat_info(tmp_path, "b", [1, 2, 3])])


def synthetic_batch(rng, num_classes=(6, 9)):
    """Two 96x128 images (datasets 0 and 1) with coloured boxes, GTs and jittered proposals."""
    img = np.zeros((2, 3, 96, 128), np.float32)
    metas, gt_bboxes, gt_labels, proposals = [], [], [], []
    for k in range(2):
        boxes, labels = [], []
        for _ in range(3):
            x1, y1 = rng.integers(0, 80), rng.integers(0, 50)
            w, h = rng.integers(24, 46, size=2)
            label = int(rng.integers(num_classes[k]))
            img[k, label % 3, y1:y1 + h, x1:x1 + w] = 2.0 + label / 3
            boxes.append([x1, y1, min(x1 + w, 128), min(y1 + h, 96)])
            labels.append(label)
        boxes = np.array(boxes, np.float32)
        jitter = rng.normal(0, 4, size=(20, 3, 4)).astype(np.float32)
        props = np.concatenate([(boxes[None] + jitter).reshape(-1, 4), rng.uniform(0, 90, size=(20, 4))], 0)
        props[:, 2:] = np.maximum(props[:, 2:], props[:, :2] + 4)
        metas.append(dict(img_shape=(96, 128), pad_shape=(96, 128), ori_shape=(96, 128), scale_factor=np.ones(4),
                          dataset_id=k))
        gt_bboxes.append(jt.array(boxes))
        gt_labels.append(jt.array(np.array(labels, np.int64)))
        proposals.append(jt.array(np.clip(props, 0, 96).astype(np.float32)))
    return jt.array(img), metas, gt_bboxes, gt_labels, proposals


def test_sgd_steps_decrease_partitioned_loss(tmp_path):
    from unidetector.config import load_config

    jt.set_global_seed(0)
    cfg = load_config("configs/synthetic/stage2_partitioned.py").model.to_dict()
    width = 8
    cfg["backbone"]["width"] = width
    cfg["roi_head"]["shared_head"]["width"] = width
    cfg["roi_head"]["bbox_roi_extractor"]["out_channels"] = width * 16
    cfg["roi_head"]["bbox_head"].update(
        in_channels=width * 32, num_classes=9, cat_freq_path=[None, None], with_reg=True,  # the official head
        zeroshot_path=[embeddings(tmp_path, "a", 6, 0), embeddings(tmp_path, "b", 9, 1)],
        neg_class_sampler=UniformNegativeClassSampler(50, rng=0))
    model = build(cfg, MODELS)
    model.train()
    img, metas, gt_bboxes, gt_labels, proposals = synthetic_batch(np.random.default_rng(0))
    # the official stage-2 recipe: effective lr 0.002, momentum 0.9, gradient clipping at 35
    optimizer = jt.optim.SGD([p for p in model.parameters() if not p.is_stop_grad()], lr=0.002, momentum=0.9)
    totals = []
    for _ in range(6):
        losses = model(img, metas, gt_bboxes=gt_bboxes, gt_labels=gt_labels, proposals=proposals)
        total = losses["loss_cls"] + losses["loss_bbox"]
        totals.append(total.item())
        optimizer.backward(total)
        optimizer.clip_grad_norm(35)
        optimizer.step()
    assert all(np.isfinite(totals)), totals
    assert totals[-1] < 0.8 * totals[0], totals

    model.eval()  # test mode on the same images: per-class results of the first vocabulary
    results = model(img, metas, proposals=proposals)
    assert len(results) == 2 and len(results[0]) == 9
    assert all(r.shape[1] == 5 for r in results[0])


def test_clip_resnet_norm_eval_switch():
    """Official: frozen BN statistics (EvalBatchNorm2d); ``norm_eval=False``: ordinary BN for training from
    scratch (running statistics move in training mode); the state-dict keys are the same."""
    import jittor as jt
    import numpy as np

    from unidetector.models.backbones import CLIPResNet
    from unidetector.models.layers import EvalBatchNorm2d
    from unidetector.models.roi_heads.shared_heads.clip_res_layer import CLIPResLayer

    official = CLIPResNet(layers=[1, 1, 1, 1], width=8)
    scratch = CLIPResNet(layers=[1, 1, 1, 1], width=8, frozen_stages=-1, norm_eval=False)
    assert isinstance(official.layer2[0].bn1, EvalBatchNorm2d)
    assert not isinstance(scratch.layer2[0].bn1, EvalBatchNorm2d)
    assert set(official.state_dict()) == set(scratch.state_dict())
    x = jt.array(np.random.default_rng(0).normal(3.0, 2.0, (2, 3, 64, 64)).astype(np.float32))
    for model in (official, scratch):
        model.train()
        model(x)[0].sync()
    assert np.allclose(official.bn1.running_mean.numpy(), 0)
    assert not np.allclose(scratch.bn1.running_mean.numpy(), 0)
    head = CLIPResLayer(layers=[1, 1, 1, 1], width=8, norm_eval=False)
    assert not isinstance(head.layer4[0].bn3, EvalBatchNorm2d)
    # frozen stages keep their running statistics with norm_eval=False too (mmdet's ResNet does the same)
    partly = CLIPResNet(layers=[1, 1, 1, 1], width=8, frozen_stages=1, norm_eval=False)
    assert [isinstance(m, EvalBatchNorm2d) for m in (partly.bn3, partly.layer1[0].bn1, partly.layer2[0].bn1)] == \
        [True, True, False]
    partly.train()
    partly(x)[0].sync()
    assert np.allclose(partly.layer1[0].bn1.running_mean.numpy(), 0)
    assert not np.allclose(partly.layer2[0].bn1.running_mean.numpy(), 0)
    assert partly.fixed_blocks() == 2  # the stem and layer1's block run as fixed functions


@pytest.mark.parametrize("norm_eval", [True, False])
def test_channels_last_inference_equals_nchw(norm_eval):
    """CPU inference runs the CLIP backbone and layer4 channels-last (no oneDNN reorders); the result
    equals the ordinary NCHW evaluation, odd sizes (floor average pools) included."""
    from unidetector.models.backbones import CLIPResNet
    from unidetector.models.layers import channels_last
    from unidetector.models.roi_heads.shared_heads.clip_res_layer import CLIPResLayer

    rng = np.random.default_rng(0)
    backbone = CLIPResNet(layers=[1, 2, 1, 2], width=16, norm_eval=norm_eval)
    head = CLIPResLayer(layers=[1, 2, 1, 2], width=16, norm_eval=norm_eval)
    for model in (backbone, head):
        model.eval()
        for name, value in model.state_dict().items():
            if "running_var" in name:
                value.assign(jt.array(rng.uniform(0.5, 2.0, value.shape).astype(np.float32)))
            elif "running_mean" in name or name.endswith("bn1.bias"):
                value.assign(jt.array(rng.normal(0, 0.5, value.shape).astype(np.float32)))
    image = jt.array(rng.normal(size=(2, 3, 70, 90)).astype(np.float32))
    rois = jt.array(rng.normal(size=(3, 256, 14, 13)).astype(np.float32))
    outputs = {}
    for fast in (False, True):
        channels_last.ENABLED = fast
        try:
            with jt.no_grad():
                assert channels_last.enabled(backbone) == (fast and jt.compile_extern.mkl_ops is not None)
                outputs[fast] = (backbone(image)[0].numpy(), head(rois).numpy())
        finally:
            channels_last.ENABLED = True
    assert outputs[True][0].shape == (2, 256, 4, 5) and outputs[True][1].shape == (3, 512, 7, 6)
    for got, want in zip(outputs[True], outputs[False]):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    with jt.no_grad():
        backbone.train()
        assert not channels_last.enabled(backbone)  # training mode: batch statistics, NCHW path
    with pytest.raises(TypeError, match="MaxPool2d"):
        channels_last.apply(jt.nn.MaxPool2d(2), jt.zeros((1, 4, 4, 8)))
    with pytest.raises(TypeError, match="kernel == stride"):
        channels_last.apply(jt.nn.AvgPool2d(3, stride=2, padding=1), jt.zeros((1, 4, 4, 8)))


@pytest.mark.parametrize("frozen_stages, norm_eval, fixed", [(1, True, 2), (2, True, 4), (3, True, 5),
                                                             (2, False, 4), (-1, False, 0), (-1, True, 0)])
def test_training_runs_fixed_blocks_channels_last_with_the_same_loss_and_gradients(frozen_stages, norm_eval, fixed):
    """In training, the frozen running-statistics blocks of the CLIP backbone (stem and layer1..k) run through the
    channels-last inference path without a backward graph and the others through the channels-last training
    layers (or NCHW with UNIDET_CHANNELS_LAST_TRAIN=0); the output, the gradients of the trainable parameters and the
    running statistics equal the ordinary NCHW training forward (UNIDET_CHANNELS_LAST=0). Batch-statistics BN is
    never 'fixed' (frozen stages keep running statistics also with norm_eval=False). The RoI head's layer4 likewise."""
    from unidetector.models.backbones import CLIPResNet
    from unidetector.models.layers import channels_last
    from unidetector.models.roi_heads.shared_heads import CLIPResLayer

    rng = np.random.default_rng(1)
    jt.set_global_seed(1)  # the weights' initialisation, whatever earlier tests left
    backbone = CLIPResNet(layers=[1, 2, 1, 1], width=16, frozen_stages=frozen_stages, norm_eval=norm_eval)
    for name, value in backbone.state_dict().items():
        if "running_var" in name:
            value.assign(jt.array(rng.uniform(0.5, 2.0, value.shape).astype(np.float32)))
        elif "running_mean" in name:
            value.assign(jt.array(rng.normal(0, 0.5, value.shape).astype(np.float32)))
    head = CLIPResLayer(layers=[1, 2, 1, 1], width=16, norm_eval=norm_eval)
    backbone.train()
    head.train()
    assert backbone.fixed_blocks() == fixed
    assert channels_last.fixed_enabled() == (jt.compile_extern.mkl_ops is not None)
    image = jt.array(rng.normal(size=(2, 3, 70, 90)).astype(np.float32))
    rois = jt.array(rng.normal(size=(3, 256, 8, 8)).astype(np.float32))
    weight = jt.array(rng.normal(size=(1, 256, 1, 1)).astype(np.float32))
    head_weight = jt.array(rng.normal(size=(1, 512, 1, 1)).astype(np.float32))
    trainable = [p for m in (backbone, head) for p in m.parameters() if not p.is_stop_grad()]
    start = {k: v.numpy().copy() for m in (backbone, head) for k, v in m.state_dict().items()}
    results = {}
    # (channels-last at all, for the trainable layers too): NCHW throughout; fixed blocks only; both
    for fast, train_too in ((False, False), (True, False), (True, True)):
        for m in (backbone, head):
            m.load_state_dict({k: jt.array(start[k]) for k in m.state_dict()})
        channels_last.ENABLED, channels_last.TRAIN_ENABLED = fast, train_too
        try:
            assert channels_last.train_enabled(head.layer4) == (train_too and jt.compile_extern.mkl_ops is not None)
            out, head_out = backbone(image)[0], head(rois)
            grads = jt.grad((out * weight).sum() + (head_out * head_weight).sum(), trainable + [rois])
            stats = [v.numpy() for m in (backbone, head) for k, v in m.state_dict().items() if "running" in k]
            results[fast, train_too] = [out.numpy(), head_out.numpy()] + [g.numpy() for g in grads] + stats
        finally:
            channels_last.ENABLED, channels_last.TRAIN_ENABLED = True, True
    for key in ((True, False), (True, True)):
        for i, (got, want) in enumerate(zip(results[key], results[False, False])):
            if fixed and not norm_eval and 2 <= i < 2 + len(trainable):
                # gradients through batch-statistics BN after the fused fixed blocks: the blocks' float32 rounding
                # (outputs equal to ~1e-5) moves normalised values across the ReLUs' 0, and each crossing changes a
                # position's share of a weight gradient discretely (measured: up to 1.4 % relative norm over 9 seeds).
                # Outputs and running statistics are compared elementwise below.
                assert np.linalg.norm(got - want) <= 5e-2 * np.linalg.norm(want), f"{key} {i}"
            else:
                np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max(), err_msg=f"{key} {i}")


def test_amp_runs_fixed_blocks_and_training_convolutions_in_bfloat16():
    """With bfloat16 training convolutions (``--amp`` on the CPU) the fixed blocks (here the whole C4 backbone) run
    their fused inference path in bfloat16 too, and the trainable layer4 convolves bfloat16 operands: outputs and
    gradients within bfloat16's rounding of float32's, and not float32's exactly."""
    from unidetector.models.backbones import CLIPResNet
    from unidetector.models.layers import channels_last
    from unidetector.models.roi_heads.shared_heads import CLIPResLayer
    from unidetector.ops import onednn

    if not (jt.compile_extern.mkl_ops is not None and onednn.bf16_supported()):
        pytest.skip("needs oneDNN and a processor with AMX / AVX-512-BF16 (elsewhere --amp trains in float32)")
    rng = np.random.default_rng(2)
    jt.set_global_seed(2)
    backbone = CLIPResNet(layers=[1, 1, 1, 1], width=16, frozen_stages=3, norm_eval=True)
    head = CLIPResLayer(layers=[1, 1, 1, 1], width=16, norm_eval=True)
    backbone.train()
    head.train()
    assert backbone.fixed_blocks() == 4
    image = jt.array(rng.normal(size=(2, 3, 64, 96)).astype(np.float32))
    rois = jt.array(rng.normal(size=(3, 256, 8, 8)).astype(np.float32))
    trainable = [p for p in head.parameters() if not p.is_stop_grad()]
    results = {}
    for dtype in ("float32", "bfloat16"):
        with channels_last.training_dtype(dtype):
            c4, out = backbone(image)[0], head(rois)
            grads = jt.grad((out * out).sum(), trainable)
            results[dtype] = [c4.numpy(), out.numpy()] + [g.numpy() for g in grads]
    for i, (got, want) in enumerate(zip(results["bfloat16"], results["float32"])):
        rel = np.linalg.norm(got - want) / np.linalg.norm(want)
        # weight gradients sum bfloat16 products over every position, with cancellation: measured up to 5.3 %
        assert 1e-5 < rel < (3e-2 if i < 2 else 1e-1), (i, rel)


def test_frozen_layer4_takes_no_gradient_but_passes_it_to_its_input():
    """``CLIPResLayer(frozen=True)`` (the synthetic stage 2's layer4): its parameters are left out of the optimiser,
    its output and the gradient it passes back to the RoI features equal the trainable layer's."""
    from unidetector.engine import build_optimizer
    from unidetector.models.roi_heads.shared_heads import CLIPResLayer

    rng = np.random.default_rng(2)
    frozen = CLIPResLayer(layers=[1, 1, 1, 2], width=8, frozen=True)
    trainable = CLIPResLayer(layers=[1, 1, 1, 2], width=8)
    trainable.load_state_dict({k: jt.array(v.numpy()) for k, v in frozen.state_dict().items()})
    assert all(p.is_stop_grad() for p in frozen.parameters())
    assert not any(p.is_stop_grad() for n, p in trainable.named_parameters() if "running" not in n)
    rois = jt.array(rng.normal(size=(3, 128, 8, 8)).astype(np.float32))
    weight = jt.array(rng.normal(size=(1, 256, 1, 1)).astype(np.float32))
    out = {}
    for name, head in (("frozen", frozen), ("trainable", trainable)):
        head.train()
        y = head(rois)
        out[name] = (y.numpy(), jt.grad((y * weight).sum(), rois).numpy())
    for got, want in zip(out["frozen"], out["trainable"]):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    with pytest.raises(ValueError, match="no trainable parameters"):
        build_optimizer(frozen, dict(type="AdamW", lr=0.001))
    # a frozen layer with batch statistics would still change: refused, naming the config key
    with pytest.raises(ConfigError, match=r"model\.roi_head\.shared_head: CLIPResLayer: frozen=True needs norm_eval"):
        build(dict(type="CLIPResLayer", layers=[1, 1, 1, 1], width=8, frozen=True, norm_eval=False), MODELS,
              key_path="model.roi_head.shared_head")


def _open_world_roi_head(tmp_path, num_classes=7, calibrated=False):
    """A small ``StandardRoIHead`` with CLIP layer4 and the open-world head (optionally calibrated)."""
    prior = tmp_path / "prior.npy"
    np.save(prior, np.arange(1, num_classes + 1, dtype=np.float64))
    cfg = dict(type="StandardRoIHead", with_proposal_score=True,
               bbox_roi_extractor=dict(type="SingleRoIExtractor", out_channels=IN_CH // 2, featmap_strides=[16],
                                       roi_layer=dict(type="RoIAlign", output_size=14, sampling_ratio=0, aligned=True)),
               shared_head=dict(type="CLIPResLayer", width=IN_CH // 32, layers=[1, 1, 1, 1],
                                norm_eval=False),
               bbox_head=dict(type="BBoxHeadCLIPInference", in_channels=IN_CH, num_classes=num_classes,
                              zeroshot_path=embeddings(tmp_path, "own", num_classes, 3), beta=0.3,
                              withcalibration=calibrated, resultfile=str(prior) if calibrated else None),
               test_cfg=dict(score_thr=0.0001, nms=dict(type="soft_nms", iou_threshold=0.5, method="gaussian",
                                                        sigma=0.5, min_score=1e-3), max_per_img=50))
    return build(cfg, MODELS, key_path="roi_head")


@pytest.mark.parametrize("calibrated", [False, True])
def test_one_scoring_path_simple_test_equals_region_embeddings_then_score(tmp_path, calibrated):
    """``simple_test`` is ``region_embeddings`` + ``score_regions`` with the head's own vocabulary and
    prior, equal to the head's plain forward + ``get_bboxes``; scoring the same regions with another
    vocabulary equals a head built with that vocabulary."""
    from unidetector.ops import bbox2roi

    rng = np.random.default_rng(0)
    head = _open_world_roi_head(tmp_path, calibrated=calibrated)
    head.eval()
    x = [jt.array(rng.normal(size=(2, IN_CH // 2, 24, 32)).astype(np.float32))]
    metas = [dict(img_shape=(384, 512, 3), scale_factor=np.float32([2, 2, 2, 2]), ori_shape=(192, 256, 3))] * 2
    props = []
    for n in (5, 3):
        xy = rng.uniform(0, 300, size=(n, 2))
        props.append(np.concatenate([xy, xy + rng.uniform(20, 150, size=(n, 2)), rng.uniform(0.1, 1, (n, 1))],
                                    1).astype(np.float32))
    with jt.no_grad():
        dets, labels = head.simple_test_bboxes(x, metas, props, head.test_cfg, rescale=True)
        regions = head.region_embeddings(x, props, metas)
        assert [len(r) for r in regions] == [5, 3] and regions[0].features.shape == (5, DIM)
        rois = bbox2roi([jt.array(p) for p in props])
        cls_score, bbox_pred = head.bbox_head(head.shared_head(head.bbox_roi_extractor(x, rois)))
        own = np.load(tmp_path / "own.npy")
        other = np.random.default_rng(9).normal(size=(4, DIM)).astype(np.float32)
        for i, (start, n) in enumerate(((0, 5), (5, 3))):
            rows = slice(start, start + n)
            ref = head.bbox_head.get_bboxes(rois[rows], (cls_score[rows], jt.array(props[i][:, 4])), bbox_pred[rows],
                                            metas[i]["img_shape"], metas[i]["scale_factor"], rescale=True,
                                            cfg=head.test_cfg)
            again = head.score_regions(regions[i], own, HEAD_PRIOR)
            for got in ((dets[i], labels[i]), again):
                np.testing.assert_allclose(got[0].numpy(), ref[0].numpy(), rtol=1e-5, atol=1e-4)
                np.testing.assert_array_equal(got[1].numpy(), ref[1].numpy())
            raw = head.score_regions(regions[i], own)          # calibration=None: raw scores
            if calibrated:   # the prior changes the detections
                r, c = raw[0].numpy(), ref[0].numpy()
                assert r.shape != c.shape or not np.allclose(r[:, 4], c[:, 4])
            # another vocabulary: the same as a head built with it (weights shared)
            np.save(tmp_path / "other.npy", other)
            swapped = head.score_regions(regions[i], other)
            built = BBoxHeadCLIPInference(in_channels=IN_CH, num_classes=4, zeroshot_path=str(tmp_path / "other.npy"))
            built.load_state_dict(head.bbox_head.state_dict())
            built.eval()
            ref2 = built.get_bboxes(rois[rows], (built(head.shared_head(head.bbox_roi_extractor(x, rois[rows])))[0],
                                                 jt.array(props[i][:, 4])), bbox_pred[rows], metas[i]["img_shape"],
                                    metas[i]["scale_factor"], rescale=True, cfg=head.test_cfg)
            np.testing.assert_allclose(swapped[0].numpy(), ref2[0].numpy(), rtol=1e-5, atol=1e-4)
            assert int(swapped[1].numpy().max(initial=0)) < 4
