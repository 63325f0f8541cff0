"""Data tools.

  unidet data synth   --out DIR [--seed S] [--size tiny|small|full] [--embed-dim D]
  unidet data subset  --ann X.json --percent P [--seed S]      -> X.{S}@{P}.json (official rule)
  unidet data catinfo --ann X.json                             -> X_cat_info.json
  unidet data check   --ann X.json [--img-dir D]               (exit 1 if any problem)
  unidet data show    --ann X.json --img-dir D --out grid.png [--num N]
"""
from __future__ import annotations

import json
import os.path as osp
import sys

HELP = "datasets: synthetic world, subsets, category info, checks, previews"


def add_arguments(parser):
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    p = sub.add_parser("synth", help="generate the synthetic open world (COCO/LVIS json, images, embeddings)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", choices=("tiny", "small", "full"), default="small")
    p.add_argument("--embed-dim", type=int, default=None, help="text embedding dimension (default 1024)")
    p = sub.add_parser("subset", help="random image subset, official extract_random_images.py rule")
    p.add_argument("--ann", required=True)
    p.add_argument("--percent", type=float, required=True)
    p.add_argument("--seed", type=int, default=1)
    p = sub.add_parser("catinfo", help="category image/instance counts, official get_cat_info.py")
    p.add_argument("--ann", required=True)
    p = sub.add_parser("check", help="validate an annotation file and its images; lists every problem")
    p.add_argument("--ann", required=True)
    p.add_argument("--img-dir", default=None, help="image folder (img_prefix); omit to skip image checks")
    p.add_argument("--quiet", action="store_true", help="do not print notes")
    p = sub.add_parser("show", help="PNG grid of annotated images")
    p.add_argument("--ann", required=True)
    p.add_argument("--img-dir", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--num", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    parser.set_defaults(_data_parser=parser)


def _read(path):
    from ..data.coco import load_json_file  # errors name the file

    return load_json_file(path)


def run(args) -> int:
    cmd = getattr(args, "data_command", None)
    if cmd is None:
        args._data_parser.print_help()
        return 2
    return {"synth": _synth, "subset": _subset, "catinfo": _catinfo, "check": _check, "show": _show}[cmd](args)


def _synth(args) -> int:
    import time

    from ..data.synthetic import generate_world
    from ..text.synthetic_encoder import DEFAULT_DIM

    t = time.time()
    world = generate_world(args.out, seed=args.seed, size=args.size, embed_dim=args.embed_dim or DEFAULT_DIM)
    s = world["stats"]
    print(f"synthetic world ({args.size}, seed {args.seed}) written to {args.out} in {time.time() - t:.1f} s")
    for k, info in world["training_sets"].items():
        print(f"  train_{k}.json ({info['description']}): {s[f'train_{k}_images']} images, {s[f'train_{k}_boxes']} "
              f"boxes, {info['classes']} classes, {s[f'train_{k}_unlabelled_objects']} unlabelled objects")
    rule = world["frequency_rule"]
    print(f"  val_lvis.json: {s['val_images']} images, {s['val_boxes']} boxes, {len(world['vocabularies']['test'])} "
          f"classes ({len(world['vocabularies']['novel'])} novel; rare/common/frequent "
          f"{'/'.join(str(rule['counts'][g]) for g in 'rcf')})")
    print(f"  web.json (world-CLIP pretraining): {s['web_images']} small scenes, {s['web_boxes']} named "
          "objects of every class")
    print(f"  embeddings: {', '.join(sorted(v for k, v in world['files'].items() if k.startswith('emb_')))}; "
          "vocabulary split and statistics: world.json")
    return 0


def _subset(args) -> int:
    from ..data.ann_tools import random_subset, subset_filename

    data = _read(args.ann)
    out = random_subset(data, args.percent, args.seed)
    path = subset_filename(args.ann, args.seed, args.percent)
    with open(path, "w") as f:
        json.dump(out, f)
    print(f"{path}: {len(out['images'])} of {len(data['images'])} images, {len(out['annotations'])} annotations")
    return 0


def _catinfo(args) -> int:
    from ..data.ann_tools import cat_info_filename, category_info

    cats = category_info(_read(args.ann))
    path = cat_info_filename(args.ann)
    with open(path, "w") as f:
        json.dump(cats, f)
    zero = sum(c["image_count"] == 0 for c in cats)
    print(f"{path}: {len(cats)} categories ({zero} with no image)")
    return 0


def _check(args) -> int:
    from ..data.ann_tools import check_annotations

    problems, notes = check_annotations(args.ann, args.img_dir)
    if not args.quiet:
        for n in notes:
            print(f"note: {n}")
    for p in problems:
        print(f"PROBLEM: {p}")
    print(f"{args.ann}: {len(problems)} problem(s), {len(notes)} note(s)"
          + ("" if args.img_dir else " (images not checked: no --img-dir)"))
    return 1 if problems else 0


def _show(args) -> int:
    import numpy as np

    from ..data.transforms import ImageLoadError, read_image
    from ..visualize import class_color, draw_detections, image_grid, save_rgb

    data = _read(args.ann)
    names = {c["id"]: c["name"] for c in data["categories"]}
    by_img = {}
    for a in data["annotations"]:
        by_img.setdefault(a["image_id"], []).append(a)
    images = data["images"]
    rng = np.random.default_rng(args.seed)
    pick = rng.choice(len(images), size=min(args.num, len(images)), replace=False) if images else []
    tiles = []
    for i in sorted(int(k) for k in pick):
        img_info = images[i]
        name = img_info.get("file_name") or img_info["coco_url"].replace("http://images.cocodataset.org/", "")
        try:
            img = read_image(osp.join(args.img_dir, name), channel_order="rgb")
        except ImageLoadError as e:
            print(f"PROBLEM: {e}", file=sys.stderr)
            return 1
        anns = by_img.get(img_info["id"], [])
        boxes = [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)]
        texts = [names.get(a["category_id"], str(a["category_id"])) for a in anns]
        tiles.append(draw_detections(img, boxes, texts, [class_color(a["category_id"]) for a in anns]))
    if not tiles:
        print(f"{args.ann}: no images to show", file=sys.stderr)
        return 1
    save_rgb(args.out, image_grid(tiles))
    print(f"{args.out}: {len(pick)} images")
    return 0
