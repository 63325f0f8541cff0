"""CLIP text-embedding speed, before and after batching by token length (prints JSON).

The full RN50 text tower (width 512, 12 layers, 8 heads, vocabulary 49,408, context 77, projection
1024) with random weights embeds LVIS v1 class names with the 81 official templates, three ways,
alternately in one run:

* ``full_77``: the former path, one batch of 81 prompts per class, every prompt at 77 tokens;
* ``trim_per_class``: one batch per class, run only up to the class's longest prompt;
* ``by_length``: :func:`~unidetector.text.embeddings.encode_prompts_by_length`, all prompts sorted
  by token length in batches of ``--batch-size``, each run up to its longest prompt (what
  ``unidet embed`` does now).

Times include tokenization. ``full_77`` costs the same for every class (81 × 77 tokens), so a few
classes measure it; the others are measured on ``--classes`` classes spaced evenly through the
LVIS v1 list (representative name lengths) and extrapolated to the 1203 classes by prompt count.
The token counts of the whole LVIS v1 prompt set are reported beside them.

  python benchmarks/text_embeddings.py [--repeat 2] [--classes 48] [--full-classes 6]
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

import unidetector  # noqa: F401  (runtime bootstrap before jittor)
import jittor as jt

from unidetector.text.clip_text import CLIPTextEncoder, eot_length
from unidetector.text.embeddings import clean_class_name, encode_prompts_by_length, length_batches
from unidetector.text.templates import TEMPLATES
from unidetector.text.tokenizer import tokenize

LVIS_V1 = Path(unidetector.__file__).parent / "text" / "vocabularies" / "lvis_v1.txt"


def per_class(model, names, trim: bool) -> np.ndarray:
    """The former path: one ``encode_text`` call of the 81 prompts per class; (C, D) means."""
    rows = []
    with jt.no_grad():
        for name in names:
            tokens = tokenize([t.format(name) for t in TEMPLATES], model.context_length)
            rows.append(model(jt.array(tokens[:, :eot_length(tokens)] if trim else tokens), trim=False)
                        .numpy().mean(0))
    return np.stack(rows)


def by_length(model, names, batch_size: int) -> np.ndarray:
    prompts = [t.format(n) for n in names for t in TEMPLATES]
    feats = encode_prompts_by_length(model, prompts, batch_size, progress=False)
    return feats.reshape(len(names), len(TEMPLATES), -1).mean(1)


def timed(fn):
    jt.sync_all(True)
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--classes", type=int, default=48, help="LVIS v1 classes (evenly spaced) for the new paths")
    ap.add_argument("--full-classes", type=int, default=6, help="classes for the 77-token path")
    ap.add_argument("--batch-size", type=int, default=128)
    args = ap.parse_args()

    all_names = [clean_class_name(line.strip()) for line in LVIS_V1.read_text().splitlines() if line.strip()]
    pick = np.linspace(0, len(all_names) - 1, args.classes).round().astype(int)
    names = [all_names[i] for i in pick]
    full_names = names[:: max(1, len(names) // args.full_classes)][:args.full_classes]
    jt.set_global_seed(0)
    model = CLIPTextEncoder()  # RN50 text tower sizes, random weights
    model.eval()

    # warm-up (compiles the kernels) and the equality of the three paths on a few classes
    ref = per_class(model, full_names[:2], trim=False)
    err = {"trim_per_class": float(np.abs(per_class(model, full_names[:2], trim=True) - ref).max()),
           "by_length": float(np.abs(by_length(model, full_names[:2], args.batch_size) - ref).max())}
    by_length(model, names, args.batch_size)

    runs = {"full_77": [], "trim_per_class": [], "by_length": []}
    for _ in range(args.repeat):  # alternately, so that a busy machine slows every path alike
        runs["full_77"].append(timed(lambda: per_class(model, full_names, trim=False))[1] / len(full_names))
        runs["trim_per_class"].append(timed(lambda: per_class(model, names, trim=True))[1] / len(names))
        runs["by_length"].append(timed(lambda: by_length(model, names, args.batch_size))[1] / len(names))
    per_cls = {k: float(np.median(v)) for k, v in runs.items()}

    tokens = tokenize([t.format(n) for n in all_names for t in TEMPLATES])
    lengths = tokens.argmax(1) + 1
    per_class_len = lengths.reshape(len(all_names), len(TEMPLATES)).max(1)
    sorted_tokens = sum(int(lengths[b].max()) * len(b) for b in length_batches(lengths, args.batch_size))
    n_lvis = len(all_names)
    lvis_min = {k: round(v * n_lvis / 60, 2) for k, v in per_cls.items()}
    print(json.dumps(dict(
        benchmark="text_embeddings", model="CLIP RN50 text tower (random weights)", templates=len(TEMPLATES),
        threads=int(os.environ.get("OMP_NUM_THREADS", "0") or 0), repeat=args.repeat, batch_size=args.batch_size,
        classes_measured=dict(full_77=len(full_names), others=len(names)),
        seconds_per_class=dict((k, round(v, 4)) for k, v in per_cls.items()),
        lvis_v1_minutes_extrapolated=lvis_min,
        speedup_vs_full_77=dict((k, round(per_cls["full_77"] / v, 2)) for k, v in per_cls.items()),
        lvis_v1_prompt_tokens=dict(prompts=int(len(lengths)), mean_length=round(float(lengths.mean()), 2),
                                   max_length=int(lengths.max()), full_77=77 * int(len(lengths)),
                                   trim_per_class=int(per_class_len.sum()) * len(TEMPLATES),
                                   by_length=sorted_tokens),
        max_abs_diff_vs_full_77=err, goal_speedup=4.0,
        meets_goal=per_cls["full_77"] / per_cls["by_length"] >= 4.0), indent=1))


if __name__ == "__main__":
    main()
