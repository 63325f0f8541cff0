"""Detect anything: any vocabulary on your own images.

  unidet detect photo.jpg more_photos/ --classes "red star,blue ring" \\
      --checkpoint work_dirs/stage2_partitioned/latest.pkl \\
      --proposal-checkpoint work_dirs/stage1_cln/latest.pkl --out detections/
  unidet detect imgs/ --vocab lvis --encoder clip:RN50.pt --checkpoint stage2.pkl --proposals rp.pkl
  unidet detect photo.jpg --vocab coco --embeddings coco_clip_a+cname_rn50_manyprompt.npy --checkpoint e2e.pth

IMAGES: files and directories (every image file inside a directory, sorted by name, not recursive).
Per image, OUT gets <name>.png|.jpg (boxes, class names, scores) and <name>.json (COCO result entries
plus class_name, with the image size); OUT/summary.json lists all images, counts and failures.
Unreadable images are reported at the end and make the exit code 1; the others are still processed.

Vocabulary: --classes "a,b,c" (CSV rules: a name with a comma in double quotes, --classes '"red, dark
star",blue ring') or --vocab coco|objects365|lvis|FILE (one name per line: long lists, names with quotes;
or a COCO/LVIS annotation .json: its categories by id, the row order of the official embedding files).
Names equal up to case and spacing ("Red Star", "red  star") are duplicates, an error.
Checkpoints (.pkl from `unidet train`/`unidet convert`, or mmdet .pth files as released): --checkpoint is
a stage-2 model (decoupled; proposals from --proposal-checkpoint STAGE1 or --proposals rp.pkl) or an
end-to-end model (CLIP C4 + RPNHead + CLIP RoI head: proposals from its own RPN). Other kinds (a stage-1
model, a CLIP/RegionCLIP backbone initialisation) are refused with what they are.
Proposals: --proposal-checkpoint STAGE1 (run the CLN on each image), or --proposals rp.pkl (the official
proposal pickle, one (n, 5) [x1, y1, x2, y2, score] array per image, in the order of the expanded
IMAGES; (n, 4) boxes without the score, NaN values and boxes that do not fit their image are errors,
found before the models are built).
Models: the configs stored in the checkpoints (meta['config'], kept by `unidet convert`; --config /
--proposal-config override them; --cfg-options a.b=v ... and --max-dets N change the stage-2 one); the
training model becomes the open-world one (BBoxHeadCLIPInference), built without training-time files.
Official defaults per kind: decoupled, top-100 proposals and s = p^0.3 * o^0.7 (--num-proposals, --beta);
end-to-end, every RPN proposal (its test_cfg.rpn.max_per_img, 1000) and sigmoid scores only (beta 1).
--vocab lvis applies the official LVIS test settings: up to 300 detections per image (unless --max-dets
or --cfg-options set model.test_cfg.rcnn.max_per_img).
Text embeddings: --embeddings E.npy (precomputed: `unidet embed` or the official clip_embeddings/*.npy,
rows = the vocabulary's classes in order), else --encoder clip:PATH | synthetic (default: what the
checkpoint was trained with; a checkpoint that does not record it needs --encoder; another encoder than the
recorded one is a warning), cached in $UNIDET_CACHE_DIR/embeddings (default ~/.cache/unidetector/embeddings),
a CLIP encoder by the content of its weights file.
Checked before any work: the vocabulary, --num-proposals/--max-dets >= 1, an --out that is not a file, the
proposals.
--classes-swap "d,e": after the run, re-score every image with a second vocabulary from the cached
region features (no backbone, no RoI head) into OUT/swap/, and print the speed-up.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from ..config import DictAction

HELP = "detect any vocabulary on images (boxes, names, scores -> annotated images + JSON)"

KIND_NAMES = {"stage2": "stage-2", "end2end": "end-to-end"}

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def add_arguments(parser):
    parser.add_argument("images", nargs="+", metavar="IMAGES", help="image files and/or directories of images")
    vocab = parser.add_mutually_exclusive_group()
    vocab.add_argument("--classes", help='comma-separated class names, e.g. "red star,blue ring"; quote a name '
                       'with a comma: \'"red, dark star",blue ring\' (long lists: --vocab FILE)')
    vocab.add_argument("--vocab", help="coco | objects365 | lvis | FILE (one class name per line, or an annotation "
                       ".json: its categories by id)")
    parser.add_argument("--exemplar", action="append", default=[], metavar="NAME=IMG[:x1,y1,x2,y2]",
                        help="a class given by an image exemplar (the box in the image's pixels; default: the whole "
                        "image); repeat it for more classes or more exemplars of one class (averaged); a name also in "
                        "--classes mixes the text and the exemplars")
    parser.add_argument("--checkpoint", required=True, help="stage-2 (CLIP RoI classifier) or end-to-end checkpoint "
                        "(.pkl, or an mmdet .pth)")
    props = parser.add_mutually_exclusive_group()
    props.add_argument("--proposal-checkpoint", help="stage-1 checkpoint (CLN) that makes the proposals")
    props.add_argument("--proposals", help="proposal pickle aligned to the images (instead of stage 1)")
    parser.add_argument("--score-thr", type=float, default=0.3, help="keep detections scoring at least this (0.3)")
    parser.add_argument("--beta", type=float, default=None, help="fusion s = p^beta * o^(1-beta) (default: 0.3, "
                        "end-to-end 1 = sigmoid only, as officially)")
    parser.add_argument("--num-proposals", type=int, default=None, help="top proposals per image, at least 1 "
                        "(default: 100; end-to-end: every RPN proposal, its test_cfg.rpn.max_per_img)")
    parser.add_argument("--max-dets", type=int, default=None, help="detections kept per image (the config's "
                        "test_cfg.rcnn.max_per_img; --vocab lvis: 300, the official LVIS setting)")
    parser.add_argument("--encoder", default=None, help="clip:PATH | synthetic[:dim=D,seed=S] (default: the one "
                        "the checkpoint records; required when it records none and --embeddings is not given)")
    parser.add_argument("--embeddings", help="precomputed text embeddings (.npy, (C, D)) of the vocabulary, rows "
                        "in its order: `unidet embed` output or the official clip_embeddings/*.npy")
    parser.add_argument("--config", help="stage-2 / end-to-end config (overrides the one stored in the checkpoint)")
    parser.add_argument("--proposal-config", help="stage-1 config (overrides the one stored in its checkpoint)")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, default=None, metavar="KEY=VALUE",
                        help="change the stage-2 / end-to-end config, e.g. model.test_cfg.rcnn.max_per_img=300")
    parser.add_argument("--out", default="detections", help="output folder (default: ./detections)")
    parser.add_argument("--classes-swap", help="a second vocabulary: re-score the cached regions with it")
    parser.add_argument("--no-draw", action="store_true", help="JSON only, no annotated images")


def list_images(inputs) -> tuple:
    """``(images, missing)``: files as given, directories expanded to their image files (sorted)."""
    images, missing = [], []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            images += sorted(str(f) for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
        elif p.is_file():
            images.append(str(p))
        else:
            missing.append(str(p))
    return images, missing


def _output_names(images) -> list:
    """A unique output stem per image (file stem, ``_<k>`` appended on collisions)."""
    stems, seen = [], {}
    for img in images:
        stem = Path(img).stem or "image"
        k = seen.get(stem, 0)
        seen[stem] = k + 1
        stems.append(stem if k == 0 else f"{stem}_{k}")
    return stems


def write_outputs(detector, image, dets, out_dir: Path, stem: str, image_id: int, draw: bool) -> dict:
    from ..visualize import save_rgb

    h, w = dets.image_size
    record = {"image": str(image), "image_id": image_id, "width": w, "height": h,
              "vocabulary": dets.vocabulary, "detections": dets.to_coco(image_id)}
    json_path = out_dir / f"{stem}.json"
    json_path.write_text(json.dumps(record, indent=1))
    entry = {"image": str(image), "detections": len(dets), "json": str(json_path)}
    if draw:
        ext = Path(image).suffix.lower()
        vis_path = out_dir / f"{stem}{ext if ext in ('.png', '.jpg', '.jpeg') else '.png'}"
        save_rgb(vis_path, detector.draw(image, dets))
        entry["visualization"] = str(vis_path)
    return entry


def image_size(path: str):
    """``(height, width)`` of an image file as decoding will see it (EXIF rotation applied), from its
    header only; None when unreadable (reported when the image is processed)."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            w, h = im.size
            orientation = im.getexif().get(274, 1)
    except Exception:  # noqa: BLE001 - any unreadable header: the image loader reports it later
        return None
    return (w, h) if orientation in (5, 6, 7, 8) else (h, w)


def check_options(args) -> None:
    """Option errors found before any work (:class:`~unidetector.errors.UnidetError`)."""
    from ..errors import UnidetError

    if args.num_proposals is not None and args.num_proposals < 1:
        raise UnidetError(f"--num-proposals must be at least 1 (the top proposals per image), got {args.num_proposals}")
    if args.max_dets is not None and args.max_dets < 1:
        raise UnidetError(f"--max-dets must be at least 1 (detections kept per image), got {args.max_dets}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UnidetError(f"--out {out} is an existing file; give a folder (created when missing) for the "
                          "annotated images, JSON files and summary.json")


def read_given_proposals(path: str, images: list) -> list:
    """The ``--proposals`` pickle checked against the expanded IMAGES: one (n, 5) entry per image, finite,
    scores in [0, 1], boxes that fit their image (errors name the file and the image)."""
    from ..data.proposals import ProposalFileError, check_proposals_fit, check_scored_proposals, load_proposals

    proposals = load_proposals(path)
    if len(proposals) != len(images):
        raise ProposalFileError(f"{path} has {len(proposals)} entries but {len(images)} images were given; the "
                                "pickle must hold one (n, 5) array per image, in the order of the expanded IMAGES")
    check_scored_proposals(proposals, path)
    check_proposals_fit(proposals, [image_size(img) for img in images], path, names=images,
                        made_for="the given IMAGES (directories expanded in name order)")
    return proposals


MAX_PER_IMG = "model.test_cfg.rcnn.max_per_img"


def max_dets(args):
    """Detections per image to ask for: ``--max-dets``, else the official LVIS setting with ``--vocab
    lvis`` (unless ``--cfg-options`` sets it), else None (the config's)."""
    from ..api import LVIS_MAX_DETS

    if args.max_dets is not None:
        return args.max_dets
    if args.vocab == "lvis" and MAX_PER_IMG not in (args.cfg_options or {}):
        return LVIS_MAX_DETS
    return None


def build_detector(args, names, n_images: int):
    """:meth:`Detector.from_checkpoint`; an encoder mismatch is printed as one ``warning:`` line."""
    import warnings

    from ..api import Detector, EncoderMismatchWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", EncoderMismatchWarning)
        try:
            return Detector.from_checkpoint(args.checkpoint, proposal_checkpoint=args.proposal_checkpoint,
                                            classes=names or None, encoder=args.encoder,
                                            score_thr=args.score_thr, text_encoder_required=bool(names),
                                            beta=args.beta, config=args.config,
                                            proposal_config=args.proposal_config, num_proposals=args.num_proposals,
                                            cache_size=max(64, n_images), embeddings=args.embeddings,
                                            max_dets=max_dets(args), cfg_options=args.cfg_options,
                                            require_proposal_source=args.proposals is None)
        finally:
            for w in caught:
                if issubclass(w.category, EncoderMismatchWarning):
                    print(f"unidet detect: warning: {w.message}", file=sys.stderr)
                else:
                    warnings.showwarning(w.message, w.category, w.filename, w.lineno)


def parse_exemplars(specs) -> dict:
    """``--exemplar NAME=IMG[:x1,y1,x2,y2]`` entries as ``{name: [image path or (path, box)]}`` (files checked)."""
    from ..errors import UsageError

    out = {}
    for spec in specs or ():
        name, sep, rest = spec.partition("=")
        if not sep or not name.strip() or not rest:
            raise UsageError(f"--exemplar {spec!r}: expected NAME=IMAGE or NAME=IMAGE:x1,y1,x2,y2")
        image, box = rest, None
        head, colon, tail = rest.rpartition(":")
        if colon and tail.count(",") == 3:
            try:
                box = [float(v) for v in tail.split(",")]
            except ValueError:
                raise UsageError(f"--exemplar {spec!r}: the box {tail!r} is not four numbers x1,y1,x2,y2") from None
            image = head
        if not Path(image).is_file():
            raise UsageError(f"--exemplar {spec!r}: image not found: {image}")
        out.setdefault(name.strip(), []).append(image if box is None else (image, box))
    return out


def run(args) -> int:
    import numpy as np

    import unidetector  # noqa: F401  (runtime bootstrap before jittor)
    from ..api import DetectorError
    from ..data.transforms import ImageLoadError
    from ..errors import UnidetError, UsageError
    from ..text.vocab import resolve_vocabulary

    def fail(msg) -> int:
        print(f"unidet detect: error: {msg}", file=sys.stderr)
        return 2

    try:
        exemplars = parse_exemplars(args.exemplar)
        if args.classes is None and args.vocab is None and not exemplars:
            raise UsageError("give the vocabulary: --classes \"a,b\", --vocab coco|objects365|lvis|FILE, and/or "
                             "--exemplar NAME=IMAGE[:x1,y1,x2,y2]")
        names = resolve_vocabulary(classes=args.classes, vocab=args.vocab) \
            if args.classes is not None or args.vocab is not None else []
        swap = resolve_vocabulary(classes=args.classes_swap) if args.classes_swap is not None else None
        check_options(args)
    except UnidetError as e:
        return fail(e)
    images, missing = list_images(args.images)
    if not images and not missing:
        return fail(f"no image files found in {' '.join(args.images)} (extensions: {', '.join(IMAGE_EXTENSIONS)})")
    proposals = None
    if args.proposals:
        try:
            proposals = read_given_proposals(args.proposals, images)
        except UnidetError as e:
            return fail(e)
    try:
        detector = build_detector(args, names, len(images))
    except (UnidetError, FileNotFoundError) as e:
        return fail(e)
    source = ("given proposals" if proposals is not None else "proposals from its own RPN"
              if detector.own_proposals else "stage-1 proposals")
    encoder = f"text encoder {detector.encoder} ({detector.encoder_note})" if detector.encoder else \
        "no text encoder (precomputed embeddings only)"
    given = f" ({len(exemplars)} from image exemplars)" if exemplars else ""
    names = names + [n for n in exemplars if n not in names]
    given += f", embeddings from {args.embeddings}" if args.embeddings else ""
    print(f"vocabulary: {len(names)} classes{given}; "
          f"{encoder}; {KIND_NAMES[detector.kind]} checkpoint, {source}, top "
          f"{detector.num_proposals}; beta {detector.model.roi_head.bbox_head.beta:g}; up to {detector.max_dets} "
          f"detections per image{' (official LVIS setting)' if args.vocab == 'lvis' and args.max_dets is None else ''}"
          f"; score_thr {args.score_thr}")

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    stems = _output_names(images)
    failures = [{"image": m, "error": f"not found: {m}"} for m in missing]
    entries, done, full_times = [], [], []
    for i, (image, stem) in enumerate(zip(images, stems)):
        try:
            dets = detector.detect(image, classes=names if exemplars else None, exemplars=exemplars or None,
                                   proposals=None if proposals is None else proposals[i])
        except (ImageLoadError, DetectorError) as e:
            failures.append({"image": image, "error": str(e)})
            print(f"[{i + 1}/{len(images)}] {image}: FAILED ({e})")
            continue
        t = detector.last_timings
        full_times.append(t["total"])
        done.append((i, image, stem))
        entries.append(write_outputs(detector, image, dets, out_dir, stem, i, not args.no_draw))
        top = ", ".join(f"{n} {s:.2f}" for n, s in zip(dets.names[:3], dets.scores[:3].tolist()))
        print(f"[{i + 1}/{len(images)}] {image}: {len(dets)} detections ({t['total']:.2f} s)"
              + (f": {top}" if top else ""))

    summary = {"checkpoint": args.checkpoint, "kind": detector.kind, "proposal_checkpoint": args.proposal_checkpoint,
               "proposals": args.proposals, "encoder": detector.encoder.id if detector.encoder else None,
               "embeddings": args.embeddings, "vocabulary": names, "score_thr": args.score_thr,
               "beta": detector.model.roi_head.bbox_head.beta, "num_proposals": detector.num_proposals,
               "max_dets": detector.max_dets, "images": len(images) + len(missing),
               "processed": len(entries), "detections": sum(e["detections"] for e in entries),
               "seconds": round(sum(full_times), 3), "results": entries, "failures": failures}

    if swap is not None and done:
        swap_dir = out_dir / "swap"
        swap_dir.mkdir(exist_ok=True)
        swap_entries, swap_times = [], []
        for k, (i, image, stem) in enumerate(done):
            kwargs = dict(classes=swap, proposals=None if proposals is None else proposals[i])
            if k == 0:  # warm-up: encode the vocabulary and compile the scoring for its size, untimed
                detector.detect(image, **kwargs)
            t0 = time.perf_counter()
            dets = detector.detect(image, **kwargs)
            swap_times.append(time.perf_counter() - t0)
            swap_entries.append(write_outputs(detector, image, dets, swap_dir, stem, i, not args.no_draw))
        full_med, swap_med = float(np.median(full_times)), float(np.median(swap_times))
        speedup = full_med / swap_med if swap_med > 0 else float("inf")
        summary["swap"] = {"vocabulary": swap, "seconds_per_image_median": round(swap_med, 4),
                           "full_seconds_per_image_median": round(full_med, 4), "speedup": round(speedup, 1),
                           "results": swap_entries}
        print(f"vocabulary swap ({len(swap)} classes) on {len(done)} images, median per image: full run "
              f"{full_med:.3f} s (stage 1 + stage 2; the first image includes compilation), re-scoring the cached "
              f"regions {swap_med:.4f} s: {speedup:.1f}x faster -> {swap_dir}")

    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"{summary['detections']} detections on {len(entries)} images -> {out_dir}{os.sep}")
    if failures:
        print(f"{len(failures)} image(s) failed:", file=sys.stderr)
        for f in failures:
            print(f"  {f['image']}: {f['error']}", file=sys.stderr)
        return 1
    return 0
