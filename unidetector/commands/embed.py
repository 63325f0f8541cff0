"""Write class-name text embeddings (.npy, (C, D), rows in category-id order).

  unidet embed --ann lvis_v1_val.json --encoder clip:RN50.pt --out lvis_v1_clip_rn50.npy
  unidet embed --classes "red star,blue circle" --encoder synthetic --out world.npy

clip:PATH  CLIP RN50 text tower from OpenAI's RN50.pt (read without PyTorch) or a text .pkl
           from `unidet convert`; row = un-normalised mean over the prompt templates
           (--templates many: the 81 official ones; single: 'a {}').
synthetic  deterministic word vectors (sum of per-word random unit vectors, normalised) of the
           class names themselves; --templates does not apply.
"""
from __future__ import annotations

HELP = "write text embeddings of class names (.npy) with CLIP or the synthetic encoder"


def add_arguments(parser):
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--classes", help='comma-separated class names, e.g. "cat,dog"')
    src.add_argument("--ann", help="COCO/LVIS annotation json (categories sorted by id)")
    src.add_argument("--names", help="text file, one class name per line")
    parser.add_argument("--encoder", required=True, help="clip:PATH or synthetic")
    parser.add_argument("--templates", choices=("many", "single"), default="many", help="prompt templates (CLIP)")
    parser.add_argument("--out", required=True, help="output .npy")
    parser.add_argument("--dtype", choices=("float32", "float16"), default="float32", help="stored dtype")
    parser.add_argument("--dim", type=int, default=1024, help="synthetic encoder dimension")
    parser.add_argument("--seed", type=int, default=0, help="synthetic encoder seed")
    parser.set_defaults(_parser=parser)


def run(args) -> int:
    import unidetector  # noqa: F401  (runtime bootstrap before jittor)
    from ..text.embeddings import CLIPPromptEncoder, encode_class_names, load_class_names, save_embeddings
    from ..text.templates import TEMPLATE_SETS

    names = load_class_names(classes=args.classes, ann=args.ann, names_file=args.names)
    if args.encoder == "synthetic":
        from ..text.synthetic_encoder import SyntheticTextEncoder

        emb = SyntheticTextEncoder(dim=args.dim, seed=args.seed).encode(names)
    elif args.encoder.startswith("clip:"):
        encoder = CLIPPromptEncoder(args.encoder[len("clip:"):])
        emb = encode_class_names(names, encoder.encode_text, TEMPLATE_SETS[args.templates])
    else:
        args._parser.error(f"unknown --encoder {args.encoder!r}: use clip:PATH or synthetic")
    path = save_embeddings(args.out, emb, args.dtype)
    print(f"wrote {path}: {emb.shape[0]} classes x {emb.shape[1]} ({args.dtype})")
    return 0
