"""The benchmarks' plain-PyTorch references compute what our Jittor networks compute (shared weights,
small sizes), so that the timed comparison in benchmarks/ is of the same work (issue 23)."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

import unidetector  # noqa: F401  (runtime bootstrap before jittor)

torch = pytest.importorskip("torch", reason="reference tests need PyTorch: pip install -e '.[reference]'")
import jittor as jt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


ref = _load("torch_reference")


def _close(got, want, rtol=1e-4, atol=1e-5, what=""):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} vs {want.shape}"
    err = np.abs(got - want).max() if got.size else 0.0
    assert err <= atol + rtol * np.abs(want).max(), f"{what}: max |diff| {err:.3g}, max |ref| {np.abs(want).max():.3g}"


def _randomise_batchnorms(model, seed=0):
    """Non-trivial running statistics and affine parameters in every Jittor BatchNorm."""
    rng = np.random.default_rng(seed)
    for m in model.modules():
        if isinstance(m, jt.nn.BatchNorm):
            n = m.weight.shape[0]
            m.weight.assign(jt.array((0.5 + rng.random(n)).astype(np.float32)))
            m.bias.assign(jt.array((0.1 * rng.standard_normal(n)).astype(np.float32)))
            m.running_mean.assign(jt.array((0.1 * rng.standard_normal(n)).astype(np.float32)))
            m.running_var.assign(jt.array((0.5 + rng.random(n)).astype(np.float32)))


def _rois(rng, k, h, w, batch=1):
    """Varied RoIs in input pixels: tiny, large, partly and fully outside the image, zero width."""
    xy = rng.uniform(-40, [w, h], size=(k, 2))
    wh = rng.uniform(0, [w * 0.8, h * 0.8], size=(k, 2)) * rng.choice([0.02, 0.3, 1.0], size=(k, 1))
    boxes = np.concatenate([xy, xy + wh], 1)
    boxes[0] = [5, 5, 5, 30]                                 # zero width: grid 0, exactly 0
    boxes[1] = [w + 50, h + 50, w + 90, h + 80]              # outside
    b = rng.integers(0, batch, size=(k, 1))
    return np.concatenate([b, boxes], 1).astype(np.float32)


@pytest.mark.parametrize("aligned,sampling_ratio", [(True, 0), (False, 0), (True, 2)])
def test_roi_align_reference_matches_ours(aligned, sampling_ratio):
    from unidetector.ops.roi_align import roi_align

    rng = np.random.default_rng(1)
    feat = rng.standard_normal((2, 6, 13, 17)).astype(np.float32)
    rois = _rois(rng, 40, 13 * 16, 17 * 16, batch=2)
    g = rng.standard_normal((len(rois), 6, 7, 7)).astype(np.float32)  # upstream gradient
    jt_feat = jt.array(feat)
    out = roi_align(jt_feat, jt.array(rois), 7, 1 / 16, sampling_ratio, aligned=aligned)
    got, got_grad = out.numpy(), jt.grad((out * jt.array(g)).sum(), jt_feat).numpy()
    t_feat = torch.from_numpy(feat).requires_grad_()
    t_out = ref.roi_align(t_feat, torch.from_numpy(rois), 7, 1 / 16, sampling_ratio, aligned)
    (t_out * torch.from_numpy(g)).sum().backward()
    want = t_out.detach().numpy()
    _close(got, want, rtol=1e-5, atol=1e-6, what="roi_align")
    _close(got_grad, t_feat.grad.numpy(), rtol=1e-5, atol=1e-6, what="roi_align backward")
    assert np.abs(want[1]).max() == 0                        # outside the map
    assert (np.abs(want[0]).max() == 0) == (aligned and sampling_ratio == 0)  # zero width: no samples


def _stage2_pair(width=8, classes=5, dim=16):
    """Our FastRCNN stage-2 network (CLIPResNet C4, RoIAlign 14, layer4, CLIP head) and the reference
    on the same weights."""
    import tempfile

    from unidetector.models import detectors  # noqa: F401
    from unidetector.registry import MODELS, build

    rng = np.random.default_rng(0)
    emb = rng.standard_normal((classes, dim)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/emb.npy"
        np.save(path, emb)
        jt.set_global_seed(0)
        ours = build(dict(
            type="FastRCNN", backbone=dict(type="CLIPResNet", layers=[1, 2, 1, 2], width=width),
            roi_head=dict(type="StandardRoIHead", with_proposal_score=True,
                          shared_head=dict(type="CLIPResLayer", layers=[1, 2, 1, 2], width=width),
                          bbox_roi_extractor=dict(type="SingleRoIExtractor", out_channels=width * 16,
                                                  roi_layer=dict(type="RoIAlign", output_size=14, sampling_ratio=0),
                                                  featmap_strides=[16]),
                          bbox_head=dict(type="BBoxHeadCLIPInference", in_channels=width * 32, roi_feat_size=7,
                                         num_classes=classes, zeroshot_path=path))), MODELS)
    ours.eval()
    _randomise_batchnorms(ours)
    for p in ours.roi_head.bbox_head.fc_reg.parameters():  # the head initialises it near zero
        p.assign(jt.array(rng.standard_normal(p.shape).astype(np.float32) * 0.1))
    theirs = ref.Stage2(emb, layers=(1, 2, 1, 2), width=width).eval()
    assert ref.load_jittor_weights(theirs, ours) == []
    return ours, theirs


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_stage2_reference_matches_ours_on_shared_weights():
    from unidetector.models.layers import channels_last
    from unidetector.ops import bbox2roi

    ours, theirs = _stage2_pair()
    rng = np.random.default_rng(2)
    h, w = 96, 128
    img = rng.standard_normal((1, 3, h, w)).astype(np.float32)
    rois = _rois(rng, 12, h, w)[2:]
    scores = rng.uniform(0.05, 1, size=len(rois)).astype(np.float32)
    head = ours.roi_head.bbox_head
    for nhwc in (True, False):  # the channels-last CPU inference path and the plain one
        channels_last.ENABLED, was = nhwc, channels_last.ENABLED
        try:
            with jt.no_grad():
                c4 = ours.extract_feat(jt.array(img))
                r = bbox2roi([jt.array(rois[:, 1:])])
                logits, deltas = head(ours.roi_head.shared_head(ours.roi_head.bbox_roi_extractor(c4, r)))
                fused = head.fuse_scores(logits, jt.array(scores), calibration=np.linspace(0.5, 2, 5))
                c4, logits, deltas, fused = c4[0].numpy(), logits.numpy(), deltas.numpy(), fused.numpy()
        finally:
            channels_last.ENABLED = was
        with torch.no_grad():
            t_c4 = theirs.backbone(torch.from_numpy(img))
            t_logits, t_deltas = theirs.roi_head(t_c4, torch.from_numpy(rois))
            t_fused = ref.fuse_scores(t_logits, torch.from_numpy(scores), np.linspace(0.5, 2, 5), beta=head.beta)
        _close(c4, t_c4.numpy(), what="C4")
        _close(logits, t_logits.numpy(), what="logits")
        _close(deltas, t_deltas.numpy(), what="deltas")
        _close(fused, t_fused.numpy(), what="fused scores")


# ----------------------------------------------------------------------------- training steps
train_step = _load("train_step")


def _grads_ours(model, losses, names):
    from unidetector.models.detectors import parse_losses

    params = dict(model.named_parameters())
    total, _ = parse_losses(losses)
    return dict(zip(names, (g.numpy() for g in jt.grad(total, [params[n] for n in names]))))


def _grads_ref(ref, ref_losses, names):
    params = dict(ref.named_parameters())
    for p in params.values():
        p.grad = None
    ref_module().total_loss(ref_losses).backward()
    return {n: params[n].grad.numpy() for n in names}


def ref_module():
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import torch_reference

    return torch_reference


def _check_training_equivalence(stage, cfg, model_fn, batch, grad_names):
    model, ref_kw = model_fn(cfg)
    _randomise_batchnorms(model, seed=3)
    img, metas, kw = train_step.model_inputs(*batch)
    model.train()
    ref = train_step.build_reference(stage, model, ref_kw)
    losses, targets = train_step.capture_targets(model, stage, img, metas, kw)
    ref_losses = ref.losses(torch.from_numpy(batch[0]), targets)
    ours_v, ref_v = train_step.loss_values(losses), train_step.loss_values(ref_losses)
    assert set(ours_v) == set(ref_v)
    for k in ref_v:
        assert abs(ours_v[k] - ref_v[k]) <= 1e-4 * max(abs(ref_v[k]), 1e-3), (k, ours_v[k], ref_v[k])
    assert any(abs(v) > 1e-3 for v in ref_v.values())
    got = _grads_ours(model, losses, grad_names)
    want = _grads_ref(ref, ref_losses, grad_names)
    for n in grad_names:
        _close(got[n], want[n], rtol=2e-3, atol=1e-7, what=f"grad {n}")
        assert np.abs(want[n]).max() > 0, n


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_stage1_training_reference_matches_ours():
    """The CLN (ResNet + FPN + OLN-RPN + OLN RoI head, batch-statistics BN) on our targets: every loss
    term and the gradients of the first and last layers equal ours."""
    cfg = train_step.stage1_config(False)
    b = cfg.model.backbone
    b.update(base_channels=8, stage_blocks=(1, 2, 1, 1))
    cfg.model.neck.update(in_channels=[32, 64, 128, 256], out_channels=16)
    cfg.model.rpn_head.update(in_channels=16, feat_channels=16)
    cfg.model.roi_head.bbox_roi_extractor.out_channels = 16
    cfg.model.roi_head.bbox_head.update(in_channels=16, fc_out_channels=32)
    jt.set_global_seed(0)
    np.random.seed(0)
    batch = train_step.random_batch(np.random.default_rng(0), 128, 160, classes=(1,))
    _check_training_equivalence("stage1", cfg, train_step.stage1_model, batch,
                                ["backbone.conv1.weight", "backbone.layer2.1.bn2.weight",
                                 "neck.fpn_convs.0.conv.weight",
                                 "rpn_head.rpn_conv.weight", "rpn_head.rpn_obj.bias",
                                 "roi_head.bbox_head.shared_fcs.0.weight", "roi_head.bbox_head.fc_bbox_score.weight"])


@pytest.mark.parametrize("norm_eval, frozen_layer4", [(False, False), (True, False), (True, True)])
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_stage2_training_reference_matches_ours(tmp_path, norm_eval, frozen_layer4):
    """The partitioned CLIP stage 2 (two vocabularies, sampled negative classes) on our targets: as officially
    (frozen stem + layer1, running statistics, layer4 trains), with layer4 frozen too (the synthetic stage 2's
    choice) and from scratch (nothing frozen, batch statistics)."""
    cfg = train_step.stage2_config(False, str(tmp_path), classes=(7, 5), dim=16, width=8, layers=(1, 2, 1, 2))
    cfg.model.backbone.update(frozen_stages=1 if norm_eval else -1, norm_eval=norm_eval)
    cfg.model.roi_head.shared_head.update(norm_eval=norm_eval, frozen=frozen_layer4)
    cfg.model.train_cfg.rcnn.sampler.num = 12
    jt.set_global_seed(0)
    np.random.seed(0)
    batch = train_step.random_batch(np.random.default_rng(1), 96, 128, classes=(7, 5), proposals=30)
    names = ["backbone.layer3.0.conv2.weight", "roi_head.bbox_head.attnpool.k_proj.weight",
             "roi_head.bbox_head.fc_reg.weight"]
    if not frozen_layer4:
        names.append("roi_head.shared_head.layer4.1.conv1.weight")
    if not norm_eval:
        names.append("backbone.conv1.weight")
    _check_training_equivalence("stage2", cfg, train_step.stage2_model, batch, names)
