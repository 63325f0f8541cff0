"""Stage 1 (CLN): configs build, a few SGD steps lower the losses on synthetic images, test mode returns
sorted (n, 5) proposals in original pixels, and ``unidet proposals`` writes a pickle aligned with the
unfiltered image list. Numerical parity with the official code is in the ``stage1_cln`` golden case."""
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

import unidetector  # noqa: F401  (runtime bootstrap before jittor)

jt = pytest.importorskip("jittor")

from unidetector.config import load_config  # noqa: E402
from unidetector.models.builder import build_detector  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SYNTH_CFG = ROOT / "configs" / "synthetic" / "stage1_cln.py"
REAL_CFG = ROOT / "configs" / "coco_objects365_1ststage_rpn.py"
# smaller images and fewer proposals keep the CPU test short
SMALL = {"data.train.0.pipeline.2.img_scale": [(256, 160), (256, 192)],
         "data.test.pipeline.1.img_scale": (256, 192)}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from unidetector.data.synthetic import generate_world

    out = tmp_path_factory.mktemp("synthetic")
    generate_world(str(out), seed=3, size="small", embed_dim=32)
    return out


def synth_cfg(world):
    cfg = load_config(SYNTH_CFG, dict(SMALL))
    for d in list(cfg.data.train) + [cfg.data.test]:  # point the datasets at the generated world
        d.ann_file = str(world / Path(d.ann_file).name)
        d.img_prefix = str(world / "images") + "/"
    return cfg


def batch(dataset, indices):
    from unidetector.data.loader import collate_detection

    b = collate_detection([dataset[i] for i in indices])
    out = dict(img=jt.array(b["img"]), img_metas=b["img_metas"])
    for key in ("gt_bboxes", "gt_labels"):
        if key in b:
            out[key] = [jt.array(np.asarray(a)) for a in b[key]]
    return out


def test_real_config_builds_with_official_names():
    cfg = load_config(REAL_CFG)
    model = build_detector(cfg.model)
    sd = model.state_dict()
    for key, shape in (("backbone.conv1.weight", (64, 3, 7, 7)), ("backbone.layer4.2.conv3.weight", (2048, 512, 1, 1)),
                       ("backbone.layer2.0.downsample.1.running_var", (512,)),
                       ("neck.lateral_convs.3.conv.weight", (256, 2048, 1, 1)), ("neck.fpn_convs.4.conv.bias", None),
                       ("rpn_head.rpn_obj.weight", (1, 256, 1, 1)), ("rpn_head.rpn_reg.weight", (4, 256, 1, 1)),
                       ("roi_head.bbox_head.shared_fcs.0.weight", (1024, 256 * 49)),
                       ("roi_head.bbox_head.fc_cls.weight", (2, 1024)), ("roi_head.bbox_head.fc_reg.weight", (4, 1024)),
                       ("roi_head.bbox_head.fc_bbox_score.weight", (1, 1024))):
        if shape is None:
            assert key not in sd  # FPN has 4 output convs; P6 is a max-pool
        else:
            assert tuple(sd[key].shape) == shape, key
    # frozen_stages=1: stem and layer1 get no gradients, layer2 does (BN affine included)
    assert sd["backbone.conv1.weight"].is_stop_grad() and sd["backbone.layer1.0.bn1.weight"].is_stop_grad()
    assert not sd["backbone.layer2.0.bn1.weight"].is_stop_grad()
    assert cfg.optimizer.lr == 0.02 and cfg.lr_config.step == [8, 11] and cfg.runner.max_epochs == 12
    assert all(d.class_agnostic for d in cfg.data.train)


def test_train_steps_lower_the_loss_and_test_mode(world):
    from unidetector.engine.runner import build_dataset
    from unidetector.models.detectors import parse_losses

    jt.set_global_seed(0)
    np.random.seed(0)
    cfg = synth_cfg(world)
    model = build_detector(cfg.model)
    train_set = build_dataset(cfg.data.train[0], "data.train.0")
    data = batch(train_set, [0, 1])
    assert all(int(l.numpy().max()) == 0 for l in data["gt_labels"])  # class_agnostic
    model.train()
    optimizer = jt.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    totals = []
    for _ in range(6):
        losses = model(**data)
        assert len(losses["loss_rpn_obj"]) == 5  # one RPN loss per FPN level
        total, log_vars = parse_losses(losses)
        values = {k: float(v.item()) for k, v in log_vars.items()}
        assert all(np.isfinite(v) for v in values.values()), values
        totals.append(values["loss"])
        optimizer.step(total)
    assert totals[-1] < totals[0], totals

    model.eval()
    test_set = build_dataset(cfg.data.test, "data.test", test_mode=True)
    data = batch(test_set, [0, 1])
    with jt.no_grad():
        results = model(data["img"], data["img_metas"], rescale=True)
    assert len(results) == 2
    max_per_img = cfg.model.test_cfg.rcnn.max_per_img
    for res, meta in zip(results, data["img_metas"]):
        assert isinstance(res, np.ndarray) and res.dtype == np.float32 and res.ndim == 2 and res.shape[1] == 5
        assert 0 < len(res) <= max_per_img
        assert (np.diff(res[:, 4]) <= 0).all()
        h, w = meta["ori_shape"][:2]
        assert res[:, 0].min() >= 0 and res[:, 2].max() <= w + 1e-3 and res[:, 3].max() <= h + 1e-3
        assert ((res[:, 4] > 0) & (res[:, 4] <= 1)).all()


def test_proposals_command_writes_aligned_pickle(world, tmp_path, capsys):
    from unidetector.cli import main

    cfg = synth_cfg(world)
    model = build_detector(cfg.model)
    ckpt = tmp_path / "cln.pkl"
    with open(ckpt, "wb") as f:
        pickle.dump({"state_dict": {k: v.numpy() for k, v in model.state_dict().items()}}, f)
    # 3 images, the middle one without annotations: the pickle must still have 3 entries in file order
    data = json.loads((world / "val_lvis.json").read_text())
    images = data["images"][:3]
    keep = {images[0]["id"], images[2]["id"]}
    data = dict(data, images=images, annotations=[a for a in data["annotations"] if a["image_id"] in keep])
    ann = tmp_path / "three.json"
    ann.write_text(json.dumps(data))
    out = tmp_path / "rp.pkl"
    rc = main(["proposals", str(SYNTH_CFG), str(ckpt), "--ann", str(ann), "--img-dir", str(world / "images"),
               "--out", str(out), "--no-progress", "--cfg-options", "data.test.pipeline.1.img_scale=(256,192)"])
    assert rc == 0
    with open(out, "rb") as f:
        props = pickle.load(f)
    assert isinstance(props, list) and len(props) == 3
    for p, img in zip(props, images):
        assert p.dtype == np.float32 and p.ndim == 2 and p.shape[1] == 5
        assert (np.diff(p[:, 4]) <= 0).all()
        assert p[:, 2].max(initial=0) <= img["width"] + 1e-3 and p[:, 3].max(initial=0) <= img["height"] + 1e-3
    assert "AR@100" in capsys.readouterr().out


def test_resnet_stage_blocks_override_depth():
    import pytest

    from unidetector.models.backbones import ResNet

    net = ResNet(depth=50, base_channels=8, stage_blocks=(1, 2, 1, 1), norm_eval=False)
    assert [len(getattr(net, f"layer{i}")) for i in range(1, 5)] == [1, 2, 1, 1]
    assert [len(getattr(ResNet(depth=50, base_channels=8), f"layer{i}")) for i in range(1, 5)] == [3, 4, 6, 3]
    with pytest.raises(ValueError, match="stage_blocks"):
        ResNet(depth=50, base_channels=8, stage_blocks=(1, 0, 1, 1))


@pytest.mark.parametrize("frozen_stages, norm_eval, fixed", [(-1, False, 0), (1, True, 2), (2, True, 4),
                                                             (1, False, 2)])
def test_resnet_and_fpn_channels_last_equal_nchw_in_training_and_inference(frozen_stages, norm_eval, fixed):
    """The stage-1 ResNet's residual stages run channels-last on the CPU (frozen running-statistics blocks without a
    backward graph, the others through the differentiable channels-last layers), and the FPN's and the RPN head's
    convolutions through oneDNN on channels-last copies: every stage output, the pyramid and RPN outputs, the
    gradients of every trainable parameter and the running statistics equal the NCHW path (UNIDET_CHANNELS_LAST=0),
    with the layers trained channels-last or (UNIDET_CHANNELS_LAST_TRAIN=0) NCHW; in inference likewise. Frozen
    stages use running statistics also without norm_eval (mmdet), so they are 'fixed' either way."""
    from unidetector.models.layers import channels_last

    rng = np.random.default_rng(2)
    cfg = load_config(SYNTH_CFG, {
        "model.backbone": dict(base_channels=8, stage_blocks=(2, 2, 1, 1), frozen_stages=frozen_stages,
                               norm_eval=norm_eval, zero_init_residual=False),
        "model.neck": dict(in_channels=[32, 64, 128, 256], out_channels=16),
        "model.rpn_head": dict(in_channels=16, feat_channels=16)})
    model = build_detector(cfg.model)
    backbone, neck, head = model.backbone, model.neck, model.rpn_head
    for name, value in backbone.state_dict().items():
        if "running_var" in name:
            value.assign(jt.array(rng.uniform(0.5, 2.0, value.shape).astype(np.float32)))
        elif "running_mean" in name:
            value.assign(jt.array(rng.normal(0, 0.5, value.shape).astype(np.float32)))
    modules = (backbone, neck, head)
    trainable = [p for m in modules for p in m.parameters() if not p.is_stop_grad()]
    start = {(i, k): v.numpy().copy() for i, m in enumerate(modules) for k, v in m.state_dict().items()}
    image = jt.array(rng.normal(size=(2, 3, 96, 128)).astype(np.float32))

    def run(training: bool, rng) -> list:
        for i, m in enumerate(modules):
            m.load_state_dict({k: jt.array(start[i, k]) for k in m.state_dict()})
            m.train() if training else m.eval()
        if training:
            assert channels_last.leading_fixed([(b,) for b in backbone.blocks()]) == fixed
        feats = backbone(image)
        pyramid = neck(feats)
        cls, reg, obj = head(pyramid)
        outs = list(feats) + list(pyramid) + list(reg) + list(obj)
        if not training:
            return [o.numpy() for o in outs]
        weights = [jt.array(rng.normal(size=o.shape).astype(np.float32)) for o in outs]
        grads = jt.grad(sum((o * w).sum() for o, w in zip(outs, weights)), trainable)
        stats = [v.numpy() for m in modules for k, v in m.state_dict().items() if "running" in k]
        return [o.numpy() for o in outs] + [g.numpy() for g in grads] + stats

    results = {}
    for training in (True, False):
        for fast, train_too in ((False, False), (True, False), (True, True)):
            channels_last.ENABLED, channels_last.TRAIN_ENABLED = fast, train_too
            try:
                if training:
                    results[training, fast, train_too] = run(True, np.random.default_rng(3))  # same loss weights
                    assert channels_last.train_enabled(*backbone.blocks()[fixed:], neck.fpn_convs[0].conv) == (
                        fast and train_too and jt.compile_extern.mkl_ops is not None)
                else:
                    with jt.no_grad():
                        results[training, fast, train_too] = run(False, None)
                        assert channels_last.enabled(backbone) == (fast and jt.compile_extern.mkl_ops is not None)
            finally:
                channels_last.ENABLED, channels_last.TRAIN_ENABLED = True, True
    for (training, fast, train_too), got in results.items():
        want = results[training, False, False]
        assert len(got) == len(want) > 10
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4 * np.abs(w).max(),
                                       err_msg=str((training, fast, train_too)))
