"""The synthetic open world: a seeded, few-second stand-in for COCO + Objects365 → LVIS.

Classes are colour-shape phrases (``"red star"``): 8 shapes × 6 colours = 48 classes, category id
``1 + colour_index * 8 + shape_index``. The vocabulary is split from the seed into

* **novel** (8 classes): one per shape, colours spread so every colour and every shape word still
  occurs in seen classes. Novel classes are never drawn in training images (labelled or not): they
  can only be recognised zero-shot, through the text space (``"red star"`` = red + star).
* **seen**: 40 classes; set A ("coco-like") labels 22 of them, set B ("objects365-like") 30, 12 are
  shared. Object classes follow a long-tailed (Zipf, exponent 1) distribution per set.

Training images of set S contain objects of S's vocabulary (labelled) and, with probability 0.25 per
object, objects of the other set's vocabulary that S lacks: drawn but **unlabelled**, as in real data.
The test set ("lvis-like") draws classes uniformly from all 48, labelled exhaustively, in LVIS v1 format:
``neg_category_ids`` = every category absent from the image (the labelling is exhaustive),
``not_exhaustive_category_ids`` = ``[]``; each category carries ``image_count``/``instance_count``
(labelled training images/instances over A ∪ B) and ``frequency`` from the LVIS rule scaled to the
training-set size N: LVIS marks < 10 training images rare and ≥ 100 frequent; here the thresholds are
``10·N/1000`` and ``100·N/1000`` (rounded up, at least 1), i.e. LVIS's rule applied as if to 1000
images. Novel classes (0 images) are therefore always rare.

Images are 256–384 px on each side (several aspect ratios), 3–8 objects each with sizes from 12 px to
~55 % of the short side, partial overlaps (a new object may cover at most half of an earlier one),
on cluttered low-saturation backgrounds (noise, stripes, blobs, lines) so that colour identifies the
objects but not trivially their positions. Box = tight pixel box of the drawn shape; ``area`` = box area.

Outputs (``generate_world(out_dir)``): ``images/{train_a,train_b,val}/*.jpg``, ``train_a.json``,
``train_b.json`` (COCO), ``val_lvis.json`` (LVIS v1), ``train_{a,b}_cat_info.json``, text embeddings
``emb_a.npy``, ``emb_b.npy``, ``emb_lvis.npy`` ((C, D) rows in category-id order, from
:class:`~unidetector.text.synthetic_encoder.SyntheticTextEncoder`), and ``world.json`` (vocabulary split,
thresholds, file list). Everything is a function of ``(seed, size)``.
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

SHAPES = ("circle", "square", "triangle", "star", "hexagon", "cross", "ring", "diamond")
COLOURS = {  # RGB
    "red": (220, 35, 35), "green": (35, 175, 55), "blue": (40, 80, 225),
    "yellow": (240, 215, 35), "purple": (150, 55, 195), "orange": (250, 140, 25),
}
# images per training set and in the test set; "tiny" runs the pipeline once to compile its kernels
SIZES = {"tiny": dict(train=8, test=4), "small": dict(train=150, test=60), "full": dict(train=600, test=240)}
NUM_NOVEL, NUM_A, NUM_B = 8, 22, 30
UNLABELLED_PROB = 0.25
IMG_RANGE = (256, 384)
LVIS_RARE, LVIS_FREQUENT, LVIS_REFERENCE_IMAGES = 10, 100, 1000


def class_table() -> list:
    out = []
    for ci, colour in enumerate(COLOURS):
        for si, shape in enumerate(SHAPES):
            out.append(dict(id=1 + ci * len(SHAPES) + si, name=f"{colour} {shape}", colour=colour, shape=shape))
    return out


def split_vocabulary(seed: int) -> dict:
    """Category ids of A, B, novel (seeded; see the module doc)."""
    rng = np.random.default_rng([seed, 1])
    n_shapes, n_col = len(SHAPES), len(COLOURS)
    shape_perm = rng.permutation(n_shapes)
    col_offset = int(rng.integers(n_col))
    novel = sorted(1 + ((i + col_offset) % n_col) * n_shapes + int(shape_perm[i]) for i in range(NUM_NOVEL))
    seen = [c for c in range(1, n_shapes * n_col + 1) if c not in novel]
    seen = [seen[i] for i in rng.permutation(len(seen))]
    a = sorted(seen[:NUM_A])
    b = sorted(seen[len(seen) - NUM_B:])
    return dict(a=a, b=b, novel=novel)


def frequency_thresholds(num_train_images: int) -> tuple:
    scale = num_train_images / LVIS_REFERENCE_IMAGES
    return max(1, math.ceil(LVIS_RARE * scale)), max(1, math.ceil(LVIS_FREQUENT * scale))


# ---------------------------------------------------------------------------------------------- drawing
def _background(rng, h, w) -> np.ndarray:
    base = rng.uniform(70, 190)
    img = np.empty((h, w, 3), np.float32)
    img[:] = base + rng.uniform(-15, 15, size=3)
    # stripes
    if rng.random() < 0.7:
        theta = rng.uniform(0, np.pi)
        period = rng.uniform(8, 48)
        yy, xx = np.mgrid[0:h, 0:w]
        phase = (xx * np.cos(theta) + yy * np.sin(theta)) * (2 * np.pi / period)
        img += (rng.uniform(8, 25) * np.sin(phase))[..., None] * (1 + rng.uniform(-0.2, 0.2, size=3))
    # blobs and lines of muted colours
    for _ in range(int(rng.integers(3, 10))):
        grey = rng.uniform(40, 220)
        colour = tuple(float(np.clip(grey + v, 0, 255)) for v in rng.uniform(-25, 25, size=3))
        if rng.random() < 0.6:
            centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            axes = (int(rng.integers(8, w // 3)), int(rng.integers(8, h // 3)))
            cv2.ellipse(img, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1)
        else:
            p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            p2 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            cv2.line(img, p1, p2, colour, int(rng.integers(1, 5)))
    img += rng.normal(0, rng.uniform(5, 18), size=img.shape).astype(np.float32)
    return img


def _polygon(shape: str, cx, cy, s, theta) -> np.ndarray:
    r = s / 2.0
    if shape == "square":
        q = 0.72 * r
        pts = [(-q, -q), (q, -q), (q, q), (-q, q)]
    elif shape == "triangle":
        pts = [(r * math.cos(a), r * math.sin(a)) for a in np.arange(3) * 2 * math.pi / 3 - math.pi / 2]
    elif shape == "hexagon":
        pts = [(r * math.cos(a), r * math.sin(a)) for a in np.arange(6) * math.pi / 3]
    elif shape == "star":
        pts = [((r if k % 2 == 0 else 0.42 * r) * math.cos(a), (r if k % 2 == 0 else 0.42 * r) * math.sin(a))
               for k, a in enumerate(np.arange(10) * math.pi / 5 - math.pi / 2)]
    elif shape == "diamond":
        pts = [(0, -r), (0.58 * r, 0), (0, r), (-0.58 * r, 0)]
    elif shape == "cross":
        t = 0.33 * r
        pts = [(-t, -r), (t, -r), (t, -t), (r, -t), (r, t), (t, t), (t, r), (-t, r), (-t, t), (-r, t), (-r, -t),
               (-t, -t)]
    else:
        raise ValueError(shape)
    c, sn = math.cos(theta), math.sin(theta)
    return np.array([(cx + x * c - y * sn, cy + x * sn + y * c) for x, y in pts])


def _draw_object(img, rng, shape, colour, cx, cy, s) -> list:
    """Draw one object; returns its tight box [x1, y1, x2, y2] in pixel-edge coordinates."""
    col = tuple(float(np.clip(v + rng.uniform(-18, 18), 0, 255)) for v in colour)
    edge = tuple(v * 0.55 for v in col)
    if shape in ("circle", "ring"):
        r = max(3, int(round(s / 2)))
        cxi, cyi = int(round(cx)), int(round(cy))
        if shape == "circle":
            cv2.circle(img, (cxi, cyi), r, col, -1)
            cv2.circle(img, (cxi, cyi), r, edge, 1)
        else:
            t = max(2, int(round(r * 0.35)))
            cv2.circle(img, (cxi, cyi), r - t // 2, col, t)
        box = [cxi - r, cyi - r, cxi + r + 1, cyi + r + 1]
    else:
        pts = np.round(_polygon(shape, cx, cy, s, rng.uniform(0, 2 * math.pi))).astype(np.int32)
        cv2.fillPoly(img, [pts], col)
        cv2.polylines(img, [pts], True, edge, 1)
        box = [int(pts[:, 0].min()), int(pts[:, 1].min()), int(pts[:, 0].max()) + 1, int(pts[:, 1].max()) + 1]
    h, w = img.shape[:2]
    return [max(0, box[0]), max(0, box[1]), min(w, box[2]), min(h, box[3])]


def _layout(rng, h, w, n) -> list:
    """Centres and sizes of up to n objects, largest first, each covering ≤ half of any earlier box."""
    short = min(h, w)
    sizes = np.sort(np.exp(rng.uniform(math.log(12), math.log(0.55 * short), size=n)))[::-1]
    placed = []
    for s in sizes:
        for _ in range(30):
            cx = rng.uniform(s / 2 + 1, w - s / 2 - 1)
            cy = rng.uniform(s / 2 + 1, h - s / 2 - 1)
            box = np.array([cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2])
            ok = True
            for _, _, _, other in placed:
                iw = min(box[2], other[2]) - max(box[0], other[0])
                ih = min(box[3], other[3]) - max(box[1], other[1])
                if iw > 0 and ih > 0 and iw * ih > 0.5 * (other[2] - other[0]) * (other[3] - other[1]):
                    ok = False
                    break
            if ok:
                placed.append((cx, cy, s, box))
                break
    return placed


def _make_image(rng, classes_by_id, class_ids, labelled_ids, path):
    h, w = (int(v) for v in rng.integers(IMG_RANGE[0], IMG_RANGE[1] + 1, size=2))
    img = _background(rng, h, w)
    objs = []
    for (cx, cy, s, _), cid in zip(_layout(rng, h, w, len(class_ids)), class_ids):
        c = classes_by_id[cid]
        box = _draw_object(img, rng, c["shape"], COLOURS[c["colour"]], cx, cy, s)
        objs.append((cid, box))
    img = np.clip(img, 0, 255).astype(np.uint8)
    cv2.imwrite(path, cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
    anns = [(cid, box) for cid, box in objs if cid in labelled_ids and box[2] - box[0] >= 1 and box[3] - box[1] >= 1]
    return h, w, anns, objs


def _exemplars(rng, classes, img_dir) -> dict:
    """One exemplar image per class (``images/exemplars/<id>.jpg``: one object of the class on a background of
    the world's kind, as a user would crop from a photo): ``{class name: {"file", "box" [x1, y1, x2, y2],
    "size" [h, w]}}``. ``generate_world`` also writes them as ``exemplars.json`` (COCO format) with their boxes
    as a proposal file ``rp_exemplars.pkl`` (score 1), so a test-mode dataset embeds them."""
    os.makedirs(osp.join(img_dir, "exemplars"), exist_ok=True)
    out = {}
    for c in classes:
        h, w = (int(v) for v in rng.integers(IMG_RANGE[0], IMG_RANGE[1] + 1, size=2))
        img = _background(rng, h, w)
        size = float(rng.uniform(0.3, 0.5) * min(h, w))
        box = _draw_object(img, rng, c["shape"], COLOURS[c["colour"]], w / 2, h / 2, size)
        fname = f"exemplars/{c['id']:03d}.jpg"
        cv2.imwrite(osp.join(img_dir, fname), cv2.cvtColor(np.clip(img, 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 92])
        out[c["name"]] = {"file": fname, "box": [int(v) for v in box], "size": [h, w]}
    return out


def _zipf_weights(rng, n) -> np.ndarray:
    w = 1.0 / (1 + rng.permutation(n)).astype(np.float64)
    return w / w.sum()


def _annotation(ann_id, img_id, cid, box, lvis=False) -> dict:
    x1, y1, x2, y2 = (float(v) for v in box)
    a = dict(id=ann_id, image_id=img_id, category_id=cid, bbox=[x1, y1, x2 - x1, y2 - y1],
             area=(x2 - x1) * (y2 - y1), segmentation=[[x1, y1, x2, y1, x2, y2, x1, y2]])
    if not lvis:
        a["iscrowd"] = 0
    return a


def _train_set(rng, name, vocab, other, classes_by_id, img_dir, n_images, start_img_id):
    weights = _zipf_weights(rng, len(vocab))
    foreign = [c for c in other if c not in vocab]
    images, anns, unlabelled = [], [], 0
    os.makedirs(osp.join(img_dir, name), exist_ok=True)
    for k in range(n_images):
        img_id = start_img_id + k
        n = int(rng.integers(3, 9))
        ids = [int(rng.choice(foreign)) if foreign and rng.random() < UNLABELLED_PROB
               else int(rng.choice(vocab, p=weights)) for _ in range(n)]
        fname = f"{name}/{img_id:06d}.jpg"
        h, w, labelled, drawn = _make_image(rng, classes_by_id, ids, set(vocab), osp.join(img_dir, fname))
        unlabelled += len(drawn) - len(labelled)
        images.append(dict(id=img_id, file_name=fname, width=w, height=h))
        for cid, box in labelled:
            anns.append(_annotation(len(anns) + 1, img_id, cid, box))
    cats = [dict(id=c, name=classes_by_id[c]["name"], supercategory=classes_by_id[c]["shape"]) for c in sorted(vocab)]
    return dict(info=dict(description=f"synthetic open world, training set {name}"), images=images,
                annotations=anns, categories=cats), unlabelled


def generate_world(out_dir: str, seed: int = 0, size: str = "small", embed_dim: int = DEFAULT_DIM) -> dict:
    """Write the synthetic world into ``out_dir``; returns the ``world.json`` content."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    counts = SIZES[size]
    os.makedirs(out_dir, exist_ok=True)
    img_dir = osp.join(out_dir, "images")
    classes = class_table()
    by_id = {c["id"]: c for c in classes}
    split = split_vocabulary(seed)
    rng = np.random.default_rng([seed, 2])

    train_a, unl_a = _train_set(rng, "train_a", split["a"], split["b"], by_id, img_dir, counts["train"], 1)
    train_b, unl_b = _train_set(rng, "train_b", split["b"], split["a"], by_id, img_dir, counts["train"], 100001)

    # frequency from labelled training image counts over A ∪ B
    img_count = {c["id"]: 0 for c in classes}
    inst_count = {c["id"]: 0 for c in classes}
    for data in (train_a, train_b):
        for c in category_info(data):
            img_count[c["id"]] += c["image_count"]
            inst_count[c["id"]] += c["instance_count"]
    n_train = len(train_a["images"]) + len(train_b["images"])
    t_rare, t_freq = frequency_thresholds(n_train)
    freq = {cid: ("r" if n < t_rare else "c" if n < t_freq else "f") for cid, n in img_count.items()}

    # exhaustively labelled test set
    os.makedirs(osp.join(img_dir, "val"), exist_ok=True)
    all_ids = [c["id"] for c in classes]
    images, anns = [], []
    for k in range(counts["test"]):
        img_id = 200001 + k
        ids = [int(rng.choice(all_ids)) for _ in range(int(rng.integers(3, 9)))]
        fname = f"val/{img_id:06d}.jpg"
        h, w, labelled, _ = _make_image(rng, by_id, ids, set(all_ids), osp.join(img_dir, fname))
        present = {cid for cid, _ in labelled}
        images.append(dict(id=img_id, file_name=fname, width=w, height=h,
                           neg_category_ids=[c for c in all_ids if c not in present], not_exhaustive_category_ids=[]))
        for cid, box in labelled:
            anns.append(_annotation(len(anns) + 1, img_id, cid, box, lvis=True))
    lvis_cats = [{"id": c["id"], "name": c["name"], "synset": f"{c['shape']}.n.01", "synonyms": [c["name"]],
                  "def": f"a {c['name']} drawn on a cluttered background", "frequency": freq[c["id"]],
                  "image_count": img_count[c["id"]], "instance_count": inst_count[c["id"]]} for c in classes]
    val = dict(info=dict(description="synthetic open world, LVIS-style test set"), images=images, annotations=anns,
               categories=lvis_cats, licenses=[])

    files = {}
    for name, data in (("train_a.json", train_a), ("train_b.json", train_b), ("val_lvis.json", val)):
        with open(osp.join(out_dir, name), "w") as f:
            json.dump(data, f)
        files[name[:-5]] = name
    for name, data in (("train_a", train_a), ("train_b", train_b)):
        with open(osp.join(out_dir, f"{name}_cat_info.json"), "w") as f:
            json.dump(category_info(data), f)
        files[f"{name}_cat_info"] = f"{name}_cat_info.json"
    enc = SyntheticTextEncoder(dim=embed_dim, seed=0)
    for key, data in (("a", train_a), ("b", train_b), ("lvis", val)):
        enc.save([c["name"] for c in sorted(data["categories"], key=lambda c: c["id"])],
                 osp.join(out_dir, f"emb_{key}.npy"))
        files[f"emb_{key}"] = f"emb_{key}.npy"
    files["images"] = "images"
    exemplars = _exemplars(np.random.default_rng([seed, 3]), classes, img_dir)  # own RNG: the sets stay as they were
    ex_images, ex_anns = [], []
    for k, (c, e) in enumerate(zip(classes, exemplars.values()), 1):   # one image per class, in class order
        ex_images.append(dict(id=k, file_name=e["file"], width=e["size"][1], height=e["size"][0],
                              neg_category_ids=[], not_exhaustive_category_ids=[]))
        ex_anns.append(_annotation(k, k, c["id"], e["box"]))
    with open(osp.join(out_dir, "exemplars.json"), "w") as f:
        json.dump(dict(images=ex_images, annotations=ex_anns, categories=lvis_cats), f)
    save_proposals([np.float32([[*e["box"], 1.0]]) for e in exemplars.values()], osp.join(out_dir, "rp_exemplars.pkl"))
    files.update(exemplars="exemplars.json", exemplar_boxes="rp_exemplars.pkl")

    def role(cid):
        return ("novel" if cid in split["novel"] else
                "seen-both" if cid in split["a"] and cid in split["b"] else
                "seen-A" if cid in split["a"] else "seen-B")

    world = dict(
        seed=seed, size=size, embed_dim=embed_dim, shapes=list(SHAPES), colours=list(COLOURS),
        classes=[dict(c, split=role(c["id"]), frequency=freq[c["id"]], train_image_count=img_count[c["id"]])
                 for c in classes],
        vocabularies=dict(a=split["a"], b=split["b"], novel=split["novel"], seen=sorted(set(split["a"]) | set(split["b"])),
                          test=all_ids),
        frequency_rule=dict(rare_below=t_rare, frequent_from=t_freq, train_images=n_train,
                            rule="LVIS thresholds (10, 100 training images) scaled by train_images/1000"),
        novel_in_training_images=False, unlabelled_prob=UNLABELLED_PROB,
        stats=dict(train_a_images=len(train_a["images"]), train_a_boxes=len(train_a["annotations"]),
                   train_a_unlabelled_objects=unl_a, train_b_images=len(train_b["images"]),
                   train_b_boxes=len(train_b["annotations"]), train_b_unlabelled_objects=unl_b,
                   val_images=len(images), val_boxes=len(anns)),
        files=files,
        exemplars=exemplars,
    )
    with open(osp.join(out_dir, "world.json"), "w") as f:
        json.dump(world, f, indent=1)
    return world
