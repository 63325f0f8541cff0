"""The synthetic open world: a seeded, CPU-sized miniature of COCO + Objects365 (+ OpenImages) → LVIS.

**Vocabulary.** 320 classes named ``"<pattern> <colour> <shape>"`` (``"striped red star"``): 5 patterns ×
8 colours × 8 shapes (:mod:`.synthetic_draw`), category id ``1 + (pattern · 8 + colour) · 8 + shape``.
LVIS has 1203 classes; what is kept from it is a vocabulary of several hundred composable names, a long
tail, and a test-time cap (300 detections per image) far below ``proposals × classes``.

**Label spaces** (from the seed). 40 classes (12.5 %) are **novel**: labelled in no training set. The 280
seen classes are split into three training sets with different, partly overlapping label spaces, as
COCO / Objects365 / OpenImages are: ``a`` ("coco-like") 64 classes, ``b`` ("objects365-like") 160, ``c``
("openimages-like") 120; every seen class is in at least one set. Classes have one popularity shared by all
sets, a power law over a random ranking (``p ∝ rank^-0.8``): a training image of set S draws its labelled
objects from S's vocabulary by popularity. Every training image also holds **unlabelled** objects: each
object is, with probability 0.3, of a class outside S's label space (another set's class, or with
probability 0.05 a novel class), drawn but not annotated, as real data has.

**Frequencies.** LVIS's r/c/f rule (< 10 and ≥ 100 training images) assumes ~300 labelled images per class;
ours have a few. The split is therefore taken from LVIS's class fractions (337 rare, 461 common, 405
frequent of 1203: 28.0 / 38.3 / 33.7 %): the thresholds are the training image counts (summed over the sets)
at those quantiles, and a class without a labelled training image is always rare. Everything is counted
from the training annotations, never from the test set.

**Test set** ("lvis-like", LVIS v1 format): objects of all 320 classes uniformly, labelled exhaustively:
``neg_category_ids`` = every category absent from the image, ``not_exhaustive_category_ids`` = ``[]``; the
categories carry ``image_count`` / ``instance_count`` (training, over all sets) and ``frequency``.

**Web set** (world-CLIP pretraining, :mod:`unidetector.engine.world_clip`): small scenes of 2-4 objects of
*all* classes, every object named by its phrase, as the web data CLIP / RegionCLIP learn from covers LVIS's
rare classes; objects have the sizes and overlaps of the detection images, so the pretraining sees regions as
the detector will. It has its own random stream and does not depend on ``size`` (tiny excepted), so the quick
and full runs share one world-CLIP. ``rp_web.pkl`` holds jittered copies of every box (the regions of the
pretraining).

Images are 256–384 px on each side, 4–10 objects each (20 px to 45 % of the short side), partial overlaps
(a new object covers at most half of an earlier one), on cluttered low-saturation backgrounds.

Outputs (:func:`generate_world`): ``images/{train_a,train_b,train_c,val,web,exemplars}/*.jpg``;
``train_{a,b,c}.json`` (COCO) with ``train_{a,b,c}_cat_info.json``; ``val_lvis.json`` (LVIS v1);
``web.json`` (COCO, all classes) with ``rp_web.pkl``; text embeddings ``emb_{a,b,c}.npy``, ``emb_lvis.npy``
(= ``emb_web.npy``, all classes) — ``(C, D)`` rows in category-id order from
:class:`~unidetector.text.synthetic_encoder.SyntheticTextEncoder`; one exemplar image per novel class
(``exemplars.json`` + ``rp_exemplars.pkl``); ``world.json`` (classes, label spaces, frequency rule,
statistics, files). Everything is a function of ``(seed, size)``.
"""
from __future__ import annotations

import json
import math
import os
import os.path as osp

import cv2
import numpy as np

from ..text.synthetic_encoder import DEFAULT_DIM, SyntheticTextEncoder
from .ann_tools import category_info
from .proposals import save_proposals
from .synthetic_draw import COLOURS, PATTERNS, SHAPES, background, draw_object, layout

#: Bumped whenever the same (seed, size) would give other images or labels (keys the world-CLIP cache).
WORLD_VERSION = 5
SETS = {"a": ("coco-like", 64), "b": ("objects365-like", 160), "c": ("openimages-like", 120)}
NUM_NOVEL = 40
ONLY_IN_A = 40  # seen classes labelled only in set a (the others are in b or c, some also in a)
POPULARITY_EXPONENT = 0.8
UNLABELLED_PROB, NOVEL_AMONG_UNLABELLED = 0.3, 0.05
OBJECTS_PER_IMAGE = (4, 10)
IMG_RANGE = (256, 384)
MIN_OBJECT, MAX_OBJECT_FRAC = 20, 0.45
#: LVIS v1's class fractions per frequency group (337, 461, 405 of 1203 classes)
LVIS_FRACTIONS = {"r": 337 / 1203, "c": 461 / 1203, "f": 405 / 1203}
WEB_IMAGES = 6000
#: the world-CLIP's input side (configs/synthetic/world_clip.py resizes every web scene to it), the range of
#: upsampling from the drawn scene to it, objects per scene and their largest size as a fraction of the side
WEB_SIDE, WEB_UPSCALE, WEB_OBJECTS, WEB_MAX_OBJECT_FRAC = 128, (1.0, 1.5), (2, 4), 0.8
JITTERS_PER_BOX = 2
# images per training set, in the test set and in the web set; "tiny" runs every step once (compiles kernels)
SIZES = {"tiny": dict(train=8, test=4, web=64), "small": dict(train=100, test=60, web=WEB_IMAGES),
         "full": dict(train=200, test=150, web=WEB_IMAGES)}
TRAIN_IMG_ID0 = {"a": 1, "b": 100001, "c": 150001}
VAL_IMG_ID0, WEB_IMG_ID0 = 200001, 300001


def class_table() -> list:
    """The 320 classes: ``id``, ``name``, ``pattern``, ``colour``, ``shape``."""
    out = []
    for pi, pattern in enumerate(PATTERNS):
        for ci, colour in enumerate(COLOURS):
            for si, shape in enumerate(SHAPES):
                out.append(dict(id=1 + (pi * len(COLOURS) + ci) * len(SHAPES) + si,
                                name=f"{pattern} {colour} {shape}", pattern=pattern, colour=colour, shape=shape))
    return out


def split_vocabulary(seed: int) -> dict:
    """Category ids of each training set, the novel classes, and every seen class's popularity (seeded)."""
    rng = np.random.default_rng([seed, 1])
    ids = np.array([c["id"] for c in class_table()])
    order = ids[rng.permutation(len(ids))]
    novel, seen = sorted(int(c) for c in order[:NUM_NOVEL]), [int(c) for c in order[NUM_NOVEL:]]
    n_c, end = SETS["c"][1], len(seen) - ONLY_IN_A
    b, c, only_a = seen[:SETS["b"][1]], seen[end - n_c:end], seen[end:]      # c overlaps b
    a = only_a + [int(k) for k in rng.choice(seen[:end], SETS["a"][1] - ONLY_IN_A, replace=False)]
    ranks = rng.permutation(len(seen)) + 1
    popularity = {k: float(r) ** -POPULARITY_EXPONENT for k, r in zip(seen, ranks)}
    return dict(a=sorted(a), b=sorted(b), c=sorted(c), novel=novel, popularity=popularity)


def frequency_groups(image_counts: dict) -> tuple:
    """``({id: 'r'|'c'|'f'}, (rare_below, frequent_from))``: thresholds at LVIS's class fractions of the
    sorted training image counts; a class with no labelled training image is rare."""
    counts = np.sort(np.array(list(image_counts.values())))
    n = len(counts)
    rare_below = max(1, int(counts[int(LVIS_FRACTIONS["r"] * n)]))
    frequent_from = max(rare_below + 1, int(counts[min(n - 1, int(math.ceil((1 - LVIS_FRACTIONS["f"]) * n)))]))
    groups = {k: "r" if v < rare_below else "c" if v < frequent_from else "f" for k, v in image_counts.items()}
    return groups, (rare_below, frequent_from)


def _make_image(rng, classes_by_id, class_ids, labelled_ids, path):
    """Draw an image with objects of ``class_ids``; returns ``(h, w, labelled [(id, box)], drawn [(id, box)])``."""
    h, w = (int(v) for v in rng.integers(IMG_RANGE[0], IMG_RANGE[1] + 1, size=2))
    img = background(rng, h, w)
    objs = []
    for (cx, cy, s), cid in zip(layout(rng, h, w, len(class_ids), MIN_OBJECT, MAX_OBJECT_FRAC), class_ids):
        c = classes_by_id[cid]
        box = draw_object(img, rng, c["shape"], COLOURS[c["colour"]], c["pattern"], cx, cy, s)
        if box is not None and box[2] - box[0] >= 1 and box[3] - box[1] >= 1:
            objs.append((cid, box))
    _write_jpg(path, img)
    return h, w, [(cid, box) for cid, box in objs if cid in labelled_ids], objs


def _write_jpg(path, img):
    cv2.imwrite(path, cv2.cvtColor(np.clip(img, 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_JPEG_QUALITY, 92])


def _annotation(ann_id, img_id, cid, box, lvis=False) -> dict:
    x1, y1, x2, y2 = (float(v) for v in box)
    a = dict(id=ann_id, image_id=img_id, category_id=cid, bbox=[x1, y1, x2 - x1, y2 - y1],
             area=(x2 - x1) * (y2 - y1), segmentation=[[x1, y1, x2, y1, x2, y2, x1, y2]])
    if not lvis:
        a["iscrowd"] = 0
    return a


def _num_objects(rng) -> int:
    return int(rng.integers(OBJECTS_PER_IMAGE[0], OBJECTS_PER_IMAGE[1] + 1))


def _coco_set(name, description, images, anns, cat_ids, by_id) -> dict:
    cats = [dict(id=c, name=by_id[c]["name"], supercategory=by_id[c]["shape"]) for c in sorted(cat_ids)]
    return dict(info=dict(description=f"synthetic open world, {description}"), images=images, annotations=anns,
                categories=cats)


def _train_set(rng, key, split, by_id, img_dir, n_images):
    """Training set ``key``: labelled objects of its vocabulary by popularity, unlabelled foreign ones."""
    vocab = split[key]
    weights = np.array([split["popularity"][c] for c in vocab])
    weights /= weights.sum()
    foreign = [c for c in split["popularity"] if c not in set(vocab)]
    name = f"train_{key}"
    images, anns, unlabelled, novel_drawn = [], [], 0, 0
    os.makedirs(osp.join(img_dir, name), exist_ok=True)
    for k in range(n_images):
        img_id = TRAIN_IMG_ID0[key] + k
        ids = []
        for _ in range(_num_objects(rng)):
            if rng.random() >= UNLABELLED_PROB:
                ids.append(int(rng.choice(vocab, p=weights)))
            elif rng.random() < NOVEL_AMONG_UNLABELLED or not foreign:
                ids.append(int(rng.choice(split["novel"])))
            else:
                ids.append(int(rng.choice(foreign)))
        fname = f"{name}/{img_id:06d}.jpg"
        h, w, labelled, drawn = _make_image(rng, by_id, ids, set(vocab), osp.join(img_dir, fname))
        unlabelled += len(drawn) - len(labelled)
        novel_drawn += sum(cid in set(split["novel"]) for cid, _ in drawn)
        images.append(dict(id=img_id, file_name=fname, width=w, height=h))
        for cid, box in labelled:
            anns.append(_annotation(len(anns) + 1, img_id, cid, box))
    data = _coco_set(name, f"training set {key} ({SETS[key][0]})", images, anns, vocab, by_id)
    return data, dict(images=len(images), boxes=len(anns), unlabelled_objects=unlabelled,
                      unlabelled_novel_objects=novel_drawn)


def _jittered(rng, box, n: int, h: int, w: int) -> np.ndarray:
    """``n`` boxes around ``box``: corners moved by up to 12 % of its size (IoU ≳ 0.6) inside the ``h × w``
    image, score 1."""
    x1, y1, x2, y2 = box
    bw, bh = x2 - x1, y2 - y1
    d = rng.uniform(-0.12, 0.12, size=(n, 4)) * np.array([bw, bh, bw, bh])
    out = np.clip(np.array(box, np.float32)[None] + d, 0, [w, h, w, h])
    out[:, 2] = np.maximum(out[:, 2], out[:, 0] + 1)
    out[:, 3] = np.maximum(out[:, 3], out[:, 1] + 1)
    return np.concatenate([out, np.ones((n, 1))], 1).astype(np.float32)


def _web_set(seed, by_id, img_dir, n_images):
    """The world-CLIP's images: small scenes of ``WEB_OBJECTS`` objects of any classes, every object named by its
    phrase (RegionCLIP's region-concept pairs from web images). Objects are 20 px to ``WEB_MAX_OBJECT_FRAC`` of
    the side, placed as in the detection images (partial overlaps, clutter), so that the pretraining sees the
    sizes and occlusions the detector's regions have; each scene is drawn at ``1/u`` of the pretraining side
    ``WEB_SIDE`` (``u`` in ``WEB_UPSCALE``) and resized back by the pipeline, as the detector upsamples its
    images. Returns ``(coco dict, proposals)`` (jittered copies of every box)."""
    rng = np.random.default_rng([seed, 4])
    all_ids = sorted(by_id)
    os.makedirs(osp.join(img_dir, "web"), exist_ok=True)
    images, anns, proposals = [], [], []
    for k in range(n_images):
        img_id = WEB_IMG_ID0 + k
        side = int(round(WEB_SIDE / rng.uniform(*WEB_UPSCALE)))
        img = background(rng, side, side)
        n = int(rng.integers(WEB_OBJECTS[0], WEB_OBJECTS[1] + 1))
        boxes = []
        for (cx, cy, s), cid in zip(layout(rng, side, side, n, MIN_OBJECT, WEB_MAX_OBJECT_FRAC),
                                    rng.choice(all_ids, size=n)):
            c = by_id[int(cid)]
            box = draw_object(img, rng, c["shape"], COLOURS[c["colour"]], c["pattern"], cx, cy, s)
            if box is not None and box[2] - box[0] >= 1 and box[3] - box[1] >= 1:
                anns.append(_annotation(len(anns) + 1, img_id, c["id"], box))
                boxes.append(_jittered(rng, box, JITTERS_PER_BOX, side, side))
        fname = f"web/{img_id:06d}.jpg"
        _write_jpg(osp.join(img_dir, fname), img)
        images.append(dict(id=img_id, file_name=fname, width=side, height=side))
        proposals.append(np.concatenate(boxes) if boxes else np.zeros((0, 5), np.float32))
    return _coco_set("web", "web images (small scenes, every object named; world-CLIP pretraining)", images, anns,
                     all_ids, by_id), proposals


def _exemplars(rng, classes, img_dir) -> dict:
    """One exemplar image per class given (one object on a background of the world's kind, as a user would
    crop from a photo): ``{class name: {"file", "box" [x1, y1, x2, y2], "size" [h, w]}}``."""
    os.makedirs(osp.join(img_dir, "exemplars"), exist_ok=True)
    out = {}
    for c in classes:
        h, w = (int(v) for v in rng.integers(IMG_RANGE[0], IMG_RANGE[1] + 1, size=2))
        img = background(rng, h, w)
        size = float(rng.uniform(0.3, 0.5) * min(h, w))
        box = draw_object(img, rng, c["shape"], COLOURS[c["colour"]], c["pattern"], w / 2, h / 2, size)
        fname = f"exemplars/{c['id']:03d}.jpg"
        _write_jpg(osp.join(img_dir, fname), img)
        out[c["name"]] = {"file": fname, "box": [int(v) for v in box], "size": [h, w]}
    return out


def _test_set(rng, by_id, img_dir, n_images, lvis_cats):
    os.makedirs(osp.join(img_dir, "val"), exist_ok=True)
    all_ids = sorted(by_id)
    images, anns = [], []
    for k in range(n_images):
        img_id = VAL_IMG_ID0 + k
        ids = [int(rng.choice(all_ids)) for _ in range(_num_objects(rng))]
        fname = f"val/{img_id:06d}.jpg"
        h, w, labelled, _ = _make_image(rng, by_id, ids, set(all_ids), osp.join(img_dir, fname))
        present = {cid for cid, _ in labelled}
        images.append(dict(id=img_id, file_name=fname, width=w, height=h,
                           neg_category_ids=[c for c in all_ids if c not in present], not_exhaustive_category_ids=[]))
        for cid, box in labelled:
            anns.append(_annotation(len(anns) + 1, img_id, cid, box, lvis=True))
    return dict(info=dict(description="synthetic open world, LVIS-style test set"), images=images, annotations=anns,
                categories=lvis_cats, licenses=[])


def _dump(out_dir, name, data):
    with open(osp.join(out_dir, name), "w") as f:
        json.dump(data, f)
    return name


def generate_world(out_dir: str, seed: int = 0, size: str = "small", embed_dim: int = DEFAULT_DIM,
                   web: bool = True) -> dict:
    """Write the synthetic world into ``out_dir``; returns the ``world.json`` content. ``web=False`` leaves the web
    set (the world-CLIP's images) to :func:`generate_web_set`, for a world-CLIP that comes from the cache: its
    scenes are independent of the rest of the world (their own random stream)."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    counts = SIZES[size]
    os.makedirs(out_dir, exist_ok=True)
    img_dir = osp.join(out_dir, "images")
    classes = class_table()
    by_id = {c["id"]: c for c in classes}
    split = split_vocabulary(seed)
    rng = np.random.default_rng([seed, 2])
    files, stats, train = {}, {}, {}
    for key in SETS:
        train[key], set_stats = _train_set(rng, key, split, by_id, img_dir, counts["train"])
        stats.update({f"train_{key}_{k}": v for k, v in set_stats.items()})

    img_count = {c["id"]: 0 for c in classes}
    inst_count = {c["id"]: 0 for c in classes}
    for data in train.values():
        for c in category_info(data):
            img_count[c["id"]] += c["image_count"]
            inst_count[c["id"]] += c["instance_count"]
    freq, (rare_below, frequent_from) = frequency_groups(img_count)
    lvis_cats = [{"id": c["id"], "name": c["name"], "synset": f"{c['shape']}.n.01", "synonyms": [c["name"]],
                  "def": f"a {c['name']} drawn on a cluttered background", "frequency": freq[c["id"]],
                  "image_count": img_count[c["id"]], "instance_count": inst_count[c["id"]]} for c in classes]
    val = _test_set(rng, by_id, img_dir, counts["test"], lvis_cats)
    stats.update(train_images=sum(len(d["images"]) for d in train.values()), val_images=len(val["images"]),
                 val_boxes=len(val["annotations"]))

    enc = SyntheticTextEncoder(dim=embed_dim, seed=0)
    for key, data in train.items():
        files[f"train_{key}"] = _dump(out_dir, f"train_{key}.json", data)
        files[f"train_{key}_cat_info"] = _dump(out_dir, f"train_{key}_cat_info.json", category_info(data))
        files[f"emb_{key}"] = f"emb_{key}.npy"
        enc.save([c["name"] for c in data["categories"]], osp.join(out_dir, files[f"emb_{key}"]))
    files["val_lvis"] = _dump(out_dir, "val_lvis.json", val)
    for key in ("lvis", "web"):
        files[f"emb_{key}"] = f"emb_{key}.npy"
        enc.save([c["name"] for c in classes], osp.join(out_dir, files[f"emb_{key}"]))

    stats["web_images"] = counts["web"]  # every scene is written, with or without objects
    if web:
        stats.update(_write_web_set(out_dir, seed, by_id, counts["web"], files))

    novel_classes = [by_id[c] for c in split["novel"]]
    exemplars = _exemplars(np.random.default_rng([seed, 3]), novel_classes, img_dir)
    ex_images = [dict(id=k, file_name=e["file"], width=e["size"][1], height=e["size"][0], neg_category_ids=[],
                      not_exhaustive_category_ids=[]) for k, e in enumerate(exemplars.values(), 1)]
    ex_anns = [_annotation(k, k, c["id"], e["box"]) for k, (c, e) in enumerate(zip(novel_classes,
                                                                                   exemplars.values()), 1)]
    files["exemplars"] = _dump(out_dir, "exemplars.json", dict(images=ex_images, annotations=ex_anns,
                                                                categories=lvis_cats))
    save_proposals([np.float32([[*e["box"], 1.0]]) for e in exemplars.values()], osp.join(out_dir, "rp_exemplars.pkl"))
    files.update(exemplar_boxes="rp_exemplars.pkl", images="images")

    def role(cid):
        sets = [k for k in SETS if cid in set(split[k])]
        return "novel" if not sets else "seen-" + "".join(sets)

    world = dict(
        version=WORLD_VERSION, seed=seed, size=size, embed_dim=embed_dim, patterns=list(PATTERNS),
        colours=list(COLOURS), shapes=list(SHAPES),
        classes=[dict(c, split=role(c["id"]), frequency=freq[c["id"]], train_image_count=img_count[c["id"]])
                 for c in classes],
        training_sets={k: dict(description=v[0], classes=len(split[k])) for k, v in SETS.items()},
        vocabularies=dict(**{k: split[k] for k in SETS}, novel=split["novel"],
                          seen=sorted(set().union(*(split[k] for k in SETS))), test=sorted(by_id)),
        frequency_rule=dict(rare_below=rare_below, frequent_from=frequent_from,
                            rule="thresholds on labelled training images (all sets) at LVIS v1's class fractions "
                                 "(28.0 % rare, 33.7 % frequent); never-labelled classes are rare",
                            counts={g: sum(v == g for v in freq.values()) for g in "rcf"}),
        popularity_exponent=POPULARITY_EXPONENT, unlabelled_prob=UNLABELLED_PROB,
        novel_among_unlabelled=NOVEL_AMONG_UNLABELLED, novel_labelled_in_training=False,
        stats=stats, files=files, exemplars=exemplars,
    )
    return _dump_world(out_dir, world)


def _write_web_set(out_dir, seed, by_id, n_images, files) -> dict:
    """Draw the web set into ``out_dir`` (``web.json``, ``rp_web.pkl``), add its files to ``files``; its stats."""
    web, web_boxes = _web_set(seed, by_id, osp.join(out_dir, "images"), n_images)
    files["web"] = _dump(out_dir, "web.json", web)
    save_proposals(web_boxes, osp.join(out_dir, "rp_web.pkl"))
    files["web_boxes"] = "rp_web.pkl"
    return dict(web_images=len(web["images"]), web_boxes=len(web["annotations"]))


def generate_web_set(out_dir: str) -> dict:
    """Draw the web set of the world in ``out_dir`` if :func:`generate_world` left it out (``web=False``) and record
    it in ``world.json``; returns the updated ``world.json`` content."""
    world = load_world(out_dir)
    if "web" not in world["files"]:
        by_id = {c["id"]: c for c in class_table()}
        world["stats"].update(_write_web_set(out_dir, world["seed"], by_id, world["stats"]["web_images"],
                                             world["files"]))
        _dump_world(out_dir, world)
    return world


def load_world(out_dir) -> dict:
    """The ``world.json`` content of the world in ``out_dir``."""
    with open(osp.join(out_dir, "world.json")) as f:
        return json.load(f)


def _dump_world(out_dir, world) -> dict:
    with open(osp.join(out_dir, "world.json"), "w") as f:
        json.dump(world, f, indent=1)
    return world
