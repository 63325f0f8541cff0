"""`unidet detect` refuses bad input up front (issue 22): vocabulary, options, proposal files, text
encoder, checkpoint kind. Every CLI case fails before a network is built (tiny fake checkpoints)."""
import pickle
from pathlib import Path

import numpy as np
import pytest

from unidetector.cli import main
from unidetector.text.vocab import VocabularyError, find_duplicates, parse_classes, resolve_vocabulary

D = 8  # embedding dimension of the fake checkpoints


# ------------------------------------------------------------------ helpers
def _image(path: Path, h=20, w=30) -> str:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((h, w, 3), 128, np.uint8))
    return str(path)


def _pickle(path: Path, obj) -> str:
    path.write_bytes(pickle.dumps(obj))
    return str(path)


def _synthetic_zs(classes, dim=D, seed=0) -> np.ndarray:
    """The (D, C + 1) training-embedding buffer of a model trained with the synthetic encoder."""
    from unidetector.text.synthetic_encoder import SyntheticTextEncoder

    emb = SyntheticTextEncoder(dim=dim, seed=seed).encode(classes)
    return np.concatenate([emb.T, np.zeros((dim, 1), np.float32)], 1)


def _stage2_ckpt(path: Path, meta=None, zs=None) -> str:
    """A stage-2 checkpoint as far as detect's checks go (no config: building stops at it)."""
    sd = {"roi_head.bbox_head.attnpool.c_proj.weight": np.zeros((D, D), np.float32),
          "roi_head.bbox_head.fc_reg.weight": np.zeros((4, D), np.float32)}
    if zs is not None:
        sd["roi_head.bbox_head.zs_weights_0"] = zs
    return _pickle(path, {"meta": dict(meta or {}), "state_dict": sd})


def _stage1_ckpt(path: Path) -> str:
    sd = {"rpn_head.rpn_conv.weight": np.zeros((4, 4, 3, 3), np.float32),
          "backbone.conv1.weight": np.zeros((4, 3, 3, 3), np.float32)}
    return _pickle(path, {"meta": {}, "state_dict": sd})


def _detect(capsys, *args) -> tuple:
    code = main(["detect", *map(str, args)])
    err = capsys.readouterr().err
    return code, err


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("UNIDET_CACHE_DIR", str(tmp_path / "cache"))


# ------------------------------------------------------------------ vocabulary
def test_classes_follow_csv_rules():
    assert parse_classes('"red, dark star",blue ring') == ["red, dark star", "blue ring"]
    assert parse_classes(' "a, b" , c ,, ') == ["a, b", "c"]
    assert parse_classes('"5"" disk",x') == ['5" disk', "x"]
    assert parse_classes(" red star , blue ring,") == ["red star", "blue ring"]
    for bad, what in (('"red, dark star,blue ring', "unclosed"), ('red "star, blue', "stray"),
                      ('"a"b,c', "follows the quoted name")):
        with pytest.raises(VocabularyError, match=what) as e:
            parse_classes(bad)
        assert "--vocab FILE" in str(e.value)


def test_names_equal_up_to_case_and_spacing_are_duplicates(tmp_path):
    assert find_duplicates(["Red Star", "blue", "red  star ", "BLUE"]) == [("Red Star", "red  star "), ("blue", "BLUE")]
    assert find_duplicates(["red star", "red stars"]) == []
    with pytest.raises(VocabularyError, match=r"'Red Star' and 'red  star'"):
        resolve_vocabulary(classes=["Red Star", "red  star"])
    f = tmp_path / "names.txt"
    f.write_text("cat\nCat \n")
    with pytest.raises(VocabularyError, match=r"names.txt has duplicate .*'cat' and 'Cat '"):
        resolve_vocabulary(vocab=str(f))
    long = ",".join(f"c{i}" for i in range(30)) + ",C0"
    with pytest.raises(VocabularyError, match="--vocab FILE"):
        resolve_vocabulary(classes=long)
    for name in ("coco", "objects365"):  # the shipped vocabularies have none
        assert find_duplicates(resolve_vocabulary(vocab=name)) == []


def test_cli_duplicate_and_quoted_classes(tmp_path, capsys):
    img = _image(tmp_path / "a.png")
    code, err = _detect(capsys, img, "--classes", "Red Star,blue ring,red  star", "--checkpoint", "none.pkl",
                        "--proposals", "none.pkl")
    assert code == 2 and "unidet detect: error:" in err
    assert "'Red Star' and 'red  star'" in err and "case and spacing" in err
    # quoted names keep their commas: these two differ only in case and spacing, so they are duplicates
    code, err = _detect(capsys, img, "--classes", '"red, dark star","Red,  dark star"', "--checkpoint", "none.pkl",
                        "--proposals", "none.pkl")
    assert code == 2 and "'red, dark star' and 'Red,  dark star'" in err
    code, err = _detect(capsys, img, "--classes", '"red, dark star,blue ring', "--checkpoint", "none.pkl",
                        "--proposals", "none.pkl")
    assert code == 2 and "unclosed double quote" in err and "--vocab FILE" in err


def test_cli_help_suggests_quotes_and_vocab_file(capsys):
    with pytest.raises(SystemExit):
        main(["detect", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert '"red, dark star",blue ring' in out and "--vocab FILE" in out


# ------------------------------------------------------------------ options
def test_cli_num_proposals_below_one(tmp_path, capsys):
    img = _image(tmp_path / "a.png")
    for n in ("0", "-3"):
        code, err = _detect(capsys, img, "--classes", "a", "--checkpoint", "none.pkl", "--proposals", "none.pkl",
                            "--num-proposals", n)
        assert code == 2 and f"--num-proposals must be at least 1, got {n}" in err.replace(
            " (the top proposals per image)", "")


def test_cli_out_is_an_existing_file(tmp_path, capsys):
    img = _image(tmp_path / "a.png")
    out = tmp_path / "results.json"
    out.write_text("{}")
    # the checkpoint does not exist: the --out error comes first, before any work
    code, err = _detect(capsys, img, "--classes", "a", "--checkpoint", tmp_path / "missing.pkl",
                        "--proposal-checkpoint", tmp_path / "missing.pkl", "--out", out)
    assert code == 2 and f"--out {out} is an existing file" in err and "missing.pkl" not in err
    assert out.read_text() == "{}"


# ------------------------------------------------------------------ given proposals
def _props_cli(tmp_path, capsys, proposals, n_images=2):
    images = [_image(tmp_path / "imgs" / f"{i}.png", h=20 + 10 * i, w=30) for i in range(n_images)]
    rp = _pickle(tmp_path / "rp.pkl", proposals)
    code, err = _detect(capsys, *images, "--classes", "a", "--checkpoint", tmp_path / "missing.pkl",
                        "--proposals", rp, "--out", tmp_path / "out")
    return code, err, rp, images


def test_cli_proposals_without_scores_are_refused(tmp_path, capsys):
    boxes = np.array([[1, 2, 10, 12], [3, 3, 8, 9], [0, 0, 5, 5], [2, 2, 9, 9], [1, 1, 4, 4]], np.float32)  # (5, 4)
    code, err, rp, _ = _props_cli(tmp_path, capsys, [boxes, boxes[:3]])
    assert code == 2 and f"{rp}: image 0 has proposals of shape (5, 4)" in err and "(n, 5)" in err
    assert not (tmp_path / "out").exists()


def test_cli_proposals_with_nan(tmp_path, capsys):
    good = np.array([[1, 2, 10, 12, 0.9]], np.float32)
    bad = np.array([[1, 2, 10, 12, 0.9], [np.nan, 0, 3, 3, 0.5]], np.float32)
    code, err, rp, _ = _props_cli(tmp_path, capsys, [good, bad])
    assert code == 2 and f"{rp}: image 1 has NaN or infinite" in err and "first row 1" in err


def test_cli_proposal_scores_outside_0_1(tmp_path, capsys):
    p = np.array([[1, 2, 10, 12, 33.0]], np.float32)
    code, err, rp, _ = _props_cli(tmp_path, capsys, [p, p])
    assert code == 2 and f"{rp}: image 0 has proposal scores" in err and "[0, 1]" in err


def test_cli_proposals_that_do_not_fit_their_images(tmp_path, capsys):
    # image 0 is 30x20, image 1 is 30x30; the file was made for other (larger) images
    fits = np.array([[1, 2, 29, 19, 0.9]], np.float32)
    far = np.array([[5, 5, 130, 25, 0.9]], np.float32)
    code, err, rp, images = _props_cli(tmp_path, capsys, [fits, far])
    assert code == 2
    assert f"{rp}: the boxes of image 1 ({images[1]}, 30x30) do not fit it" in err
    assert "x2 > width 30 by 100.0 px" in err
    # boxes inside their images pass (the run then stops at the missing checkpoint)
    code, err, rp, images = _props_cli(tmp_path, capsys, [np.zeros((0, 5), np.float32), fits], n_images=2)
    assert code == 2 and "do not fit" not in err and "missing.pkl" in err


# ------------------------------------------------------------------ proposal-file units
def test_load_proposals_names_file_and_image_for_non_finite(tmp_path):
    from unidetector.data.proposals import ProposalFileError, load_proposals

    rp = _pickle(tmp_path / "rp.pkl", [np.zeros((1, 5), np.float32),
                                       np.array([[0, 0, 1, 1, np.inf]], np.float32)])
    with pytest.raises(ProposalFileError, match=r"rp.pkl: image 1 has NaN or infinite proposal values"):
        load_proposals(rp)
    ok = _pickle(tmp_path / "ok.pkl", [np.array([[0, 0, 4, 4]], np.float32)])  # (n, 4) loads (training use)
    assert load_proposals(ok)[0].shape == (1, 4)


def test_check_proposals_fit_tolerance_and_message():
    from unidetector.data.proposals import ProposalFileError, check_proposals_fit, proposals_overshoot

    h, w = 100, 200
    inside = np.array([[0, 0, 200, 100, 0.5], [-2, -1, 203, 102, 0.4]], np.float32)  # rounding: within tolerance
    check_proposals_fit([inside], [(h, w)], "rp.pkl")
    assert proposals_overshoot(inside, h, w)[0] == 0
    assert proposals_overshoot(np.array([[0, 0, 220, 50]]), h, w)[:2] == (20.0, 0)
    assert proposals_overshoot(np.array([[0, -30, 10, 50]]), h, w)[2] == "y1 < 0"
    assert proposals_overshoot(np.array([[50, 0, 10, 50]]), h, w)[:3] == (40.0, 0, "x2 < x1")
    check_proposals_fit([np.array([[0, 0, 900, 900, 1]])], [None], "rp.pkl")  # unknown size: skipped
    props = [inside, np.array([[0, 0, 10, 10, 0.9], [0, 0, 50, 260, 0.1]], np.float32), inside * 3]
    with pytest.raises(ProposalFileError) as e:
        check_proposals_fit(props, [(h, w)] * 3, "rp.pkl", names=["a.jpg", "b.jpg", "c.jpg"])
    msg = str(e.value)
    assert msg.startswith("rp.pkl: the boxes of image 1 (b.jpg, 200x100) do not fit it: row 1")
    assert "y2 > height 100 by 160.0 px" in msg and "(2 of 3 images do not fit)" in msg


def test_align_proposals_checks_fit_with_image_infos():
    from unidetector.data.proposals import ProposalFileError, align_proposals

    infos = [dict(id=1, file_name="1.jpg", height=40, width=60), dict(id=2, file_name="2.jpg", height=300, width=500)]
    right = [np.array([[0, 0, 60, 40, 0.9]], np.float32), np.array([[0, 0, 500, 300, 0.9]], np.float32)]
    assert align_proposals(right, 2, "rp.pkl", "ann.json", image_infos=infos) is right
    with pytest.raises(ProposalFileError, match=r"rp.pkl: the boxes of image 0 \(1.jpg, 60x40\) do not fit it.*"
                                                r"x2 > width 60 by 440.0 px.*annotation file ann.json"):
        align_proposals(right[::-1], 2, "rp.pkl", "ann.json", image_infos=infos)  # wrong image order
    assert align_proposals(right[::-1], 2, "rp.pkl", "ann.json") is not None  # without infos: count only


def test_scored_proposals_for_the_api():
    from unidetector.api import DetectorError, scored_proposals

    assert scored_proposals([]).shape == (0, 5)
    p = scored_proposals([[0, 0, 4, 4, 0.5]])
    assert p.shape == (1, 5) and p.dtype == np.float32
    with pytest.raises(DetectorError, match=r"\(n, 5\).*got shape \(5, 4\)"):
        scored_proposals(np.zeros((5, 4)), "x.png")   # not re-cut into 4 rows of 5
    with pytest.raises(DetectorError, match="NaN"):
        scored_proposals([[0, 0, np.nan, 4, 0.5]])


# ------------------------------------------------------------------ text encoder
def test_cli_checkpoint_without_encoder_needs_encoder(tmp_path, capsys):
    img = _image(tmp_path / "a.png")
    ckpt = _stage2_ckpt(tmp_path / "s2.pkl", meta={"CLASSES": ["red star", "blue ring"]},
                        zs=np.full((D, 3), 5.0, np.float32))  # not the synthetic encoding, CLIP-like norms
    code, err = _detect(capsys, img, "--classes", "a", "--checkpoint", ckpt, "--proposals", "none.pkl")
    assert code == 2 and "none.pkl" in err  # proposals are checked first
    rp = _pickle(tmp_path / "rp.pkl", [np.array([[1, 1, 9, 9, 0.5]], np.float32)])
    code, err = _detect(capsys, img, "--classes", "a", "--checkpoint", ckpt, "--proposals", rp)
    assert code == 2
    assert f"{ckpt} does not record the text encoder" in err and "look like CLIP ones" in err
    assert "--encoder" in err and "clip:PATH" in err and "synthetic[:dim=D,seed=S]" in err
    # with --encoder the run goes on (to the next missing piece of this fake checkpoint: its config)
    code, err = _detect(capsys, img, "--classes", "a", "--checkpoint", ckpt, "--proposals", rp, "--encoder",
                        "synthetic")
    assert code == 2 and "carries no config" in err and "warning" not in err


def test_cli_other_encoder_than_recorded_is_a_warning(tmp_path, capsys):
    img = _image(tmp_path / "a.png")
    rp = _pickle(tmp_path / "rp.pkl", [np.array([[1, 1, 9, 9, 0.5]], np.float32)])
    ckpt = _stage2_ckpt(tmp_path / "s2.pkl", meta={"text_encoder": f"synthetic:dim={D},seed=0"})
    base = ["--classes", "a", "--checkpoint", ckpt, "--proposals", rp]
    code, err = _detect(capsys, img, *base, "--encoder", f"synthetic:dim={D},seed=3")
    warn = [line for line in err.splitlines() if "warning" in line]
    assert len(warn) == 1 and warn[0].startswith("unidet detect: warning: text encoder synthetic:dim=8,seed=3 "
                                                 "differs from synthetic:dim=8,seed=0")
    assert str(ckpt) in warn[0] and code == 2 and "carries no config" in err
    for same in ("synthetic", f"synthetic:dim={D},seed=0"):  # the recorded one, spelled two ways: no warning
        code, err = _detect(capsys, img, *base, "--encoder", same)
        assert "warning" not in err and "carries no config" in err
    code, err = _detect(capsys, img, *base)  # recorded: no --encoder needed
    assert "warning" not in err and "text encoder" not in err and "carries no config" in err


def test_synthetic_training_embeddings_establish_the_encoder(tmp_path):
    """What `unidet experiment` checkpoints are: no meta['text_encoder'], synthetic training embeddings."""
    from unidetector.api import DetectorError
    from unidetector.text.encoders import encoder_mismatch, infer_encoder, recorded_encoder

    classes = ["red star", "blue ring", "green cross"]
    sd = {"roi_head.bbox_head.zs_weights_0": _synthetic_zs(classes)}
    assert infer_encoder(sd, {"CLASSES": classes}, D) == (f"synthetic:dim={D},seed=0",
                                                          "its training embeddings are the synthetic encoder's")
    assert recorded_encoder(sd, {"CLASSES": classes[::-1]}, D)[0] is None  # other classes: not established
    with pytest.raises(DetectorError, match="s2.pkl does not record the text encoder"):
        infer_encoder(sd, {}, D, "s2.pkl")
    assert encoder_mismatch("clip:/a/RN50.pt", "clip:/b/RN50.pt", 1024) is None
    assert "differs" in encoder_mismatch("clip:RN50.pt", "synthetic:dim=1024,seed=0", 1024)


def test_experiment_stage2_model_establishes_its_encoder(tmp_path, monkeypatch):
    """The stage-2 model of `unidet experiment` (configs/synthetic/stage2_partitioned.py on a synthetic
    world), with the meta its trainer writes, needs no --encoder."""
    from unidetector.text.encoders import infer_encoder
    from unidetector.config import load_config
    from unidetector.convert.checkpoints import region_embed_dim
    from unidetector.data.synthetic import generate_world
    from unidetector.engine.runner import build_model

    import json

    monkeypatch.chdir(tmp_path)
    generate_world("data/synthetic", seed=0, size="tiny")
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "synthetic" / "stage2_partitioned.py")
    sd = {k: np.asarray(v.numpy()) for k, v in build_model(cfg).state_dict().items()}
    cats = json.loads(Path("data/synthetic/train_a.json").read_text())["categories"]
    # runner.train_from_config records the (first) training set's CLASSES, in category-id order
    meta = {"CLASSES": [c["name"] for c in sorted(cats, key=lambda c: c["id"])]}
    embed_dim = region_embed_dim(sd)
    spec, reason = infer_encoder(sd, meta, embed_dim)
    assert spec == f"synthetic:dim={embed_dim},seed=0" and "synthetic encoder" in reason


# ------------------------------------------------------------------ checkpoint kind
def test_checkpoint_kind_message(tmp_path, capsys):
    from unidetector.convert.checkpoints import checkpoint_kind_message, config_stage

    s1 = {"rpn_head.rpn_conv.weight": 0}
    s2 = {"roi_head.bbox_head.attnpool.c_proj.weight": 0}
    stage2_cfg = dict(type="FastRCNN", roi_head=dict(bbox_head=dict(type="BBoxHeadCLIPPartitioned")))
    stage1_cfg = dict(type="FasterRCNN", rpn_head=dict(type="OlnRPNHead"))
    assert config_stage(stage2_cfg) == 2 and config_stage(stage1_cfg) == 1 and config_stage({}) is None
    msg = checkpoint_kind_message("s1.pkl", s1, stage2_cfg)
    assert msg.startswith("s1.pkl is a stage-1 (proposal network) checkpoint") and "--proposal-checkpoint" in msg
    assert checkpoint_kind_message("s1.pkl", s1, 2) == msg
    assert checkpoint_kind_message("s2.pkl", s2, stage1_cfg).startswith("s2.pkl is a stage-2 (CLIP RoI classifier)")
    for sd, want in ((s1, 1), (s2, 2), ({"backbone.x": 0}, 2), (s1, {})):
        assert checkpoint_kind_message("x.pkl", sd, want) is None
    # detect gives the same message for a stage-1 checkpoint as --checkpoint
    img = _image(tmp_path / "a.png")
    ckpt = _stage1_ckpt(tmp_path / "stage1.pkl")
    rp = _pickle(tmp_path / "rp.pkl", [np.array([[1, 1, 9, 9, 0.5]], np.float32)])
    code, err = _detect(capsys, img, "--classes", "a", "--checkpoint", ckpt, "--proposals", rp)
    assert code == 2 and f"error: {checkpoint_kind_message(ckpt, s1, 2)}" in err


def test_image_size_is_the_decoded_size(tmp_path):
    """The fit check uses header sizes: EXIF-rotated JPEGs count as decoded (rotated), unreadable ones are None."""
    import cv2
    from PIL import Image

    from unidetector.commands.detect import image_size

    im = Image.fromarray(np.zeros((20, 40, 3), np.uint8))
    exif = im.getexif()
    exif[274] = 6  # rotate 90 degrees on display
    im.save(tmp_path / "r.jpg", exif=exif)
    decoded = cv2.imdecode(np.fromfile(str(tmp_path / "r.jpg"), np.uint8), cv2.IMREAD_COLOR)
    assert image_size(str(tmp_path / "r.jpg")) == decoded.shape[:2] == (40, 20)
    assert image_size(_image(tmp_path / "p.png", h=7, w=9)) == (7, 9)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    assert image_size(str(tmp_path / "bad.png")) is None
