"""From the official model zoo to detections on photos (issue 24), with small files in the official formats.

Built here, as the official tools write them: reduced-width stage-1 (CLN), stage-2 (partitioned CLIP RoI
head) and end-to-end (CLIP C4 + RPNHead + CLIP RoI head) models saved the way mmcv's ``save_checkpoint``
does (``torch.save`` of ``{'meta': {config text, CLASSES, ...}, 'state_dict', 'optimizer': SGD state}``),
and a CLIP (text + image towers) ``torch.jit.trace``d with fp16 weights, as OpenAI's ``RN50.pt``. Its
visual tower is the detectors' backbone, so region and text embeddings share one space (D = 32).
Everything runs through the CLI in a folder without the configs' training files (``./clip_embeddings``,
cat-info json), as a user with only the downloaded files would.
"""
import json
import os
import pickle
import shutil
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

import unidetector  # noqa: F401  (runtime bootstrap before jittor)
from unidetector.cli import main

torch = pytest.importorskip("torch", reason="writing official-format checkpoints needs PyTorch: "
                                           "pip install -e '.[reference]'")

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore:Converting a tensor to a Python boolean")

REPO = Path(__file__).resolve().parents[1]
D = 32           # text / region embedding dimension of the tiny CLIP
WIDTH = 8        # CLIP ResNet width (RN50: 64): C4 = 128, C5 = 256 channels
SCALE = (320, 240)
CLASSES = ["red box", "green box", "blue box"]


# ------------------------------------------------------------------ official-format files
def _set_test_scale(cfg, scale=SCALE):
    for pipeline in (cfg.data.test.pipeline, cfg.get("test_pipeline") or []):
        for t in pipeline:
            if t["type"] == "MultiScaleFlipAug":
                t["img_scale"] = scale


def tiny_stage2_config():
    """configs/coco_objects365_2ndstage_roi.py at reduced width (its zeroshot_path / cat_freq_path files
    stay the official names, absent here)."""
    from unidetector.config import load_config

    cfg = load_config(REPO / "configs" / "coco_objects365_2ndstage_roi.py", {
        "model.backbone.width": WIDTH, "model.backbone.layers": [1, 1, 1, 1],
        "model.roi_head.shared_head.width": WIDTH, "model.roi_head.shared_head.layers": [1, 1, 1, 1],
        "model.roi_head.bbox_roi_extractor.out_channels": WIDTH * 16,
        "model.roi_head.bbox_head.in_channels": WIDTH * 32})
    _set_test_scale(cfg)
    return cfg


def tiny_end2end_config():
    """The official end-to-end model (clip_end2end_faster_rcnn_r50_c4_1x_coco.py: FasterRCNN, RPNHead on C4,
    BBoxHeadCLIP) at reduced width, fewer RPN proposals."""
    from unidetector.config import Config

    base = tiny_stage2_config().to_dict()
    model = base["model"]
    model["type"] = "FasterRCNN"
    model["rpn_head"] = dict(
        type="RPNHead", in_channels=WIDTH * 16, feat_channels=32,
        anchor_generator=dict(type="AnchorGenerator", scales=[2, 4, 8, 16, 32], ratios=[0.5, 1.0, 2.0], strides=[16]),
        bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[1.0] * 4),
        loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0),
        loss_bbox=dict(type="L1Loss", loss_weight=1.0))
    head = model["roi_head"]["bbox_head"]
    head.update(type="BBoxHeadCLIP", zeroshot_path="./clip_embeddings/coco_clip_a+cname_rn50_manyprompt.npy",
                num_classes=80)
    for key in ("cat_freq_path", "fed_loss_num_cat"):
        head.pop(key, None)
    model["train_cfg"]["rpn"] = dict(
        assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3,
                      match_low_quality=True, ignore_iof_thr=-1),
        sampler=dict(type="RandomSampler", num=256, pos_fraction=0.5, neg_pos_ub=-1, add_gt_as_proposals=False),
        allowed_border=0, pos_weight=-1, debug=False)
    model["train_cfg"]["rpn_proposal"] = dict(nms_pre=1200, max_per_img=200, nms=dict(type="nms", iou_threshold=0.7),
                                              min_bbox_size=0)
    model["test_cfg"]["rpn"] = dict(nms_pre=600, max_per_img=120, nms=dict(type="nms", iou_threshold=0.7),
                                    min_bbox_size=0)
    test_pipeline = [t for t in base["test_pipeline"] if t["type"] != "LoadProposals"]
    inner = test_pipeline[-1]["transforms"]
    test_pipeline[-1]["transforms"] = [t for t in inner if t["type"] not in ("ToTensor", "ToDataContainer")]
    test_pipeline[-1]["transforms"][-1]["keys"] = ["img"]
    base["test_pipeline"] = test_pipeline
    test = dict(base["data"]["test"], pipeline=test_pipeline)
    test.pop("proposal_file", None)
    base["data"] = dict(samples_per_gpu=2, workers_per_gpu=2, test=test)
    return Config(base)


def tiny_stage1_config():
    """configs/coco_objects365_1ststage_rpn.py at the widths of configs/synthetic/stage1_cln.py."""
    from unidetector.config import load_config

    cfg = load_config(REPO / "configs" / "coco_objects365_1ststage_rpn.py", {
        "model.backbone.base_channels": 16, "model.neck.in_channels": [64, 128, 256, 512],
        "model.neck.out_channels": 64, "model.rpn_head.in_channels": 64, "model.rpn_head.feat_channels": 64,
        "model.roi_head.bbox_roi_extractor.out_channels": 64, "model.roi_head.bbox_head.in_channels": 64,
        "model.roi_head.bbox_head.fc_out_channels": 256, "model.test_cfg.rpn.nms_pre": 300,
        "model.test_cfg.rcnn.max_per_img": 300})
    _set_test_scale(cfg)
    return cfg


def tiny_clip():
    """OpenAI's CLIP (ModifiedResNet + text transformer) at reduced size: embed 32, width 8, 224-px attention
    pool (7 x 7, as the RoI features), text width 64, 1 layer."""
    from clip_reference import load_reference

    ref = load_reference("model")
    torch.manual_seed(0)
    model = ref.CLIP(D, 224, (1, 1, 1, 1), WIDTH, None, 77, 49408, 64, 1, 1).eval()
    g = torch.Generator().manual_seed(1)
    for m in model.modules():  # non-trivial frozen BN statistics, as in a trained CLIP
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.data = 0.1 * torch.randn(m.num_features, generator=g)
            m.running_var.data = 0.5 + torch.rand(m.num_features, generator=g)
    return ref, model


def save_openai_clip(ref, model, path):
    """``torch.jit.trace`` + ``torch.jit.save`` with fp16 weights (OpenAI's ``RN50.pt``); returns the float
    model with the same (fp16-rounded) weights, the reference for the text embeddings."""
    from unidetector.text.tokenizer import tokenize

    ref.convert_weights(model)
    with torch.no_grad():
        traced = torch.jit.trace_module(model, {"encode_text": torch.from_numpy(tokenize("a photo of a box."))},
                                        check_trace=False)
    torch.jit.save(traced, str(path))
    return model.float()


def clip_detector_weights(visual_sd, rng, partitioned: bool):
    """Official stage-2 / end-to-end key names from CLIP's visual tower (RegionCLIP's mapping), plus a
    box regression and CLIP-like training embeddings (row norms ~10)."""
    from clip_reference import detector_keys

    sd = OrderedDict(detector_keys(visual_sd))
    sd["roi_head.bbox_head.fc_reg.weight"] = torch.from_numpy(0.01 * rng.standard_normal((4, D)).astype(np.float32))
    sd["roi_head.bbox_head.fc_reg.bias"] = torch.zeros(4)
    zs = {"zs_weights_0": 81, "zs_weights_1": 366} if partitioned else {"zs_weights": 81}
    for name, cols in zs.items():
        w = rng.standard_normal((D, cols)).astype(np.float32) * (10 / np.sqrt(D))
        w[:, -1] = 0
        sd["roi_head.bbox_head." + name] = torch.from_numpy(w)
    return sd


def jittor_weights(cfg):
    """Official-named weights of our model of the config ``cfg`` (random init, seeded: the same whatever seed earlier
    tests left), as torch tensors."""
    import jittor as jt

    from unidetector.engine.runner import build_model

    jt.set_global_seed(0)
    model = build_model(cfg)
    return OrderedDict((k, torch.from_numpy(np.ascontiguousarray(v.numpy()))) for k, v in model.state_dict().items())


def save_mmcv_checkpoint(path, state_dict, cfg_text, classes, epoch=12):
    """``mmcv.runner.save_checkpoint`` as mmdet 2.18's ``train_detector`` calls it: meta with the config
    text, CLASSES (a tuple), versions, env info; the state dict; the SGD optimizer state."""
    params = [torch.nn.Parameter(v.clone().float()) for k, v in state_dict.items()
              if v.is_floating_point() and "running_" not in k and "zs_weights" not in k]
    opt = torch.optim.SGD(params, lr=0.02, momentum=0.9, weight_decay=0.0001)
    for p in params:
        p.grad = torch.full_like(p, 1e-3)
    opt.step()
    meta = dict(env_info="sys.platform: linux\nPython: 3.7.11\nPyTorch: 1.9.0", config=cfg_text, seed=0,
                exp_name="official_config.py", mmdet_version="2.18.0e7a3737", CLASSES=tuple(classes),
                epoch=epoch, iter=epoch * 7330, mmcv_version="1.3.17", time="Tue Nov 16 10:00:00 2021")
    torch.save({"meta": meta, "state_dict": state_dict, "optimizer": opt.state_dict()}, str(path))
    return path


def photo(path, seed=0):
    """A 160 x 120 'photo' with coloured boxes on a textured background."""
    import cv2

    rng = np.random.default_rng(seed)
    img = (rng.integers(90, 160, (120, 160, 3))).astype(np.uint8)
    for (x, y, w, h), colour in zip([(10, 15, 40, 30), (70, 50, 50, 45), (120, 10, 30, 60)],
                                    [(0, 0, 220), (0, 200, 0), (230, 0, 0)]):
        img[y:y + h, x:x + w] = colour
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)
    return str(path)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """The official-format files, built once: RN50.pt (tiny), stage1.pth, stage2.pth, end2end.pth,
    two photos, and the float reference CLIP."""
    from unidetector.text.vocab import builtin_vocabulary

    root = tmp_path_factory.mktemp("zoo")
    ref, model = tiny_clip()
    rn50 = root / "RN50.pt"
    model = save_openai_clip(ref, model, rn50)
    visual = {k: v.clone() for k, v in model.visual.state_dict().items()}  # fp16-rounded, as in RN50.pt
    rng = np.random.default_rng(0)
    coco = builtin_vocabulary("coco")

    stage2_cfg = tiny_stage2_config()
    stage2 = save_mmcv_checkpoint(root / "stage2.pth", clip_detector_weights(visual, rng, True),
                                  stage2_cfg.pretty_text, coco)
    e2e_cfg = tiny_end2end_config()
    sd = clip_detector_weights(visual, rng, False)
    torch.manual_seed(2)
    a = 15  # anchors per location
    for name, shape in (("rpn_conv", (32, WIDTH * 16, 3, 3)), ("rpn_cls", (a, 32, 1, 1)),
                        ("rpn_reg", (4 * a, 32, 1, 1))):
        sd[f"rpn_head.{name}.weight"] = 0.05 * torch.randn(shape)
        sd[f"rpn_head.{name}.bias"] = 0.01 * torch.randn(shape[0])
    end2end = save_mmcv_checkpoint(root / "end2end.pth", sd, e2e_cfg.pretty_text, coco)
    stage1_cfg = tiny_stage1_config()
    stage1 = save_mmcv_checkpoint(root / "stage1.pth", jittor_weights(stage1_cfg), stage1_cfg.pretty_text,
                                  coco)
    (root / "tiny_stage2.py").write_text(
        f"_base_ = [{str(REPO / 'configs' / 'coco_objects365_2ndstage_roi.py')!r}]\n" + "\n".join(
            f"{k} = {v!r}" for k, v in (("model", stage2_cfg.to_dict()["model"]),
                                        ("data", stage2_cfg.to_dict()["data"]))) + "\n")
    return dict(root=root, rn50=str(rn50), clip=model, stage1=str(stage1), stage2=str(stage2),
                end2end=str(end2end), photos=[photo(root / "photos" / "a.jpg", 0), photo(root / "photos" / "b.jpg", 1)],
                stage2_cfg=str(root / "tiny_stage2.py"), e2e_text=e2e_cfg.pretty_text)


@pytest.fixture(autouse=True)
def _user_folder(tmp_path, monkeypatch, tmp_path_factory):
    """Run in an empty folder (no ./clip_embeddings, no data/): only the downloaded files exist; one
    embedding cache for the module."""
    cwd = tmp_path / "user"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("UNIDET_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "zoo_cache"))


def run(capsys, *args):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def detections(out_dir, image) -> list:
    return json.loads((Path(out_dir) / f"{Path(image).stem}.json").read_text())["detections"]


def reference_embeddings(model, names, templates=None):
    """OpenAI's encode_text, mean over the prompt templates (the official embedding script)."""
    from unidetector.text.templates import TEMPLATES
    from unidetector.text.tokenizer import tokenize

    with torch.no_grad():
        return np.stack([model.encode_text(torch.from_numpy(tokenize([t.format(n) for t in templates or TEMPLATES])))
                         .mean(0).numpy() for n in names])


# ------------------------------------------------------------------ decoupled: stage 2 + stage 1
def test_convert_keeps_config_and_classes_then_detect(zoo, tmp_path, capsys):
    """Issue 24.1/24.4: `convert` checks every key against the model of the stored config (without its
    training files), keeps meta['config'] and CLASSES; `detect` then needs no --config, and the .pth files
    give the same detections directly."""
    from unidetector.convert.checkpoints import read_checkpoint_and_meta
    from unidetector.text.vocab import builtin_vocabulary

    s2, s1 = tmp_path / "stage2.pkl", tmp_path / "stage1.pkl"
    for src, dst, kind in ((zoo["stage2"], s2, "a stage-2 (CLIP RoI classifier) checkpoint"),
                           (zoo["stage1"], s1, "a stage-1 (proposal network) checkpoint")):
        code, out, err = run(capsys, "convert", src, dst)
        assert code == 0, err + out
        assert f"{src} is {kind}" in out and "checked against the whole model of the config stored" in out
        assert "missing: 0" in out and "unexpected: 0" in out and "meta kept: config, CLASSES" in out
        with open(dst, "rb") as f:
            meta = pickle.load(f)["meta"]
        pth_meta = read_checkpoint_and_meta(src)[1]
        assert meta["config"] == pth_meta["config"] and meta["CLASSES"] == builtin_vocabulary("coco")
        assert meta["epoch"] == 12 and meta["format"] == "mmdet" and "optimizer" not in meta
    assert not Path("clip_embeddings").exists()  # built without the training embeddings

    args = ["--classes", ",".join(CLASSES), "--encoder", f"clip:{zoo['rn50']}", "--score-thr", "0"]
    code, out, err = run(capsys, "detect", *zoo["photos"], "--checkpoint", s2, "--proposal-checkpoint", s1,
                         "--out", tmp_path / "pkl", *args)
    assert code == 0, err
    assert "stage-2 checkpoint, stage-1 proposals, top 100; beta 0.3; up to 100 detections per image" in out
    code, out, err = run(capsys, "detect", *zoo["photos"], "--checkpoint", zoo["stage2"], "--proposal-checkpoint",
                         zoo["stage1"], "--out", tmp_path / "pth", *args)
    assert code == 0, err
    for image in zoo["photos"]:
        a, b = detections(tmp_path / "pkl", image), detections(tmp_path / "pth", image)
        assert len(a) > 0 and a == b
        assert {d["class_name"] for d in a} <= set(CLASSES)


# ------------------------------------------------------------------ end-to-end
def test_end_to_end_checkpoint_makes_its_own_proposals(zoo, tmp_path, capsys):
    """Issue 24.2: an end-to-end checkpoint is named as such and detects on its own (one backbone pass
    for RPN and RoI head), with the official end-to-end scoring (sigmoid only); the result equals the
    model's own forward (RPN test proposals -> StandardRoIHead -> soft-NMS)."""
    import cv2
    import jittor as jt

    from unidetector import Detector
    from unidetector.models.roi_heads.bbox_heads.bbox_head_clip import classifier_weights

    e2e = tmp_path / "end2end.pkl"
    code, out, err = run(capsys, "convert", zoo["end2end"], e2e)
    assert code == 0, err + out
    assert "is an end-to-end checkpoint (CLIP C4 backbone + RPNHead + CLIP RoI head)" in out
    assert "missing: 0" in out and "unexpected: 0" in out and "stage-1" not in out
    image = zoo["photos"][0]
    code, out, err = run(capsys, "detect", image, "--classes", ",".join(CLASSES), "--checkpoint", e2e,
                         "--encoder", f"clip:{zoo['rn50']}", "--score-thr", "0", "--out", tmp_path / "out")
    assert code == 0, err
    assert "end-to-end checkpoint, proposals from its own RPN, top 120; beta 1;" in out  # its rpn max_per_img
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["kind"] == "end2end" and summary["beta"] == 1.0 and summary["num_proposals"] == 120
    cli = detections(tmp_path / "out", image)
    assert len(cli) > 0

    det = Detector.from_checkpoint(zoo["end2end"], classes=CLASSES, encoder=f"clip:{zoo['rn50']}", score_thr=0)
    assert det.own_proposals and det.kind == "end2end"
    d = det.detect(image)
    assert [x["class_name"] for x in cli] == d.names
    np.testing.assert_allclose([x["score"] for x in cli], d.scores, atol=1e-6)
    rgb = cv2.cvtColor(cv2.imread(image), cv2.COLOR_BGR2RGB)
    props = det.propose(rgb)

    model, head = det.model, det.model.roi_head.bbox_head
    head.zs_weights = classifier_weights(det.embeddings(CLASSES))
    head.num_classes = len(CLASSES)
    batch = det._prepare(det.proposal_pipeline, rgb, image)
    with jt.no_grad():
        x = model.extract_feat(jt.array(batch["img"]))
        rpn = model.rpn_head.simple_test_rpn(x, batch["img_metas"])
        bboxes, labels = model.roi_head.simple_test_bboxes(x, batch["img_metas"], rpn, model.roi_head.test_cfg,
                                                           rescale=True)
    assert props.shape == (rpn[0].shape[0], 5) and 0 < props.shape[0] <= 120
    scale = np.asarray(batch["img_metas"][0]["scale_factor"], np.float32)[:4]
    np.testing.assert_allclose(props[:, :4] * scale, rpn[0].numpy()[:, :4], atol=1e-3)  # original pixels
    ref = bboxes[0].numpy()
    order = np.argsort(-ref[:, 4], kind="stable")
    np.testing.assert_allclose(ref[order, 4], d.scores, atol=1e-5)
    np.testing.assert_allclose(np.clip(ref[order, :4], 0, [rgb.shape[1], rgb.shape[0]] * 2), d.boxes, atol=1e-3)
    assert sorted(labels[0].numpy().tolist()) == sorted(d.labels.tolist())


# ------------------------------------------------------------------ text embeddings
def test_embed_then_detect_with_precomputed_embeddings(zoo, tmp_path, capsys):
    """Issue 24.3: `unidet embed` with the traced fp16 RN50.pt reproduces the official embedding recipe;
    its .npy (and a float16 copy, as the official clip_embeddings/*.npy) is used by `detect --embeddings`
    without --encoder, with the same detections as encoding the names; wrong files name themselves."""
    npy = tmp_path / "boxes.npy"
    code, out, err = run(capsys, "embed", "--classes", ",".join(CLASSES), "--encoder", f"clip:{zoo['rn50']}",
                         "--out", npy)
    assert code == 0, err
    emb = np.load(npy)
    np.testing.assert_allclose(emb, reference_embeddings(zoo["clip"], CLASSES), rtol=1e-4, atol=1e-5)
    np.save(tmp_path / "boxes_fp16.npy", emb.astype(np.float16))

    base = [zoo["photos"][0], "--classes", ",".join(CLASSES), "--checkpoint", zoo["stage2"],
            "--proposal-checkpoint", zoo["stage1"], "--score-thr", "0", "--no-draw"]
    code, out, err = run(capsys, "detect", *base, "--embeddings", tmp_path / "boxes_fp16.npy", "--out", tmp_path / "a")
    assert code == 0, err
    assert "no text encoder (precomputed embeddings only)" in out and "warning" not in err
    code, out, err = run(capsys, "detect", *base, "--encoder", f"clip:{zoo['rn50']}", "--out", tmp_path / "b")
    assert code == 0, err
    # the same detections; with random weights many scores tie to 1e-4, and the fp16 rows may reorder those ties
    a_raw = detections(tmp_path / "a", zoo["photos"][0])
    a, b = (sorted(dets, key=lambda x: (x["class_name"], *np.round(x["bbox"], 1)))
            for dets in (a_raw, detections(tmp_path / "b", zoo["photos"][0])))
    assert [x["class_name"] for x in a] == [x["class_name"] for x in b] and len(a) > 0
    np.testing.assert_allclose([x["bbox"] for x in a], [x["bbox"] for x in b], atol=1e-3)
    np.testing.assert_allclose([x["score"] for x in a], [x["score"] for x in b], atol=2e-3)  # fp16 rows

    # an annotation json as the vocabulary: its categories by id, the row order of the official files
    ann = tmp_path / "val.json"
    ann.write_text(json.dumps({"categories": [{"id": 7, "name": CLASSES[2]}, {"id": 1, "name": CLASSES[0]},
                                              {"id": 3, "name": CLASSES[1]}]}))
    code, out, err = run(capsys, "detect", *base[:1], *base[3:], "--vocab", ann, "--embeddings",
                         tmp_path / "boxes_fp16.npy", "--out", tmp_path / "json_vocab")
    assert code == 0, err
    assert detections(tmp_path / "json_vocab", zoo["photos"][0]) == a_raw

    np.save(tmp_path / "two.npy", emb[:2])
    code, out, err = run(capsys, "detect", *base, "--embeddings", tmp_path / "two.npy", "--out", tmp_path / "c")
    assert code == 2 and f"{tmp_path / 'two.npy'}: 2 embedding rows but 3 classes" in err
    np.save(tmp_path / "wide.npy", np.ones((3, 48), np.float32))
    code, out, err = run(capsys, "detect", *base, "--embeddings", tmp_path / "wide.npy", "--out", tmp_path / "c")
    assert code == 2 and f"{tmp_path / 'wide.npy'}: embeddings of dimension 48 but the model expects 32" in err
    code, out, err = run(capsys, "detect", *base, "--embeddings", tmp_path / "none.npy", "--out", tmp_path / "c")
    assert code == 2 and f"text embedding file not found: {tmp_path / 'none.npy'}" in err
    assert not (tmp_path / "c").exists()


def test_embed_builtin_vocabularies(zoo, tmp_path, capsys):
    """Issue 24.3: `unidet embed --vocab lvis|coco|objects365`, the names of `detect --vocab`, cleaned as
    officially before encoding."""
    from unidetector.text.synthetic_encoder import SyntheticTextEncoder
    from unidetector.text.templates import SINGLE_TEMPLATE
    from unidetector.text.vocab import builtin_vocabulary, text_names

    for vocab, n in (("coco", 80), ("objects365", 365), ("lvis", 1203)):
        out_npy = tmp_path / f"{vocab}.npy"
        code, out, err = run(capsys, "embed", "--vocab", vocab, "--encoder", "synthetic", "--dim", "16",
                             "--out", out_npy)
        assert code == 0, err
        expected = SyntheticTextEncoder(dim=16, seed=0).encode(text_names(builtin_vocabulary(vocab)))
        got = np.load(out_npy)
        assert got.shape == (n, 16)
        np.testing.assert_array_equal(got, expected)
    code, out, err = run(capsys, "embed", "--vocab", "coco", "--encoder", f"clip:{zoo['rn50']}", "--templates",
                         "single", "--out", tmp_path / "coco_clip.npy")
    assert code == 0, err
    got = np.load(tmp_path / "coco_clip.npy")
    names = builtin_vocabulary("coco")
    assert got.shape == (80, D)
    np.testing.assert_allclose(got[[0, 36, 79]], reference_embeddings(zoo["clip"], [names[i] for i in (0, 36, 79)],
                                                                      SINGLE_TEMPLATE), rtol=1e-4, atol=1e-5)
    code, out, err = run(capsys, "embed", "--vocab", "klingon", "--encoder", "synthetic", "--out", tmp_path / "x.npy")
    assert code == 2 and "vocabulary file klingon" in err


def test_embedding_cache_is_keyed_by_the_weights_content(zoo, tmp_path, capsys, monkeypatch):
    """Issue 24.3: a copied, moved or touched RN50.pt finds its cached embeddings (content hash, computed
    once per file version); other weights do not."""
    from unidetector.api import make_text_encoder
    from unidetector.text.cache import cached_embeddings, file_digest
    from unidetector.text.vocab import text_names

    monkeypatch.setenv("UNIDET_CACHE_DIR", str(tmp_path / "cache"))
    first = tmp_path / "RN50.pt"
    shutil.copy(zoo["rn50"], first)
    args = ["embed", "--classes", "red box,blue box", "--out"]
    code, out, err = run(capsys, *args, tmp_path / "e1.npy", "--encoder", f"clip:{first}")
    assert code == 0 and "encoded in" in out, err
    moved = tmp_path / "elsewhere" / "clip_rn50_copy.pt"
    moved.parent.mkdir()
    shutil.copy(first, moved)
    os.utime(moved, (1e9, 1e9))  # touched
    code, out, err = run(capsys, *args, tmp_path / "e2.npy", "--encoder", f"clip:{moved}")
    assert code == 0 and "from the embedding cache" in out, err
    np.testing.assert_array_equal(np.load(tmp_path / "e1.npy"), np.load(tmp_path / "e2.npy"))

    # detect's lookup is the same: the copy's embeddings come from the cache, the encoder is not called
    enc = make_text_encoder(f"clip:{moved}", D)
    assert enc.id == make_text_encoder(f"clip:{first}", D).id and str(enc) == f"clip:{moved}"

    def never(names):
        raise AssertionError("encoded again")

    emb, hit = cached_embeddings(enc.id, text_names(["red box", "blue box"]), never, enc.templates)
    assert hit and np.array_equal(emb, np.load(tmp_path / "e1.npy"))

    other = tmp_path / "other.pt"
    data = bytearray(first.read_bytes())
    data[-100] ^= 1
    other.write_bytes(bytes(data))
    assert make_text_encoder(f"clip:{other}", D).id != enc.id
    # the digest of a file version (path, size, mtime) is computed once: same size and mtime -> the memo
    stat = first.stat()
    digest = file_digest(first)
    first.write_bytes(bytes(data))
    os.utime(first, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert file_digest(first) == digest
    os.utime(first, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a new version: hashed again
    assert file_digest(first) == make_text_encoder(f"clip:{other}", D).id.split("=", 1)[1]


# ------------------------------------------------------------------ training-time files, kinds, encoder
def test_inference_builds_need_no_training_files(zoo, tmp_path, capsys):
    """Issue 24.4: `convert --config` and `detect --config` with the stage-2 *training* config work in a
    folder without its ./clip_embeddings/*.npy and cat-info json; training still needs them (named)."""
    from unidetector.config import load_config
    from unidetector.engine.runner import build_model
    from unidetector.text.embeddings import EmbeddingFileError

    code, out, err = run(capsys, "convert", zoo["stage2"], tmp_path / "s2.pkl", "--config", zoo["stage2_cfg"])
    assert code == 0, err + out
    assert f"checked against the whole model of {zoo['stage2_cfg']}" in out
    assert "missing: 0" in out and "unexpected: 0" in out and "shape mismatches (ERROR): 0" in out
    code, out, err = run(capsys, "detect", zoo["photos"][0], "--classes", ",".join(CLASSES), "--checkpoint",
                         zoo["stage2"], "--config", zoo["stage2_cfg"], "--proposal-checkpoint", zoo["stage1"],
                         "--encoder", f"clip:{zoo['rn50']}", "--no-draw", "--out", tmp_path / "out")
    assert code == 0, err
    with pytest.raises(EmbeddingFileError, match=r"not found: \./clip_embeddings/coco_clip_a\+cname_rn50_manyprompt"):
        build_model(load_config(zoo["stage2_cfg"]))


def test_checkpoint_kinds_are_named(zoo, tmp_path, capsys):
    """Issue 24.2/24.5: each kind is named in the messages, with where it goes instead."""
    from unidetector.convert.checkpoints import checkpoint_kind, checkpoint_kind_message, config_kind

    image = zoo["photos"][0]
    clip = tmp_path / "rn50.pkl"
    code, out, err = run(capsys, "convert", zoo["rn50"], clip)
    assert code == 0 and "is a CLIP backbone initialisation (CLIP / RegionCLIP visual weights)" in out, err + out
    base = ["detect", image, "--classes", ",".join(CLASSES), "--encoder", f"clip:{zoo['rn50']}", "--out",
            tmp_path / "out"]
    code, out, err = run(capsys, *base, "--checkpoint", clip, "--proposal-checkpoint", zoo["stage1"])
    assert code == 2 and err.startswith(f"unidet detect: error: {clip} is a CLIP backbone initialisation")
    assert "not a trained detector" in err and "load_from" in err and "KeyError" not in err
    code, out, err = run(capsys, *base, "--checkpoint", zoo["stage2"], "--proposal-checkpoint", zoo["end2end"])
    assert code == 2 and f"{zoo['end2end']} is an end-to-end checkpoint (CLIP C4 backbone + RPNHead" in err
    assert "but a stage-1 model (proposal network) is asked for" in err and "its own RPN" in err
    code, out, err = run(capsys, *base, "--checkpoint", zoo["end2end"], "--config", zoo["stage2_cfg"])
    assert code == 2 and "is an end-to-end checkpoint" in err and "a stage-2 model (CLIP RoI classifier)" in err
    assert zoo["stage2_cfg"] in err
    code, out, err = run(capsys, *base, "--checkpoint", zoo["stage1"], "--proposal-checkpoint", zoo["stage1"])
    assert code == 2 and "is a stage-1 (proposal network) checkpoint" in err
    code, out, err = run(capsys, *base, "--checkpoint", zoo["stage2"])
    assert code == 2 and "is a stage-2 (CLIP RoI classifier) checkpoint" in err and "--proposal-checkpoint" in err
    assert not (tmp_path / "out").exists()

    e2e_keys = {"rpn_head.rpn_conv.weight": 0, "roi_head.bbox_head.attnpool.c_proj.weight": 0,
                "roi_head.bbox_head.fc_reg.weight": 0}
    assert checkpoint_kind(e2e_keys) == "end2end"
    assert checkpoint_kind({"rpn_head.rpn_conv.weight": 0, "roi_head.bbox_head.fc_cls.weight": 0}) == "stage1"
    assert checkpoint_kind({"backbone.conv1.weight": 0}) == "backbone"
    # a stage-2 head trained without box regression (with_reg=False) still carries its text embeddings
    tower = {"backbone.conv1.weight": 0, "roi_head.bbox_head.attnpool.c_proj.weight": 0}
    assert checkpoint_kind(tower) == "clip_init"
    assert checkpoint_kind(dict(tower, **{"roi_head.bbox_head.zs_weights_0": 0})) == "stage2"
    e2e_cfg = dict(type="FasterRCNN", rpn_head=dict(type="RPNHead"), roi_head=dict(bbox_head=dict(type="BBoxHeadCLIP")))
    assert config_kind(e2e_cfg) == "end2end"
    assert checkpoint_kind_message("e2e.pth", e2e_keys, e2e_cfg) is None  # `unidet test` with its own config
    assert "is an end-to-end checkpoint" in checkpoint_kind_message("e2e.pth", e2e_keys, 2)
    clip_init = {"roi_head.bbox_head.attnpool.c_proj.weight": 0, "backbone.conv1.weight": 0}
    assert checkpoint_kind_message("regionclip.pth", clip_init, e2e_cfg) is None  # load_from initialisation


def test_clip_embeddings_without_encoder_is_an_error(zoo, tmp_path, capsys):
    """Issue 24.5: official weights trained on CLIP embeddings, no --encoder: an error naming both ways
    out, not a warning and detections from another text space."""
    code, out, err = run(capsys, "detect", zoo["photos"][0], "--classes", ",".join(CLASSES), "--checkpoint",
                         zoo["stage2"], "--proposal-checkpoint", zoo["stage1"], "--out", tmp_path / "out")
    assert code == 2 and "warning" not in err
    assert f"{zoo['stage2']} does not record the text encoder" in err and "look like CLIP" in err
    assert "--encoder clip:RN50.pt" in err and "--embeddings E.npy" in err
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ settings
def test_max_dets_cfg_options_and_official_lvis_settings(zoo, tmp_path, capsys):
    """Issue 24.6: --max-dets and --cfg-options change the test settings; --vocab lvis applies the official
    LVIS ones (300 detections per image, not the training config's 100)."""
    rng = np.random.default_rng(3)
    lvis = tmp_path / "lvis_v1_clip_rn50.npy"  # float16, row norms ~10, as the official files
    np.save(lvis, (rng.standard_normal((1203, D)) * (10 / np.sqrt(D))).astype(np.float16))
    base = ["detect", zoo["photos"][0], "--checkpoint", zoo["end2end"], "--score-thr", "0", "--no-draw"]

    def summary(out_dir):
        s = json.loads((tmp_path / out_dir / "summary.json").read_text())
        return s["max_dets"], s["results"][0]["detections"]

    code, out, err = run(capsys, *base, "--vocab", "lvis", "--embeddings", lvis, "--out", tmp_path / "lvis")
    assert code == 0, err
    assert "up to 300 detections per image (official LVIS setting)" in out
    assert summary("lvis") == (300, 300)
    code, out, err = run(capsys, *base, "--vocab", "lvis", "--embeddings", lvis, "--max-dets", "40",
                         "--out", tmp_path / "lvis40")
    assert code == 0 and summary("lvis40") == (40, 40), err
    code, out, err = run(capsys, *base, "--vocab", "lvis", "--embeddings", lvis, "--cfg-options",
                         "model.test_cfg.rcnn.max_per_img=7", "--out", tmp_path / "lvis7")
    assert code == 0 and summary("lvis7") == (7, 7), err
    classes = ["--classes", ",".join(CLASSES), "--encoder", f"clip:{zoo['rn50']}"]
    code, out, err = run(capsys, *base, *classes, "--out", tmp_path / "default")
    assert code == 0 and summary("default")[0] == 100, err  # the checkpoint's config
    code, out, err = run(capsys, *base, *classes, "--max-dets", "5", "--out", tmp_path / "five")
    assert code == 0 and summary("five") == (5, 5), err
    code, out, err = run(capsys, *base, *classes, "--max-dets", "0", "--out", tmp_path / "zero")
    assert code == 2 and "--max-dets must be at least 1" in err


def test_stored_config_is_read_not_executed(zoo, tmp_path, capsys):
    """A checkpoint's config text is parsed as data (like its weights, read without unpickling code)."""
    state_dict = torch.load(zoo["stage2"], weights_only=False)["state_dict"]
    evil = save_mmcv_checkpoint(tmp_path / "evil.pth", state_dict,
                                "import os\nos.system('touch pwned')\nmodel = dict(type='FastRCNN')\n", CLASSES)
    code, out, err = run(capsys, "detect", zoo["photos"][0], "--classes", "a", "--checkpoint", evil,
                         "--proposal-checkpoint", zoo["stage1"], "--encoder", f"clip:{zoo['rn50']}", "--out",
                         tmp_path / "out")
    assert code == 2 and f"{evil} (meta['config']), line 1: not a 'name = value' line" in err
    assert "--config FILE" in err and not Path("pwned").exists()
    code, out, err = run(capsys, "convert", evil, tmp_path / "evil.pkl")
    assert code == 2 and "not a 'name = value' line" in err and not Path("pwned").exists()


# ------------------------------------------------------------------ Python API (docs/real_data.md)
def test_python_api_as_documented(zoo, tmp_path):
    """The 'Official model zoo' Python example: .pth files as released, precomputed embeddings, then a
    vocabulary swap with the CLIP encoder on the cached regions."""
    from unidetector import Detector

    np.save(tmp_path / "boxes.npy", reference_embeddings(zoo["clip"], CLASSES))
    det = Detector.from_checkpoint(zoo["stage2"], proposal_checkpoint=zoo["stage1"], classes=CLASSES,
                                   embeddings=str(tmp_path / "boxes.npy"), encoder=f"clip:{zoo['rn50']}",
                                   score_thr=0.0, max_dets=50)
    d = det.detect(zoo["photos"][0])
    assert 0 < len(d) <= 50 and set(d.names) <= set(CLASSES) and det.max_dets == 50
    swapped = det.detect(zoo["photos"][0], classes=["yellow box", "red box"])
    assert det.last_timings["reused"] and set(swapped.names) <= {"yellow box", "red box"}
    assert det.draw(zoo["photos"][0], d).shape == (120, 160, 3)
