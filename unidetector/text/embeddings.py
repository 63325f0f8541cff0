"""Class-name text embeddings: the official ``scripts/dump_clip_features_manyprompt.py`` in Jittor,
and loading of embedding files (official float16 ``.npy`` included).

File format (SPEC §6): ``.npy`` (C, D), row c = class c in category-id order, the **un-normalised**
mean over prompt templates of ``encode_text`` outputs (the box head normalises at use time).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .templates import TEMPLATES


def clean_class_name(name: str) -> str:
    """The official cleaning: drop commas, ``+`` → space (underscores are kept)."""
    return name.replace(",", "").replace("+", " ")


def class_names_from_annotation(path) -> list:
    """Category names of a COCO/LVIS json, sorted by category id, cleaned."""
    cats = json.loads(Path(path).read_text())["categories"]
    return [clean_class_name(c["name"]) for c in sorted(cats, key=lambda c: c["id"])]


def class_names_from_file(path) -> list:
    """One class name per line (blank lines skipped), cleaned."""
    return [clean_class_name(line.strip()) for line in Path(path).read_text().splitlines() if line.strip()]


def load_class_names(classes=None, ann=None, names_file=None) -> list:
    """Class names from exactly one source: a list (or ``"a,b,c"``), an annotation json, a text file."""
    given = [x is not None for x in (classes, ann, names_file)]
    if sum(given) != 1:
        raise ValueError("give exactly one of classes, ann, names_file")
    if ann is not None:
        names = class_names_from_annotation(ann)
    elif names_file is not None:
        names = class_names_from_file(names_file)
    else:
        items = classes.split(",") if isinstance(classes, str) else list(classes)
        names = [clean_class_name(n.strip()) for n in items if n.strip()]
    if not names:
        raise ValueError("no class names found")
    return names


def encode_class_names(names, encode_text, templates=TEMPLATES) -> np.ndarray:
    """(C, D) float32: row c = mean over ``templates`` of ``encode_text([t.format(name_c)])``.

    ``encode_text(list_of_prompts) -> (N, D)`` array-like, un-normalised (e.g.
    :meth:`CLIPPromptEncoder.encode_text`).
    """
    rows = []
    for name in names:
        feats = np.asarray(encode_text([t.format(name) for t in templates]), dtype=np.float32)
        rows.append(feats.mean(axis=0))
    return np.stack(rows).astype(np.float32)


class CLIPPromptEncoder:
    """CLIP text tower + tokenizer from a checkpoint: OpenAI ``RN50.pt`` (TorchScript, read without
    PyTorch), a PyTorch state dict with OpenAI keys, or a text ``.pkl`` written by ``unidet convert``."""

    def __init__(self, checkpoint, batch_size: int = 128):
        import jittor as jt  # noqa: F401  (after unidetector.runtime)

        from ..convert import load_state_dict, read_checkpoint, split_openai_clip
        from ..convert.checkpoints import text_sizes
        from .clip_text import CLIPTextEncoder

        sd = read_checkpoint(checkpoint)
        if "visual.layer1.0.conv1.weight" in sd:
            sd = split_openai_clip(sd)[1]
        if "ln_final.weight" not in sd:
            raise ValueError(f"{checkpoint}: no CLIP text tower (ln_final.weight) in this checkpoint")
        self.model = CLIPTextEncoder(**text_sizes(sd))
        load_state_dict(self.model, sd, strict=True)
        self.model.eval()
        self.batch_size = batch_size

    def encode_text(self, prompts) -> np.ndarray:
        import jittor as jt

        from .tokenizer import tokenize

        out = []
        with jt.no_grad():
            for i in range(0, len(prompts), self.batch_size):
                tokens = tokenize(prompts[i:i + self.batch_size], self.model.context_length)
                out.append(self.model(jt.array(tokens)).numpy())
        return np.concatenate(out).astype(np.float32)


def save_embeddings(path, embeddings, dtype="float32") -> Path:
    """Write (C, D) embeddings as ``.npy`` (``dtype`` float32 or float16, as the official files)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.asarray(embeddings)
    if arr.ndim != 2:
        raise ValueError(f"embeddings must be (C, D), got shape {arr.shape}")
    np.save(path, arr.astype(dtype))
    return path


def load_embeddings(path, num_classes: int | None = None) -> np.ndarray:
    """(C, D) float32 from an ``.npy`` (float16 official files are cast). With ``num_classes``,
    a different row count is an error naming both numbers."""
    arr = np.load(path)
    if arr.ndim != 2:
        raise ValueError(f"{path}: text embeddings must be a (C, D) array, got shape {arr.shape}")
    if num_classes is not None and arr.shape[0] != num_classes:
        raise ValueError(f"{path}: {arr.shape[0]} embedding rows but {num_classes} classes; rows must be the "
                         "classes in category-id order (regenerate with `unidet embed` for this vocabulary)")
    return arr.astype(np.float32)
