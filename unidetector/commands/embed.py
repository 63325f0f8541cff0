"""Write class-name text embeddings (.npy, (C, D), rows in category-id order).

  unidet embed --vocab lvis --encoder clip:RN50.pt --out lvis_v1_clip_rn50.npy
  unidet embed --ann lvis_v1_val.json --encoder clip:RN50.pt --out lvis_v1_clip_rn50.npy
  unidet embed --classes "red star,blue circle" --encoder synthetic --out world.npy

Names: --vocab coco|objects365|lvis|FILE (the built-in lists of `unidet detect --vocab`, or one name per
line), --classes "a,b" (CSV quoting as in `unidet detect`), --ann (a COCO/LVIS json, categories by id) or
--names FILE. They are cleaned as officially (commas dropped, '+' -> space) before encoding.

clip:PATH  CLIP RN50 text tower from OpenAI's RN50.pt (read without PyTorch) or a text .pkl
           from `unidet convert`; row = un-normalised mean over the prompt templates
           (--templates many: the 81 official ones; single: 'a {}').
synthetic  deterministic word vectors (sum of per-word random unit vectors, normalised) of the
           class names themselves; --templates does not apply.

The result is also kept in the embedding cache that `unidet detect` reads ($UNIDET_CACHE_DIR, default
~/.cache/unidetector; a CLIP encoder keyed by the content of its weights file): the same vocabulary
is encoded once, by either command. The .npy is what `unidet detect --embeddings` takes.
"""
from __future__ import annotations

HELP = "write text embeddings of class names (.npy) with CLIP or the synthetic encoder"


def add_arguments(parser):
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--vocab", help="coco | objects365 | lvis | FILE (as `unidet detect --vocab`)")
    src.add_argument("--classes", help='comma-separated class names, e.g. "cat,dog" (a name with a comma in '
                     'double quotes)')
    src.add_argument("--ann", help="COCO/LVIS annotation json (categories sorted by id)")
    src.add_argument("--names", help="text file, one class name per line")
    parser.add_argument("--encoder", required=True, help="clip:PATH or synthetic")
    parser.add_argument("--templates", choices=("many", "single"), default="many", help="prompt templates (CLIP)")
    parser.add_argument("--out", required=True, help="output .npy")
    parser.add_argument("--dtype", choices=("float32", "float16"), default="float32", help="stored dtype")
    parser.add_argument("--dim", type=int, default=1024, help="synthetic encoder dimension")
    parser.add_argument("--seed", type=int, default=0, help="synthetic encoder seed")


def class_names(args) -> list:
    """The cleaned names to encode, in order (:func:`unidetector.text.vocab.text_names`)."""
    from ..text.vocab import load_class_names
    from ..text.vocab import resolve_vocabulary, text_names

    if args.vocab is not None or args.classes is not None:
        return text_names(resolve_vocabulary(classes=args.classes, vocab=args.vocab))
    return load_class_names(ann=args.ann, names_file=args.names)


def run(args) -> int:
    import time

    import unidetector  # noqa: F401  (runtime bootstrap before jittor)
    from ..text.encoders import make_text_encoder
    from ..text.cache import cached_embeddings
    from ..text.embeddings import save_embeddings
    from ..text.templates import TEMPLATE_SETS

    names = class_names(args)
    spec = f"synthetic:dim={args.dim},seed={args.seed}" if args.encoder == "synthetic" else args.encoder
    encoder = make_text_encoder(spec, args.dim, templates=TEMPLATE_SETS[args.templates])
    t0 = time.perf_counter()
    emb, hit = cached_embeddings(encoder.id, names, encoder.encode, encoder.templates)
    path = save_embeddings(args.out, emb, args.dtype)
    how = "from the embedding cache" if hit else f"encoded in {time.perf_counter() - t0:.1f} s"
    print(f"wrote {path}: {emb.shape[0]} classes x {emb.shape[1]} ({args.dtype}; {how})")
    return 0
