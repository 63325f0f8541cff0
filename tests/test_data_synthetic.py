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
    for name in ("train_a.json", "train_b.json", "train_c.json", "val_lvis.json", "web.json", "rp_web.pkl",
                 "emb_a.npy", "emb_b.npy", "emb_c.npy", "emb_lvis.npy", "emb_web.npy",
                 "train_a_cat_info.json", "train_b_cat_info.json", "train_c_cat_info.json"):
        assert (world / name).is_file(), name
    for name in ("train_a.json", "train_b.json", "train_c.json", "val_lvis.json", "web.json"):
        problems, _ = check_annotations(str(world / name), str(world / "images"))
        assert problems == [], problems
    val = _json(world / "val_lvis.json")
    assert all({"neg_category_ids", "not_exhaustive_category_ids"} <= set(i) for i in val["images"])
    assert all({"frequency", "image_count", "instance_count", "synset"} <= set(c) for c in val["categories"])
    assert {c["frequency"] for c in val["categories"]} == {"r", "c", "f"}
    novel = set(w["vocabularies"]["novel"])
    assert all(c["frequency"] == "r" and c["image_count"] == 0 for c in val["categories"] if c["id"] in novel)
    tested = {a["category_id"] for a in val["annotations"]}
    assert len(novel & tested) > len(novel) / 2  # most novel classes are in the test set (60 images, 320 classes)
    ds = LVISV1Dataset(str(world / "val_lvis.json"), [dict(type="LoadImageFromFile")],
                       img_prefix=str(world / "images"), test_mode=True)
    assert len(ds) == w["stats"]["val_images"] and ds[0]["img"].shape[2] == 3
    check_embedding_rows(str(world / "emb_lvis.npy"), len(ds.cat_ids))


def test_one_exemplar_per_novel_class(world):
    """Exemplar images (one object of each novel class, its box) as a COCO file plus a proposal file of the boxes."""
    import pickle

    w = _json(world / "world.json")
    ex = _json(world / "exemplars.json")
    novel = w["vocabularies"]["novel"]
    assert len(ex["images"]) == len(ex["annotations"]) == len(novel) == len(w["exemplars"])
    assert [a["category_id"] for a in ex["annotations"]] == novel
    problems, _ = check_annotations(str(world / "exemplars.json"), str(world / "images"))
    assert problems == [], problems
    boxes = pickle.load(open(world / "rp_exemplars.pkl", "rb"))
    for a, b, (name, e) in zip(ex["annotations"], boxes, w["exemplars"].items()):
        x, y, bw, bh = a["bbox"]
        np.testing.assert_allclose(b, [[x, y, x + bw, y + bh, 1.0]])
        assert e["box"] == [x, y, x + bw, y + bh] and bw * bh > 0.01 * e["size"][0] * e["size"][1]


def test_label_spaces(world):
    """Three training sets with different, partly overlapping label spaces; novel classes in none of them,
    every word of a novel class in some seen class; unlabelled objects (other sets' and novel classes) drawn in
    the training images."""
    w = _json(world / "world.json")
    voc = w["vocabularies"]
    sets = {k: set(voc[k]) for k in ("a", "b", "c")}
    novel = set(voc["novel"])
    assert len(w["classes"]) == 320 and len(novel) == 40 and {k: len(v) for k, v in sets.items()} == \
        {"a": 64, "b": 160, "c": 120}
    assert set().union(*sets.values()) == set(voc["seen"]) and len(voc["seen"]) == 280 and not novel & set(voc["seen"])
    for x, y in (("a", "b"), ("b", "c"), ("a", "c")):
        assert sets[x] & sets[y] and sets[x] - sets[y] and sets[y] - sets[x], (x, y)
    words = {wd for c in w["classes"] if c["id"] in set(voc["seen"]) for wd in c["name"].split()}
    assert all(wd in words for c in w["classes"] if c["id"] in novel for wd in c["name"].split())
    for key, vocab in sets.items():
        name = f"train_{key}"
        data = _json(world / f"{name}.json")
        assert {c["id"] for c in data["categories"]} == vocab
        assert {x["category_id"] for x in data["annotations"]} <= vocab  # novel classes never labelled
        drawn = w["stats"][f"{name}_unlabelled_objects"]
        labelled = w["stats"][f"{name}_boxes"]
        assert 0.2 < drawn / (drawn + labelled) < 0.4   # out-of-vocabulary objects drawn, unlabelled (p = 0.3)
        assert w["stats"][f"{name}_unlabelled_novel_objects"] > 0
        ds = CocoDataset(str(world / f"{name}.json"), [], img_prefix=str(world / "images"), dataset_id=0)
        emb = np.load(world / f"emb_{key}.npy")
        check_embedding_rows(emb, len(ds.cat_ids))
        names = [c["name"] for c in sorted(data["categories"], key=lambda c: c["id"])]
        np.testing.assert_allclose(emb, SyntheticTextEncoder().encode(names), atol=1e-6)
        assert len(ds) > 0.8 * len(data["images"])
    per_image = [len(a) for a in _group(_json(world / "val_lvis.json")["annotations"]).values()]
    assert 4 <= np.mean(per_image) <= 10   # LVIS-like density (objects per test image)


def _group(anns) -> dict:
    out = {}
    for a in anns:
        out.setdefault(a["image_id"], []).append(a)
    return out


def test_frequency_split_follows_lvis(world):
    """r/c/f from training image counts at LVIS v1's class fractions; never-labelled classes are rare; the test
    json carries the training counts."""
    from unidetector.data.synthetic import LVIS_FRACTIONS, frequency_groups

    w = _json(world / "world.json")
    val = {c["id"]: c for c in _json(world / "val_lvis.json")["categories"]}
    counts = {c["id"]: 0 for c in w["classes"]}
    for key in ("a", "b", "c"):
        for c in _json(world / f"train_{key}_cat_info.json"):
            counts[c["id"]] += c["image_count"]
    assert {cid: val[cid]["image_count"] for cid in counts} == counts
    groups, (rare_below, frequent_from) = frequency_groups(counts)
    assert {cid: val[cid]["frequency"] for cid in counts} == groups
    assert all(groups[c] == "r" for c in w["vocabularies"]["novel"])
    assert all(groups[c] == "r" for c, n in counts.items() if n == 0) and rare_below >= 1
    share = {g: sum(v == g for v in groups.values()) / len(groups) for g in "rcf"}
    for g in "rcf":   # ties at the thresholds move a few classes
        assert abs(share[g] - LVIS_FRACTIONS[g]) < 0.12, (g, share)
    # the rule on a known case: counts 0..9 -> rare below the 28th percentile (2), frequent from the 67th (7)
    toy, thresholds = frequency_groups({i: i for i in range(10)})
    assert thresholds == (2, 7) and [toy[i] for i in range(10)] == list("rrccccc" + "fff")


def test_web_set_names_every_class(world):
    """The world-CLIP's web set: small scenes of 2-4 objects of every class (novel ones included), every object
    named, at the detection images' object sizes, and jittered copies of each box inside its scene as the
    proposal file."""
    import pickle

    from unidetector.data.synthetic import JITTERS_PER_BOX, MIN_OBJECT, WEB_OBJECTS

    w = _json(world / "world.json")
    web = _json(world / "web.json")
    assert len(web["images"]) == w["stats"]["web_images"] and len(web["annotations"]) == w["stats"]["web_boxes"]
    per_image = np.bincount([a["image_id"] - web["images"][0]["id"] for a in web["annotations"]])
    assert per_image.max() <= WEB_OBJECTS[1] and per_image.mean() > 2
    assert len({a["category_id"] for a in web["annotations"]}) == len(w["classes"])
    assert {a["category_id"] for a in web["annotations"]} & set(w["vocabularies"]["novel"])
    # objects from the smallest detection size to most of the scene, seen at 128 px
    rel = np.array([max(a["bbox"][2:]) / web["images"][a["image_id"] - web["images"][0]["id"]]["width"]
                    for a in web["annotations"]])
    assert rel.min() * 128 < 1.6 * MIN_OBJECT and rel.max() > 0.6
    boxes = pickle.load(open(world / "rp_web.pkl", "rb"))
    anns = {}
    for a in web["annotations"]:
        anns.setdefault(a["image_id"], []).append(a)
    for img, props in zip(web["images"][:50], boxes):
        assert props.shape == (JITTERS_PER_BOX * len(anns.get(img["id"], [])), 5) and (props[:, :4] >= 0).all()
        assert (props[:, 2] <= img["width"]).all() and (props[:, 3] <= img["height"]).all()
    np.testing.assert_allclose(np.load(world / "emb_web.npy"), np.load(world / "emb_lvis.npy"))


def test_deterministic(world, tmp_path):
    assert split_vocabulary(3) == split_vocabulary(3) and split_vocabulary(3)["novel"] != split_vocabulary(4)["novel"]
    from unidetector.data.synthetic import generate_web_set, generate_world

    # same seed, same world (json and pixels); the web set drawn later (as the experiment does when its world-CLIP
    # is not cached) is the one drawn with the world
    w2 = generate_world(str(tmp_path), seed=3, size="small", web=False)
    assert not (tmp_path / "web.json").exists() and "web_boxes" not in w2["stats"] and "web" not in w2["files"]
    assert w2["stats"]["web_images"] == _json(world / "world.json")["stats"]["web_images"]
    w2 = generate_web_set(str(tmp_path))
    assert w2 == _json(tmp_path / "world.json") and w2["stats"] == _json(world / "world.json")["stats"]
    assert w2["files"] == _json(world / "world.json")["files"]
    for name in ("val_lvis.json", "web.json", "rp_web.pkl", "images/val/200001.jpg", "images/web/305999.jpg"):
        assert (tmp_path / name).read_bytes() == (world / name).read_bytes(), name


def test_encoder_is_stable_and_compositional():
    v = word_vector("red", 8, seed=0)
    np.testing.assert_allclose(np.linalg.norm(v), 1.0)
    np.testing.assert_allclose(v, word_vector("Red", 8, seed=0))
    e = SyntheticTextEncoder(dim=512).encode(["red star", "red circle", "blue star", "green hexagon",
                                              "striped red star", "dotted red star"])
    assert e.shape == (6, 512) and e.dtype == np.float32
    sim = e @ e.T
    assert sim[0, 1] > 0.4 and sim[0, 2] > 0.4 and abs(sim[0, 3]) < 0.2  # shared word: cos ~ 0.5
    assert 0.55 < sim[4, 5] < 0.8   # two of three words shared: cos ~ 2/3


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
