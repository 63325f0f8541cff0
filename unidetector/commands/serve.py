"""Detect anything in the browser: a web page over the detector (Gradio).

  unidet serve                                   # the models of `unidet experiment` (work_dirs/experiment)
  unidet serve --checkpoint S2.pkl --proposal-checkpoint S1.pkl [--encoder clip:RN50.pt]
  unidet serve --host 0.0.0.0 --port 7860        # reachable from other machines: printed loudly

Upload an image (or click one of the synthetic world's test images), type class names or pick a
built-in vocabulary (the world's, COCO, Objects365, LVIS), set the score threshold and the max
detections: the page shows the annotated image, a table (class, score, box), a COCO-style JSON
download, and the time of the network pass and of the re-scoring. Changing only the classes or the
threshold re-scores the cached regions (no network pass). Image exemplars: click two opposite corners
of an object (on the image, or on another uploaded image), name it and press "Add exemplar": that
class is detected by its look (a name also typed mixes the two); the table says which classes came
from exemplars.

Safe by default: binds 127.0.0.1; uploads limited in bytes (--max-upload-mb) and pixels
(--max-megapixels); non-images and corrupt files get a message; one inference at a time (a queue of
--queue-size); file names are only displayed, never used as paths; bounded caches (regions of
--cache-size images, 16 vocabularies of text embeddings, the last 32 JSON files, 16 exemplars a page,
100 megapixels of exemplar images in all).
Needs the optional extra: pip install 'jittor-unidetector[app]' (scripts/install.sh installs it).
"""
from __future__ import annotations

import os
import sys

HELP = "web app: detect any vocabulary (names or boxes marked as exemplars) on uploaded images in the browser"


def add_arguments(parser):
    from ..app.core import DEFAULT_WORK_DIR, Limits

    lim = Limits()
    parser.add_argument("--checkpoint", help="stage-2 checkpoint (default: the experiment's, see --work-dir)")
    parser.add_argument("--proposal-checkpoint", help="stage-1 checkpoint (CLN) that makes the proposals")
    parser.add_argument("--work-dir", default=DEFAULT_WORK_DIR,
                        help=f"`unidet experiment` work dir whose models, classes and test images are served "
                             f"without --checkpoint ({DEFAULT_WORK_DIR})")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=7860, help="port (7860)")
    parser.add_argument("--encoder", default=None, help="clip:PATH | synthetic[:dim=D,seed=S] (default: the one "
                        "the checkpoint records)")
    parser.add_argument("--classes", default=None, help="class names pre-filled on the page (default: classes "
                        "of the first example image)")
    parser.add_argument("--score-thr", type=float, default=0.3, help="initial score threshold (0.3)")
    parser.add_argument("--max-dets", type=int, default=100, help="initial max detections (100)")
    parser.add_argument("--beta", type=float, default=0.3, help="fusion s = p^beta * o^(1-beta) (0.3)")
    parser.add_argument("--num-proposals", type=int, default=100, help="top proposals per image (100)")
    parser.add_argument("--max-upload-mb", type=float, default=lim.max_bytes / 2 ** 20,
                        help=f"largest upload in MB ({lim.max_bytes / 2 ** 20:g})")
    parser.add_argument("--max-megapixels", type=float, default=lim.max_pixels / 1e6,
                        help=f"largest upload in megapixels ({lim.max_pixels / 1e6:g})")
    parser.add_argument("--queue-size", type=int, default=16, help="requests waiting at most (16); one runs at a time")
    parser.add_argument("--cache-size", type=int, default=32, help="images whose regions are kept for re-scoring (32)")


def check_options(args):
    """Option errors before any work (:class:`~unidetector.app.core.ServeError`); returns the Limits."""
    from ..app.core import Limits, ServeError

    for flag, value, low in (("--port", args.port, 1), ("--max-upload-mb", args.max_upload_mb, 1e-3),
                             ("--max-megapixels", args.max_megapixels, 1e-3), ("--queue-size", args.queue_size, 1),
                             ("--cache-size", args.cache_size, 1), ("--num-proposals", args.num_proposals, 1),
                             ("--max-dets", args.max_dets, 1)):
        if value < low:
            raise ServeError(f"{flag} must be at least {low:g}, got {value}")
    if args.port > 65535:
        raise ServeError(f"--port must be at most 65535, got {args.port}")
    if not 0.0 <= args.score_thr <= 1.0:
        raise ServeError(f"--score-thr must be between 0 and 1, got {args.score_thr}")
    limits = Limits(max_bytes=int(args.max_upload_mb * 2 ** 20), max_pixels=int(args.max_megapixels * 1e6))
    if args.max_dets > limits.max_detections:
        raise ServeError(f"--max-dets must be at most {limits.max_detections}, got {args.max_dets}")
    return limits


def import_gradio():
    """Gradio, or :class:`ServeError` saying how to install the extra."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")   # no calls home from a local demo
    import importlib

    try:
        return importlib.import_module("gradio")
    except ImportError:
        from ..app.core import ServeError

        raise ServeError("the web app needs Gradio: pip install 'jittor-unidetector[app]' (from the checkout: "
                         ".venv/bin/pip install -e '.[app]', or scripts/install.sh)") from None


def run(args) -> int:
    import warnings

    from ..api import Detector, EncoderMismatchWarning
    from ..app.core import (DetectionService, VocabularyMenu, default_classes, find_world, loud_host_warning,
                            resolve_models)
    from ..text.vocab import resolve_vocabulary

    limits = check_options(args)
    warning = loud_host_warning(args.host, args.port)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    stage2, stage1, source = resolve_models(args.checkpoint, args.proposal_checkpoint, args.work_dir)
    if args.classes is not None:
        resolve_vocabulary(classes=args.classes)          # a bad pre-filled list is an error now, not on the page
    import_gradio()
    world = find_world(args.work_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", EncoderMismatchWarning)
        detector = Detector.from_checkpoint(stage2, proposal_checkpoint=stage1, encoder=args.encoder, score_thr=0.0,
                                            beta=args.beta, num_proposals=args.num_proposals,
                                            cache_size=args.cache_size)
    for w in caught:
        print(f"unidet serve: warning: {w.message}", file=sys.stderr)
    print(f"unidet serve: models of {source}: {stage2} (stage 2), {stage1} (stage 1); text encoder "
          f"{detector.encoder or 'custom'} ({detector.encoder_note})", flush=True)
    from ..app.ui import build_demo, launch

    service = DetectionService(detector, limits)
    menu = VocabularyMenu(world.names if world else None)
    examples = world.examples if world else []
    initial = args.classes if args.classes is not None else default_classes(world, args.work_dir)
    demo = build_demo(service, menu, examples, initial, args.score_thr, args.max_dets,
                      model_note=f"Models: {source}.")
    if warning:
        print(warning, file=sys.stderr, flush=True)
    print(f"unidet serve: http://{args.host if ':' not in args.host else f'[{args.host}]'}:{args.port} "
          "(Ctrl-C stops)", flush=True)
    try:
        launch(demo, args.host, args.port, limits, examples, queue_size=args.queue_size)
    finally:
        if service.out_dir is not None:
            import shutil

            shutil.rmtree(service.out_dir, ignore_errors=True)
    return 0
