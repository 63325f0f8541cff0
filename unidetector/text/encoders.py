"""Text encoders for open-vocabulary detection: one parser of encoder specs for ``unidet detect``,
``unidet embed``, ``unidet serve`` and the Python API.

A spec is ``"clip:PATH"`` (CLIP RN50 text tower, 81 prompt templates), ``"synthetic"`` /
``"synthetic:dim=D,seed=S"`` (the synthetic world's word vectors), or an object with
``encode(names) -> (C, D)`` (and optionally a ``cache_id``). :func:`resolve_encoder` picks the encoder of a
detector checkpoint: the given one (warning when it is not the one the checkpoint was trained with) or
the recorded one (:func:`recorded_encoder`), and asks for one when it cannot be established.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DetectorError

__all__ = ["ENCODER_CHOICES", "EncoderMismatchWarning", "TextEncoderSpec", "encoder_mismatch", "infer_encoder",
           "make_text_encoder", "recorded_encoder", "resolve_encoder"]


@dataclass
class TextEncoderSpec:
    """A text encoder with a stable ``id`` (the embedding cache key) and its prompt ``templates``."""

    id: str
    encode_fn: object
    templates: tuple = ()
    label: str = ""          # how messages name it (default: the id)

    def encode(self, names) -> np.ndarray:
        return np.asarray(self.encode_fn(list(names)), dtype=np.float32)

    def __str__(self) -> str:
        return self.label or self.id or repr(self.encode_fn)


def _parse_kv(text: str) -> dict:
    out = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        if "=" not in item:
            raise DetectorError(f"encoder option {item!r}: expected key=value (e.g. synthetic:dim=1024,seed=0)")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def make_text_encoder(spec, embed_dim: int, templates=None) -> TextEncoderSpec:
    """``spec``: ``"synthetic[:dim=D,seed=S]"``, ``"clip:PATH"``, a :class:`TextEncoderSpec`, or an
    object with ``encode(names)`` (cached on disk only when it has a ``cache_id``). A CLIP encoder's id
    (the cache key) is the sha1 of its weights file (:func:`unidetector.text.cache.file_digest`), not
    its path; ``templates`` (CLIP only) default to the 81 official prompts."""
    if isinstance(spec, TextEncoderSpec):
        return spec
    if spec is None:
        spec = "synthetic"
    if not isinstance(spec, str):
        if not hasattr(spec, "encode"):
            raise DetectorError(f"encoder {spec!r}: expected 'clip:PATH', 'synthetic' or an object with encode(names)")
        return TextEncoderSpec(getattr(spec, "cache_id", None) or "", spec.encode)
    if spec == "synthetic" or spec.startswith("synthetic:"):
        from .synthetic_encoder import SyntheticTextEncoder

        opts = _parse_kv(spec[len("synthetic:"):]) if ":" in spec else {}
        unknown = set(opts) - {"dim", "seed"}
        if unknown:
            raise DetectorError(f"encoder {spec!r}: unknown options {sorted(unknown)} (synthetic:dim=D,seed=S)")
        dim, seed = int(opts.get("dim", embed_dim)), int(opts.get("seed", 0))
        enc = SyntheticTextEncoder(dim=dim, seed=seed)
        return TextEncoderSpec(f"synthetic:dim={dim},seed={seed}", enc.encode)
    if spec.startswith("clip:"):
        path = Path(spec[len("clip:"):]).expanduser()
        if not path.is_file():
            raise DetectorError(f"--encoder {spec}: CLIP weights not found at {path} (OpenAI RN50.pt or a text "
                                ".pkl from `unidet convert`)")
        from .cache import file_digest
        from .templates import TEMPLATES

        templates = tuple(TEMPLATES if templates is None else templates)
        holder = {}

        def encode(names):  # the CLIP text tower is loaded only on a cache miss
            from .embeddings import CLIPPromptEncoder, encode_class_names

            if "enc" not in holder:
                holder["enc"] = CLIPPromptEncoder(str(path))
            return encode_class_names(names, holder["enc"].encode_text, templates)

        return TextEncoderSpec(f"clip:sha1={file_digest(path)}", encode, templates, label=f"clip:{path}")
    raise DetectorError(f"unknown encoder {spec!r}: use clip:PATH or synthetic")


ENCODER_CHOICES = "clip:PATH (CLIP RN50 text tower: OpenAI RN50.pt or a text .pkl from `unidet convert`) or " \
                  "synthetic[:dim=D,seed=S] (the synthetic world's word vectors)"


class EncoderMismatchWarning(UserWarning):
    """The text encoder given differs from the one the checkpoint was trained with."""


def recorded_encoder(state_dict: dict, meta: dict, embed_dim: int) -> tuple:
    """``(spec, reason)``: the text encoder the checkpoint was trained with, or ``(None, hint)`` when it
    cannot be established. Established means: a ``text_encoder`` entry in its meta (any spec
    :func:`make_text_encoder` accepts), or its stored training embeddings (``zs_weights*``, (D, C + 1))
    equal the synthetic encoding of its meta ``CLASSES`` (what ``unidet experiment`` checkpoints are)."""
    if meta.get("text_encoder"):
        return str(meta["text_encoder"]), "recorded in the checkpoint meta"
    classes = meta.get("CLASSES")
    stored = [v for k, v in state_dict.items() if k.rsplit(".", 1)[-1].startswith("zs_weights")]
    if classes:
        from .synthetic_encoder import SyntheticTextEncoder
        from .vocab import text_names

        try:
            emb = SyntheticTextEncoder(dim=embed_dim, seed=0).encode(text_names(classes))
        except ValueError:
            emb = None
        for zs in stored:
            zs = np.asarray(zs, dtype=np.float32)
            if emb is not None and zs.shape == (embed_dim, len(classes) + 1) and \
                    np.allclose(zs[:, :-1].T, emb, atol=1e-4):
                return f"synthetic:dim={embed_dim},seed=0", "its training embeddings are the synthetic encoder's"
    hint = ""
    if stored:
        norms = np.linalg.norm(np.asarray(stored[0], np.float32)[:, :-1], axis=0)
        if norms.size and float(np.median(norms)) > 2.0:
            hint = f"; its training text embeddings look like CLIP ones (row norms ~{float(np.median(norms)):.1f})"
    return None, hint


def infer_encoder(state_dict: dict, meta: dict, embed_dim: int, path="the checkpoint"):
    """``(spec, reason)`` of :func:`recorded_encoder`; a checkpoint whose encoder cannot be established
    raises :class:`DetectorError` asking for ``--encoder`` (no guess: another encoder's text space
    gives meaningless scores)."""
    spec, reason = recorded_encoder(state_dict, meta, embed_dim)
    if spec is None:
        clip = "look like CLIP" in reason
        raise DetectorError(f"{path} does not record the text encoder it was trained with (no meta['text_encoder'] "
                            f"and its training embeddings are not the synthetic encoder's{reason}): pass --encoder "
                            f"(Python: encoder=) {ENCODER_CHOICES}; D = {embed_dim} here"
                            + ("; for official UniDetector / RegionCLIP checkpoints: --encoder clip:RN50.pt (OpenAI "
                               "CLIP RN50)" if clip else "")
                            + "; or give the vocabulary's embeddings precomputed with the same text encoder: "
                              "--embeddings E.npy (Python: embeddings=)")
    return spec, reason


def _encoder_family(spec, embed_dim: int):
    """What must agree between two encoder specs: ``('synthetic', dim, seed)`` or ``('clip',)`` (any
    path to the CLIP weights); ``None`` for encoder objects (not compared)."""
    if isinstance(spec, TextEncoderSpec):
        spec = spec.id
    if not isinstance(spec, str):
        return None
    if spec == "synthetic" or spec.startswith("synthetic:"):
        try:
            opts = _parse_kv(spec[len("synthetic:"):]) if ":" in spec else {}
            return "synthetic", int(opts.get("dim", embed_dim)), int(opts.get("seed", 0))
        except (DetectorError, ValueError):
            return None
    if spec.startswith("clip:"):
        return ("clip",)
    return None


def encoder_mismatch(given, recorded: str, embed_dim: int, path="the checkpoint") -> str | None:
    """One line when the ``given`` encoder is not the ``recorded`` one (:func:`recorded_encoder`), else None."""
    a, b = _encoder_family(given, embed_dim), _encoder_family(recorded, embed_dim)
    if a is None or b is None or a == b:
        return None
    shown = given.id if isinstance(given, TextEncoderSpec) else given
    return (f"text encoder {shown} differs from {recorded}, the one {path} was trained with: its region "
            "embeddings are matched to that text space, so scores with another encoder are unreliable")


def resolve_encoder(encoder, state_dict: dict, meta: dict, embed_dim: int, path, required: bool = True) -> tuple:
    """``(TextEncoderSpec or None, note)`` for a detector checkpoint: ``encoder`` when given (an
    :class:`EncoderMismatchWarning` when it is not the one the checkpoint was trained with), else the
    recorded one (:func:`infer_encoder`: :class:`DetectorError` asking for ``--encoder`` when unknown,
    unless not ``required``, i.e. the vocabulary's embeddings are given precomputed: then ``None``)."""
    if encoder is None:
        if not required and recorded_encoder(state_dict, meta, embed_dim)[0] is None:
            return None, "precomputed embeddings only"
        spec, note = infer_encoder(state_dict, meta, embed_dim, path)
        if spec.startswith("clip:") and not Path(spec[len("clip:"):]).expanduser().is_file():
            if not required:
                return None, f"the recorded {spec} is not here; precomputed embeddings only"
            raise DetectorError(f"{path} was trained with the text encoder {spec} ({note}), whose weights are not "
                                "here: pass --encoder clip:PATH (Python: encoder=) with your copy of them")
        return make_text_encoder(spec, embed_dim), note
    spec, _ = recorded_encoder(state_dict, meta, embed_dim)
    enc = make_text_encoder(encoder, embed_dim)
    if spec is not None:
        msg = encoder_mismatch(encoder if isinstance(encoder, (str, TextEncoderSpec)) else enc, spec, embed_dim,
                               path)
        if msg:
            warnings.warn(msg, EncoderMismatchWarning, stacklevel=3)
            return enc, f"given; the checkpoint's is {spec}"
    return enc, "given"
