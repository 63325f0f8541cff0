"""The synthetic open world (``unidet data synth``) and the annotation tools of ``unidet data``."""
import json
import time

import numpy as np
import pytest

from unidetector.cli import main
from unidetector.data import CocoDataset, LVISV1Dataset, check_embedding_rows
from unidetector.data.ann_tools import check_annotations
from unidetector.data.synthetic import split_vocabulary
from unidetector.text.synthetic_encoder import SyntheticTextEncoder, word_vector


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    t = time.time()
    assert main(["data", "synth", "--out", str(out), "--seed", "3", "--size", "small"]) == 0
    assert time.time() - t < 60
    return out


def _json(path):
    return json.loads(path.read_text())


def test_files_and_formats(world):
    w = _json(world / "world.json")
    for name in ("train_a.json", "train_b.json", "val_lvis.json", "emb_a.npy", "emb_b.npy", "emb_lvis.npy",
                 "train_a_cat_info.json", "train_b_cat_info.json"):
        assert (world / name).is_file(), name
    for name in ("train_a.json", "train_b.json", "val_lvis.json"):
        problems, _ = check_annotations(str(world / name), str(world / "images"))
        assert problems == [], problems
    val = _json(world / "val_lvis.json")
    assert all({"neg_category_ids", "not_exhaustive_category_ids"} <= set(i) for i in val["images"])
    assert all({"frequency", "image_count", "instance_count", "synset"} <= set(c) for c in val["categories"])
    assert {c["frequency"] for c in val["categories"]} == {"r", "c", "f"}
    novel = set(w["vocabularies"]["novel"])
    assert all(c["frequency"] == "r" and c["image_count"] == 0 for c in val["categories"] if c["id"] in novel)
    assert novel <= {a["category_id"] for a in val["annotations"]}  # novel classes are tested
    ds = LVISV1Dataset(str(world / "val_lvis.json"), [dict(type="LoadImageFromFile")],
                       img_prefix=str(world / "images"), test_mode=True)
    assert len(ds) == w["stats"]["val_images"] and ds[0]["img"].shape[2] == 3
    check_embedding_rows(str(world / "emb_lvis.npy"), len(ds.cat_ids))


def test_one_exemplar_per_class(world):
    """Exemplar images (one object of each class, its box) as a COCO file plus a proposal file of the boxes."""
    import pickle

    w = _json(world / "world.json")
    ex = _json(world / "exemplars.json")
    assert len(ex["images"]) == len(ex["annotations"]) == len(w["classes"]) == len(w["exemplars"])
    assert [a["category_id"] for a in ex["annotations"]] == [c["id"] for c in w["classes"]]
    problems, _ = check_annotations(str(world / "exemplars.json"), str(world / "images"))
    assert problems == [], problems
    boxes = pickle.load(open(world / "rp_exemplars.pkl", "rb"))
    for a, b, (name, e) in zip(ex["annotations"], boxes, w["exemplars"].items()):
        x, y, bw, bh = a["bbox"]
        np.testing.assert_allclose(b, [[x, y, x + bw, y + bh, 1.0]])
        assert e["box"] == [x, y, x + bw, y + bh] and bw * bh > 0.01 * e["size"][0] * e["size"][1]


def test_label_spaces(world):
    w = _json(world / "world.json")
    voc = w["vocabularies"]
    a, b, novel = set(voc["a"]), set(voc["b"]), set(voc["novel"])
    assert not novel & (a | b) and a & b and a - b and b - a
    words = {wd for c in w["classes"] if c["id"] in a | b for wd in c["name"].split()}
    assert all(wd in words for c in w["classes"] if c["id"] in novel for wd in c["name"].split())
    for name, vocab, other in (("train_a", a, b), ("train_b", b, a)):
        data = _json(world / f"{name}.json")
        assert {c["id"] for c in data["categories"]} == vocab
        assert {x["category_id"] for x in data["annotations"]} <= vocab
        assert w["stats"][f"{name}_unlabelled_objects"] > 0  # out-of-vocabulary objects drawn, unlabelled
        ds = CocoDataset(str(world / f"{name}.json"), [], img_prefix=str(world / "images"), dataset_id=0)
        emb = np.load(world / f"emb_{name[-1]}.npy")
        check_embedding_rows(emb, len(ds.cat_ids))
        names = [c["name"] for c in sorted(data["categories"], key=lambda c: c["id"])]
        np.testing.assert_allclose(emb, SyntheticTextEncoder().encode(names), atol=1e-6)
        assert len(ds) > 0.8 * len(data["images"])


def test_deterministic(world, tmp_path):
    assert split_vocabulary(3) == split_vocabulary(3) and split_vocabulary(3) != split_vocabulary(4)
    from unidetector.data.synthetic import generate_world

    # same seed, same world (json and pixels)
    w2 = generate_world(str(tmp_path), seed=3, size="small")
    assert w2["stats"] == _json(world / "world.json")["stats"]
    assert (tmp_path / "val_lvis.json").read_text() == (world / "val_lvis.json").read_text()
    assert (tmp_path / "images/val/200001.jpg").read_bytes() == (world / "images/val/200001.jpg").read_bytes()


def test_encoder_is_stable_and_compositional():
    v = word_vector("red", 8, seed=0)
    np.testing.assert_allclose(np.linalg.norm(v), 1.0)
    np.testing.assert_allclose(v, word_vector("Red", 8, seed=0))
    e = SyntheticTextEncoder(dim=512).encode(["red star", "red circle", "blue star", "green hexagon"])
    assert e.shape == (4, 512) and e.dtype == np.float32
    sim = e @ e.T
    assert sim[0, 1] > 0.4 and sim[0, 2] > 0.4 and abs(sim[0, 3]) < 0.2  # shared word: cos ~ 0.5


def test_subset_catinfo_check_show(world, tmp_path, capsys):
    src = tmp_path / "a.json"
    src.write_text((world / "train_a.json").read_text())
    assert main(["data", "subset", "--ann", str(src), "--percent", "20", "--seed", "1"]) == 0
    sub = _json(tmp_path / "a.1@20.0.json")
    full = _json(src)
    np.random.seed(1)
    ind = np.arange(len(full["images"]))
    np.random.shuffle(ind)
    keep = sorted(ind[:int(0.2 * len(ind))])
    assert [i["id"] for i in sub["images"]] == [full["images"][k]["id"] for k in keep]
    assert sub["categories"] == full["categories"]
    assert main(["data", "catinfo", "--ann", str(tmp_path / "a.1@20.0.json")]) == 0
    info = _json(tmp_path / "a.1@20.0_cat_info.json")
    assert sum(c["instance_count"] for c in info) == len(sub["annotations"])
    assert main(["data", "show", "--ann", str(src), "--img-dir", str(world / "images"),
                 "--out", str(tmp_path / "grid.png"), "--num", "4"]) == 0
    assert (tmp_path / "grid.png").stat().st_size > 1000
    # a broken file: every problem is listed, exit code 1
    bad = _json(src)
    bad["annotations"][0]["category_id"] = 999
    bad["annotations"][1]["bbox"] = [1, 2, 3]
    bad["images"][0]["width"] += 5
    bad["images"].append(dict(id=77, file_name="nowhere.jpg", width=10, height=10))
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    capsys.readouterr()
    assert main(["data", "check", "--ann", str(tmp_path / "bad.json"), "--img-dir", str(world / "images")]) == 1
    out = capsys.readouterr().out
    assert "unknown category_id 999" in out and "bbox must be 4 numbers" in out
    assert "image file not found" in out and "nowhere.jpg" in out and "but the json says" in out
