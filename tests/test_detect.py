"""`unidet detect` and the Python API (`unidetector.Detector`) on the quick synthetic experiment."""
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from unidetector.text.cache import cached_embeddings, embedding_path
from unidetector.text.vocab import VocabularyError, builtin_vocabulary, resolve_vocabulary


# ------------------------------------------------------------------ no model needed
def test_import_is_cheap_and_exports_detector():
    code = ("import sys, unidetector; assert 'jittor' not in sys.modules; "
            "from unidetector import Detector, Detections; assert 'jittor' not in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_builtin_vocabularies(tmp_path):
    coco = builtin_vocabulary("coco")
    assert len(coco) == 80 and coco[0] == "person" and coco[-1] == "toothbrush"
    o365 = builtin_vocabulary("objects365")
    assert len(o365) == 365 and o365[0] == "Person"
    assert "Cigar/Cigarette " in o365 and "Formula 1 " in o365 and o365[-1] == "Table Tennis "  # official spaces
    try:
        lvis = builtin_vocabulary("lvis")
    except VocabularyError as e:  # not shipped: the error says how to pass a file
        assert "--vocab FILE" in str(e)
    else:
        assert len(lvis) == 1203 and lvis[0] == "aerosol_can" and lvis[-1] == "zucchini"
    f = tmp_path / "names.txt"
    f.write_text("red star\n\nblue ring\n")
    assert resolve_vocabulary(vocab=str(f)) == ["red star", "blue ring"]
    assert resolve_vocabulary(classes=" red star , blue ring,") == ["red star", "blue ring"]
    for bad in (dict(classes=" , "), dict(classes="a,a"), dict(vocab=str(tmp_path / "missing.txt")), {}):
        with pytest.raises(VocabularyError):
            resolve_vocabulary(**bad)


def test_embedding_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("UNIDET_CACHE_DIR", str(tmp_path))
    calls = []

    def encode(names):
        calls.append(list(names))
        return np.ones((len(names), 4), np.float32)

    a, hit_a = cached_embeddings("enc", ["x", "y"], encode, templates=("{}.",))
    b, hit_b = cached_embeddings("enc", ["x", "y"], encode, templates=("{}.",))
    assert (hit_a, hit_b) == (False, True) and len(calls) == 1 and np.array_equal(a, b)
    path = embedding_path("enc", ["x", "y"], ("{}.",))
    assert path.parent == tmp_path / "embeddings" and path.is_file()
    assert embedding_path("enc", ["x", "y"], ()) != path and embedding_path("enc2", ["x", "y"], ("{}.",)) != path


# ------------------------------------------------------------------ on the quick experiment
@pytest.fixture(scope="module")
def world(quick_experiment):
    work_dir, _ = quick_experiment
    work_dir = Path(work_dir)
    data = work_dir / "data" / "synthetic"
    meta = json.loads((data / "world.json").read_text())
    names = {c["id"]: c["name"] for c in meta["classes"]}
    novel = [names[i] for i in meta["vocabularies"]["novel"]]
    seen = [names[i] for i in meta["vocabularies"]["seen"]]
    val = json.loads((data / "val_lvis.json").read_text())
    images = [str(data / "images" / im["file_name"]) for im in val["images"]]
    return dict(stage1=str(work_dir / "work_dirs" / "stage1_cln" / "latest.pkl"),
                stage2=str(work_dir / "work_dirs" / "stage2_partitioned" / "latest.pkl"),
                images=images, novel=novel, seen=seen, vocab=novel[:4] + seen[:4], swap=novel[4:] + seen[4:10])


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("UNIDET_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "unidet_cache"))


def _detect(world, out, *extra, images=None, classes=None):
    from unidetector.cli import main

    args = ["detect", *(images or world["images"][:1]), "--checkpoint", world["stage2"], "--out", str(out)]
    if classes is not False:
        args += ["--classes", ",".join(classes or world["vocab"])]
    if "--proposals" not in extra:
        args += ["--proposal-checkpoint", world["stage1"]]
    return main(args + list(extra))


def test_detect_writes_json_and_annotated_image(world, tmp_path):
    import cv2

    out = tmp_path / "out"
    assert _detect(world, out, "--score-thr", "0.01") == 0
    image = world["images"][0]
    stem = Path(image).stem
    record = json.loads((out / f"{stem}.json").read_text())
    src = cv2.imread(image)
    h, w = src.shape[:2]
    assert (record["width"], record["height"]) == (w, h) and record["vocabulary"] == world["vocab"]
    dets = record["detections"]
    assert dets, "the quick model should find something at score_thr 0.01"
    for d in dets:
        assert set(d) >= {"image_id", "category_id", "bbox", "score", "class_name"}
        x, y, bw, bh = d["bbox"]
        assert 0 <= x and 0 <= y and bw >= 0 and bh >= 0 and x + bw <= w + 1e-3 and y + bh <= h + 1e-3
        assert d["class_name"] in world["vocab"] and world["vocab"][d["category_id"] - 1] == d["class_name"]
        assert d["score"] >= 0.01
    assert [d["score"] for d in dets] == sorted((d["score"] for d in dets), reverse=True)
    vis = cv2.imread(str(out / Path(image).name))
    assert vis is not None and vis.shape == src.shape
    x, y, bw, bh = (int(round(v)) for v in dets[0]["bbox"])  # the best box is drawn last, on top
    edge = np.abs(vis[y + 1:y + bh - 1, x].astype(int) - src[y + 1:y + bh - 1, x].astype(int)).mean()
    assert edge > 20, "the box edge must be drawn"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processed"] == 1 and summary["failures"] == [] and summary["detections"] == len(dets)


def test_vocabulary_swap_equals_full_run(world, tmp_path):
    out_swap, out_full = tmp_path / "swap_run", tmp_path / "full_run"
    assert _detect(world, out_swap, "--score-thr", "0.001", "--classes-swap", ",".join(world["swap"])) == 0
    assert _detect(world, out_full, "--score-thr", "0.001", classes=world["swap"]) == 0
    stem = Path(world["images"][0]).stem
    a = json.loads((out_swap / "swap" / f"{stem}.json").read_text())["detections"]
    b = json.loads((out_full / f"{stem}.json").read_text())["detections"]
    assert len(a) == len(b) > 0
    assert [d["class_name"] for d in a] == [d["class_name"] for d in b]
    np.testing.assert_allclose([d["bbox"] + [d["score"]] for d in a], [d["bbox"] + [d["score"]] for d in b],
                               rtol=0, atol=1e-5)
    assert json.loads((out_swap / "summary.json").read_text())["swap"]["speedup"] > 1


def test_api_reuses_regions_and_matches_the_model_forward(world):
    import jittor as jt

    from unidetector import Detections, Detector
    from unidetector.models.roi_heads.bbox_heads.bbox_head_clip import classifier_weights

    det = Detector.from_checkpoint(world["stage2"], proposal_checkpoint=world["stage1"], classes=world["vocab"],
                                   score_thr=0.001)
    image = world["images"][0]
    first = det.detect(image)
    assert isinstance(first, Detections) and not det.last_timings["reused"]
    swapped = det.detect(image, classes=world["swap"])
    assert det.last_timings["reused"] and det.last_timings["stage1"] == 0 and det.last_timings["regions"] == 0
    fresh = det.detect(image, classes=world["swap"], reuse_regions=False)
    assert not det.last_timings["reused"]
    # float32 rounding may differ between the first (compiling) and later passes: boxes in pixels to 1e-3
    np.testing.assert_allclose(swapped.boxes, fresh.boxes, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(swapped.scores, fresh.scores, atol=1e-5)
    assert swapped.names == fresh.names and swapped.boxes.dtype == np.float32
    # an RGB array gives the same result as the path (same pixels -> same cache entry)
    import cv2

    rgb = cv2.cvtColor(cv2.imread(image), cv2.COLOR_BGR2RGB)
    again = det.detect(rgb)
    assert det.last_timings["reused"] and again.names == first.names
    # the cached regions now come from `fresh`, a later pass than `first`: same float32 tolerance as above
    np.testing.assert_allclose(again.scores, first.scores, atol=1e-5)
    np.testing.assert_allclose(again.boxes, first.boxes, rtol=1e-5, atol=1e-3)
    assert det.draw(rgb, again).shape == rgb.shape

    # the cached-region scoring equals the detector's own forward (StandardRoIHead.simple_test_bboxes)
    proposals = det.propose(rgb)[:det.num_proposals]
    batch = det._prepare(det.pipeline, rgb, image, proposals)
    model = det.model
    head = model.roi_head.bbox_head
    head.zs_weights = classifier_weights(det.embeddings(world["swap"]))
    head.num_classes = len(world["swap"])
    with jt.no_grad():
        x = model.extract_feat(jt.array(batch["img"]))
        bboxes, labels = model.roi_head.simple_test_bboxes(x, batch["img_metas"], [batch["proposals"][0]],
                                                           model.roi_head.test_cfg, rescale=True)
    ref, ref_labels = bboxes[0].numpy(), labels[0].numpy()
    keep = ref[:, 4] >= 0.001
    np.testing.assert_allclose(np.sort(ref[keep, 4])[::-1], fresh.scores, atol=1e-5)
    assert sorted(ref_labels[keep].tolist()) == sorted(fresh.labels.tolist())


def test_given_proposals_match_stage1(world, tmp_path):
    from unidetector import Detector

    det = Detector.from_checkpoint(world["stage2"], proposal_checkpoint=world["stage1"], classes=world["vocab"])
    rp = tmp_path / "rp.pkl"
    with open(rp, "wb") as f:
        pickle.dump([det.propose(np.ascontiguousarray(__import__("cv2").imread(world["images"][0])[..., ::-1]))], f)
    from unidetector.cli import main

    opts = ["--classes", ",".join(world["vocab"]), "--checkpoint", world["stage2"], "--score-thr", "0.001"]
    base = ["detect", world["images"][0]] + opts
    assert main(base + ["--proposals", str(rp), "--out", str(tmp_path / "a")]) == 0
    assert main(base + ["--proposal-checkpoint", world["stage1"], "--out", str(tmp_path / "b")]) == 0
    stem = Path(world["images"][0]).stem
    a = json.loads((tmp_path / "a" / f"{stem}.json").read_text())["detections"]
    b = json.loads((tmp_path / "b" / f"{stem}.json").read_text())["detections"]
    assert len(a) == len(b) and np.allclose([d["score"] for d in a], [d["score"] for d in b], atol=1e-5)
    # a pickle that does not match the images is an error
    assert main(["detect", *world["images"][:2]] + opts + ["--proposals", str(rp), "--out", str(tmp_path / "c")]) == 2


def test_bad_inputs_are_clear_errors(world, tmp_path, capsys):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"this is not an image")
    assert _detect(world, tmp_path / "o1", images=[str(bad)]) == 1
    assert "cannot decode image" in capsys.readouterr().err
    assert _detect(world, tmp_path / "o2", "--classes", " , ", classes=False) == 2
    assert "empty" in capsys.readouterr().err
    from unidetector.cli import main

    code = main(["detect", world["images"][0], "--classes", "red star", "--checkpoint", world["stage1"],
                 "--proposal-checkpoint", world["stage1"], "--out", str(tmp_path / "o3")])
    assert code == 2
    err = capsys.readouterr().err
    assert "stage-1" in err and "--proposal-checkpoint" in err
    assert main(["detect", world["images"][0], "--classes", "red star", "--checkpoint", world["stage2"],
                 "--out", str(tmp_path / "o4")]) == 2
    assert "--proposal-checkpoint" in capsys.readouterr().err


def test_directory_with_a_corrupt_file(world, tmp_path, capsys):
    import shutil

    folder = tmp_path / "imgs"
    folder.mkdir()
    for src in world["images"][:2]:
        shutil.copy(src, folder / Path(src).name)
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (folder / "notes.txt").write_text("not an image, skipped")
    out = tmp_path / "out"
    assert _detect(world, out, "--no-draw", images=[str(folder)]) == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processed"] == 2 and summary["images"] == 3
    assert [Path(f["image"]).name for f in summary["failures"]] == ["corrupt.png"]
    assert "corrupt.png" in capsys.readouterr().err
    assert sorted(p.name for p in out.glob("*.json")) == sorted(
        [Path(s).stem + ".json" for s in world["images"][:2]] + ["summary.json"])


def test_image_exemplars_define_classes(world, tmp_path):
    """A class given by a box on an image goes through the same backbone → RoIAlign → layer4 → attention pool
    as the regions: its embedding is that box's region embedding; names given both ways mix the two."""
    import cv2

    from unidetector import Detector
    from unidetector.cli import main

    data = Path(world["images"][0]).parents[2]
    exemplars = json.loads((data / "world.json").read_text())["exemplars"]
    name = world["novel"][0]
    file, box = str(data / "images" / exemplars[name]["file"]), exemplars[name]["box"]
    det = Detector.from_checkpoint(world["stage2"], proposal_checkpoint=world["stage1"], classes=world["seen"][:3],
                                   score_thr=0.0)
    e = det.exemplar_embedding((file, box))
    rgb = cv2.cvtColor(cv2.imread(file), cv2.COLOR_BGR2RGB)
    f = det.regions(rgb, np.float32([[*box, 1.0]])).features[0]
    np.testing.assert_allclose(e, f / np.linalg.norm(f), rtol=1e-4, atol=1e-5)
    assert abs(float(np.linalg.norm(det.exemplar_embedding(file))) - 1) < 1e-5   # whole image as the box

    names, emb = det.vocabulary_embeddings(exemplars={name: (file, box)})
    assert names == world["seen"][:3] + [name] and emb.shape == (4, det.embed_dim)
    np.testing.assert_allclose(emb[-1], e, atol=1e-6)
    text = det.embeddings([name])[0]
    _, mixed = det.vocabulary_embeddings(classes=[name], exemplars={name: [(file, box), (file, box)]})
    np.testing.assert_allclose(mixed[0], (text / np.linalg.norm(text) + e) / 2, atol=1e-5)

    dets = det.detect(world["images"][0], exemplars={name: (file, box)})
    assert dets.vocabulary == names and set(dets.names) <= set(names)
    with pytest.raises(Exception, match="inside the image"):
        det.exemplar_embedding((file, [0, 0, 10_000, 10]))

    out = tmp_path / "ex"
    rc = _detect(world, out, "--exemplar", f"{name}={file}:{','.join(map(str, box))}", classes=False)
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["vocabulary"] == [name]
