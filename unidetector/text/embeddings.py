"""Class-name text embeddings: the official ``scripts/dump_clip_features_manyprompt.py`` in Jittor,
and loading of embedding files (official float16 ``.npy`` included).

File format (SPEC §6): ``.npy`` (C, D), row c = class c in category-id order, the **un-normalised**
mean over prompt templates of ``encode_text`` outputs (the box head normalises at use time).
:func:`load_embeddings` is the one reader of these files (box heads, dataset checks): a missing file
says how to make or fetch it; unreadable files, NaN/inf rows and wrong shapes are
:class:`EmbeddingFileError` naming the file.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import UnidetError
from .templates import TEMPLATES


def encode_class_names(names, encode_text, templates=TEMPLATES, *, progress=None) -> np.ndarray:
    """(C, D) float32: row c = mean over ``templates`` of ``encode_text([t.format(name_c)])``.

    ``encode_text(list_of_prompts) -> (N, D)`` array-like, un-normalised (e.g.
    :meth:`CLIPPromptEncoder.encode_text`). When it is a :class:`CLIPPromptEncoder`'s, all
    ``C × len(templates)`` prompts go through :func:`encode_prompts_by_length` (batched by token
    length, each batch run only up to its longest prompt: the same numbers, ~8× faster on LVIS);
    any other callable is called once per class. ``progress``: a tqdm bar with ETA (``None``: only
    on a terminal, ``False``: never).
    """
    templates = list(templates)
    encoder = getattr(encode_text, "__self__", None)
    if isinstance(encoder, CLIPPromptEncoder):
        prompts = [t.format(name) for name in names for t in templates]
        feats = encode_prompts_by_length(encoder.model, prompts, encoder.batch_size, progress)
        return feats.reshape(len(names), len(templates), -1).mean(axis=1).astype(np.float32)
    from tqdm import tqdm

    rows = []
    for name in tqdm(names, desc="text embeddings", unit="class", disable=None if progress is None else not progress,
                     dynamic_ncols=True):
        feats = np.asarray(encode_text([t.format(name) for t in templates]), dtype=np.float32)
        rows.append(feats.mean(axis=0))
    return np.stack(rows).astype(np.float32)


def length_batches(lengths, batch_size: int) -> list:
    """Index arrays of batches of at most ``batch_size`` prompts, grouped by token length
    (shortest first), so that each batch pads little beyond its own prompts. ``lengths``: (N,)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = np.argsort(np.asarray(lengths), kind="stable")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def encode_prompts_by_length(model, prompts, batch_size: int = 128, progress=None) -> np.ndarray:
    """(N, D) float32 ``encode_text`` of ``prompts`` (in their order) by a
    :class:`~unidetector.text.clip_text.CLIPTextEncoder`, batched by token length.

    Each batch runs only up to its longest prompt (its last EOT): CLIP's text attention is causal
    and the feature is read at the EOT, so this equals the full ``context_length`` computation.
    ``progress``: a tqdm bar over prompts with ETA (``None``: only on a terminal, ``False``: never).
    """
    import jittor as jt
    from tqdm import tqdm

    from .clip_text import eot_length
    from .tokenizer import tokenize

    tokens = tokenize(prompts, model.context_length)
    out = None
    bar = tqdm(total=len(prompts), desc="text embeddings", unit="prompt", disable=None if progress is None
               else not progress, dynamic_ncols=True)
    with bar, jt.no_grad():
        for idx in length_batches(tokens.argmax(axis=1), batch_size):
            batch = tokens[idx]
            feats = model(jt.array(batch[:, :eot_length(batch)]), trim=False).numpy()
            if out is None:
                out = np.empty((len(prompts), feats.shape[1]), np.float32)
            out[idx] = feats
            bar.update(len(idx))
    if out is None:
        raise ValueError("no prompts to encode")
    return out


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


class EmbeddingFileError(UnidetError, ValueError):
    """A text-embedding ``.npy`` is missing, unreadable, or does not fit the vocabulary; names the file."""


#: how to get an embedding file, appended to "not found" errors (``{path}`` = the missing file)
HOW_TO_MAKE = ("make it with `unidet embed --ann ANN.json --encoder clip:RN50.pt --out {path}` (ANN.json = the "
               "dataset's annotation file, RN50.pt = OpenAI CLIP), or use the official UniDetector "
               "clip_embeddings/*.npy files")


def _read_npy(path: str) -> np.ndarray:
    """The array of an ``.npy`` file; a missing, unreadable or non-``.npy`` file is an
    :class:`EmbeddingFileError` naming it (and, when missing, how to make it)."""
    if not os.path.isfile(path):
        raise EmbeddingFileError(f"text embedding file not found: {path}; " + HOW_TO_MAKE.format(path=path))
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - any numpy read failure means a bad file
        raise EmbeddingFileError(f"{path}: not a readable .npy array ({type(e).__name__}: {e}); "
                                 + HOW_TO_MAKE.format(path=path)) from None
    if not isinstance(arr, np.ndarray):  # an .npz archive
        close = getattr(arr, "close", None)
        if close:
            close()
        raise EmbeddingFileError(f"{path}: an .npz archive, expected a (C, D) .npy array")
    return arr


def load_embeddings(path, num_classes: int | None = None, *, dim: int | None = None,
                    class_names=None) -> np.ndarray:
    """``(C, D)`` float32 text embeddings from an ``.npy`` (float16 official files are cast) or an
    array-like; the one reader of embedding files.

    Errors (:class:`EmbeddingFileError`, naming the file): the file is missing (with how to make it)
    or unreadable, the array is not 2-D and numeric, a row holds NaN/inf (the first bad row and its
    class), ``num_classes`` is given and differs from ``C``, ``dim`` is given and differs from ``D``.

    Args:
        path: ``.npy`` path, or an array-like ``(C, D)`` (named ``<array>`` in errors).
        num_classes: expected row count ``C`` (one row per class in category-id order).
        dim: expected embedding dimension ``D``.
        class_names: ``C`` names, only to name a bad row.
    """
    if isinstance(path, (str, os.PathLike)):
        name = str(path)
        arr = _read_npy(name)
    else:
        name = "<array>"
        try:
            arr = np.asarray(path)
        except ValueError as e:  # ragged nested lists
            raise EmbeddingFileError(f"text embeddings given inline are not a (C, D) array ({e})") from None
    if arr.ndim != 2:
        raise EmbeddingFileError(f"{name}: text embeddings must be a (C, D) array, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise EmbeddingFileError(f"{name}: text embeddings must be numbers, got dtype {arr.dtype}")
    if num_classes is not None and arr.shape[0] != num_classes:
        raise EmbeddingFileError(f"{name}: {arr.shape[0]} embedding rows but {num_classes} classes; rows must be "
                                 "the classes in category-id order (regenerate with `unidet embed` for this "
                                 "vocabulary)")
    if dim is not None and arr.shape[1] != dim:
        raise EmbeddingFileError(f"{name}: embeddings of dimension {arr.shape[1]} but the model expects {dim} "
                                 "(embed with the text encoder of the model's CLIP, e.g. RN50: 1024)")
    with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf, reported below
        emb = arr.astype(np.float32)
    bad = np.flatnonzero(~np.isfinite(emb).all(axis=1))
    if bad.size:
        r = int(bad[0])
        cls = (f"class {class_names[r]!r}" if class_names is not None and r < len(class_names)
               else f"class index {r}, the {r + 1}-th category by id")
        raise EmbeddingFileError(f"{name}: row {r} ({cls}) is not finite (NaN or inf); {bad.size} of "
                                 f"{emb.shape[0]} rows are bad (regenerate the file with `unidet embed`)")
    return emb
