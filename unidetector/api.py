"""Detect anything: open-world detection with any vocabulary, from Python (``unidet detect`` uses it).

    from unidetector import Detector
    det = Detector.from_checkpoint("work_dirs/stage2_partitioned/latest.pkl",
                                   proposal_checkpoint="work_dirs/stage1_cln/latest.pkl",
                                   classes=["red star", "blue ring"])
    d = det.detect("image.png")               # Detections: boxes (n, 4), scores, labels, names
    d2 = det.detect("image.png", classes=["green cross"])   # re-scores the cached regions only
    rgb = det.draw("image.png", d)

Pipeline per image (SPEC §1, §5): stage 1 (the CLN of ``proposal_checkpoint``; or given proposals)
→ top ``num_proposals`` boxes with their CLN score ``o`` → stage 2 (the FastRCNN of the stage-2
checkpoint, its box head turned into ``BBoxHeadCLIPInference``): backbone, RoIAlign, CLIP ``layer4``,
attention pool → region embeddings ``f`` and box deltas. Scoring a vocabulary ``T`` (text embeddings
of the class names) is then ``p = sigmoid(100 · cos(f, T))``, ``s = p^β · o^(1−β)``, decode, per-class
soft-NMS (the config's ``test_cfg.rcnn``), and the final ``score_thr``.

**Cached regions**: ``f``, the deltas, the proposals and the image meta of the last ``cache_size``
images are kept, keyed by the image content (sha1 of the pixels) and the proposal source, so a new
vocabulary on an image already seen costs only the scoring step (no backbone, no RoI head).

**Models from checkpoints**: the model config is the config text stored in the checkpoint's meta (or
``config=``). A stage-2 *training* config (``BBoxHeadCLIPPartitioned``/``BBoxHeadCLIP``) becomes the
open-world inference model: ``BBoxHeadCLIPInference`` (β = ``beta``, no calibration),
``with_proposal_score=True``, and the config's test pipeline with ``LoadProposals(num_proposals,
load_score=True)``. The text-embedding buffers of the checkpoint are never used (``zs_weights*``
stay the model's own, SPEC §5); the vocabulary's embeddings come from the text encoder.

**Text encoder** (``encoder=``): ``"clip:PATH"`` (CLIP RN50 text tower, 81 prompt templates),
``"synthetic"`` / ``"synthetic:dim=D,seed=S"`` (the synthetic world's word vectors), or an object with
``encode(names) -> (C, D)`` (and optionally a ``cache_id`` string). Default: the encoder the checkpoint
was trained with when that can be established (a ``text_encoder`` entry in its meta, or its stored
training embeddings equal the synthetic encoding of its ``CLASSES``); otherwise ``encoder=`` is required
(:class:`DetectorError`, no guess). An encoder other than the established one gets an
:class:`EncoderMismatchWarning` (``unidet detect`` prints it as one ``warning:`` line).
Embeddings are cached on disk (:mod:`unidetector.text.cache`).
"""
from __future__ import annotations

import copy
import hashlib
import os
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .convert.checkpoints import (CLIP_BOX_HEADS, checkpoint_kind_message, checkpoint_stage,  # noqa: F401
                                  config_stage)
from .errors import UnidetError

__all__ = ["Detector", "Detections", "DetectorError", "EncoderMismatchWarning", "TextEncoderSpec",
           "checkpoint_kind_message", "make_text_encoder"]

IMAGE_LOADERS = ("LoadImageFromFile", "LoadImageFromWebcam")


class DetectorError(UnidetError, ValueError):
    """A checkpoint, config, encoder or input that cannot make a detector (the message says why)."""


# ----------------------------------------------------------------------------------------- results
@dataclass
class Detections:
    """Detections of one image, in original-image pixels, sorted by score (highest first).

    ``boxes`` (n, 4) float32 ``x1, y1, x2, y2``; ``scores`` (n,) float32 (fused ``p^β o^(1−β)``);
    ``labels`` (n,) int64 indices into ``vocabulary``; ``names`` (n,) the class names;
    ``image_size`` ``(height, width)``.
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    names: list
    image_size: tuple
    vocabulary: list = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def to_coco(self, image_id=0) -> list:
        """COCO result entries (``bbox`` = ``[x, y, w, h]``, ``category_id`` = vocabulary index + 1)
        plus ``class_name``."""
        out = []
        for box, score, label, name in zip(self.boxes.tolist(), self.scores.tolist(), self.labels.tolist(),
                                           self.names):
            x1, y1, x2, y2 = box
            out.append({"image_id": image_id, "category_id": int(label) + 1,
                        "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(score), "class_name": name})
        return out


# ----------------------------------------------------------------------------------------- text
@dataclass
class TextEncoderSpec:
    """A text encoder with a stable ``id`` (the embedding cache key) and its prompt ``templates``."""

    id: str
    encode_fn: object
    templates: tuple = ()

    def encode(self, names) -> np.ndarray:
        return np.asarray(self.encode_fn(list(names)), dtype=np.float32)


def _parse_kv(text: str) -> dict:
    out = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        if "=" not in item:
            raise DetectorError(f"encoder option {item!r}: expected key=value (e.g. synthetic:dim=1024,seed=0)")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def make_text_encoder(spec, embed_dim: int) -> TextEncoderSpec:
    """``spec``: ``"synthetic[:dim=D,seed=S]"``, ``"clip:PATH"``, a :class:`TextEncoderSpec`, or an
    object with ``encode(names)`` (cached on disk only when it has a ``cache_id``)."""
    if isinstance(spec, TextEncoderSpec):
        return spec
    if spec is None:
        spec = "synthetic"
    if not isinstance(spec, str):
        if not hasattr(spec, "encode"):
            raise DetectorError(f"encoder {spec!r}: expected 'clip:PATH', 'synthetic' or an object with encode(names)")
        return TextEncoderSpec(getattr(spec, "cache_id", None) or "", spec.encode)
    if spec == "synthetic" or spec.startswith("synthetic:"):
        from .text.synthetic_encoder import SyntheticTextEncoder

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
        from .text.templates import TEMPLATES

        st = path.stat()
        holder = {}

        def encode(names):  # the CLIP text tower is loaded only on a cache miss
            from .text.embeddings import CLIPPromptEncoder, encode_class_names

            if "enc" not in holder:
                holder["enc"] = CLIPPromptEncoder(str(path))
            return encode_class_names(names, holder["enc"].encode_text, TEMPLATES)

        return TextEncoderSpec(f"clip:{path.resolve()}:{st.st_size}:{st.st_mtime_ns}", encode, tuple(TEMPLATES))
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
        from .text.synthetic_encoder import SyntheticTextEncoder
        from .text.vocab import text_names

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
        raise DetectorError(f"{path} does not record the text encoder it was trained with (no meta['text_encoder'] "
                            f"and its training embeddings are not the synthetic encoder's{reason}): pass --encoder "
                            f"(Python: encoder=) {ENCODER_CHOICES}; D = {embed_dim} here")
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


# ----------------------------------------------------------------------------------------- checkpoints
def read_detector_checkpoint(path):
    """``(state_dict, meta)``; ``meta`` is ``{}`` for files without one (converted official weights)."""
    from .convert.checkpoints import read_checkpoint
    from .engine.checkpoint import load_checkpoint_file

    path = Path(path)
    if not path.is_file():
        raise DetectorError(f"checkpoint not found: {path}")
    if path.suffix == ".pkl":
        try:
            ckpt = load_checkpoint_file(path)
        except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file
            raise DetectorError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from None
        return {k: np.asarray(v) for k, v in ckpt["state_dict"].items()}, dict(ckpt.get("meta") or {})
    return dict(read_checkpoint(path)), {}


def _config_for(path, state_dict, meta, config, role: str):
    from .config import Config, load_config

    if config is not None:
        return config if isinstance(config, Config) else load_config(config)
    text = meta.get("config")
    if not text:
        raise DetectorError(f"{path}: the checkpoint carries no config (meta['config']); pass the {role} config "
                            f"explicitly ({'--config' if role == 'stage-2' else '--proposal-config'} FILE)")
    return Config.fromstring(text, ".py")


def _test_pipeline(cfg) -> list:
    data = cfg.get("data") or {}
    test = data.get("test")
    if isinstance(test, (list, tuple)):
        test = test[0] if test else None
    pipeline = (test or {}).get("pipeline") or cfg.get("test_pipeline")
    if not pipeline:
        raise DetectorError("the config has no test pipeline (data.test.pipeline or test_pipeline)")
    return [dict(copy.deepcopy(t)) for t in pipeline]


def _walk(pipeline):
    for t in pipeline:
        yield t
        if isinstance(t.get("transforms"), (list, tuple)):
            yield from _walk(t["transforms"])


def image_pipeline(pipeline: list, num_proposals: int | None = None) -> list:
    """The test pipeline without its image loader (images are given decoded); with ``num_proposals``,
    proposals with their score are loaded (top ``num_proposals``) and collected."""
    out = [t for t in pipeline if t.get("type") not in IMAGE_LOADERS]
    if num_proposals is None:
        return out
    out = [t for t in out if t.get("type") != "LoadProposals"]
    out.insert(0, dict(type="LoadProposals", num_max_proposals=int(num_proposals), load_score=True))
    collects = [t for t in _walk(out) if t.get("type") == "Collect"]
    if not collects:
        raise DetectorError("the stage-2 test pipeline has no Collect step")
    for t in collects:
        if "proposals" not in t["keys"]:
            t["keys"] = list(t["keys"]) + ["proposals"]
    return out


def open_world_model_config(model_cfg, embed_dim: int, beta: float) -> dict:
    """The stage-2 model config with ``BBoxHeadCLIPInference`` (placeholder 1-class vocabulary; the
    vocabulary is applied at scoring time), ``with_proposal_score=True`` and no ``train_cfg``."""
    model = copy.deepcopy(model_cfg.to_dict() if hasattr(model_cfg, "to_dict") else dict(model_cfg))
    roi_head = model.get("roi_head") or {}
    head = roi_head.get("bbox_head") or {}
    if head.get("type") not in CLIP_BOX_HEADS:
        raise DetectorError(f"stage-2 model: box head {head.get('type')!r} is not a CLIP box head "
                            f"({', '.join(CLIP_BOX_HEADS)}); open-vocabulary detection needs one")
    new_head = dict(type="BBoxHeadCLIPInference", roi_feat_size=head.get("roi_feat_size", 7),
                    in_channels=head.get("in_channels", 2048), reg_class_agnostic=True,
                    zeroshot_path=np.zeros((1, embed_dim), np.float32).tolist(), num_classes=1, beta=float(beta),
                    withcalibration=False)
    for key in ("bbox_coder", "loss_bbox", "attnpool", "reg_decoded_bbox"):
        if head.get(key) is not None:
            new_head[key] = head[key]
    roi_head["bbox_head"] = new_head
    roi_head["with_proposal_score"] = True
    model["roi_head"] = roi_head
    model.pop("train_cfg", None)
    return model


def resolve_encoder(encoder, state_dict: dict, meta: dict, embed_dim: int, path) -> tuple:
    """``(TextEncoderSpec, note)`` for a stage-2 checkpoint: ``encoder`` when given (an
    :class:`EncoderMismatchWarning` when it is not the one the checkpoint was trained with), else the
    recorded one (:func:`infer_encoder`; :class:`DetectorError` asking for ``--encoder`` when unknown)."""
    if encoder is None:
        spec, note = infer_encoder(state_dict, meta, embed_dim, path)
        if spec.startswith("clip:") and not Path(spec[len("clip:"):]).expanduser().is_file():
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


def _build_loaded(model_cfg, state_dict, path):
    from .convert.state_dict import StateDictError, load_state_dict
    from .engine.runner import build_model

    model = build_model(model_cfg)
    try:
        load_state_dict(model, state_dict, strict=True)
    except StateDictError as e:
        raise DetectorError(f"{path}: the weights do not fit the model of its config:\n{e.report.format()}") from None
    model.eval()
    return model


def _image_hash(rgb: np.ndarray) -> str:
    h = hashlib.sha1(str(rgb.shape).encode())
    h.update(np.ascontiguousarray(rgb).tobytes())
    return h.hexdigest()


def load_rgb(image) -> tuple:
    """``(rgb uint8 (H, W, 3), name)`` from a path or an RGB uint8 array. Unreadable files raise
    :class:`unidetector.data.transforms.ImageLoadError` naming the file."""
    from .data.transforms import read_image

    if isinstance(image, (str, os.PathLike)):
        return read_image(str(image), channel_order="rgb"), str(image)
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise DetectorError(f"image: expected a path or an RGB uint8 (H, W, 3) array, got {arr.dtype} {arr.shape}")
    return np.ascontiguousarray(arr), "<array>"


def scored_proposals(proposals, name="<array>") -> np.ndarray:
    """``proposals`` as float32 (n, 5) ``[x1, y1, x2, y2, score]`` (empty → (0, 5)); anything else,
    (n, 4) boxes without the stage-1 score included, or non-finite values are a :class:`DetectorError`."""
    p = np.asarray(proposals, np.float32)
    if p.size == 0:
        return np.zeros((0, 5), np.float32)
    if p.ndim != 2 or p.shape[1] != 5:
        raise DetectorError(f"{name}: proposals must be an (n, 5) array [x1, y1, x2, y2, score] (the stage-1 score "
                            f"is fused into the detection score), got shape {p.shape}")
    if not np.isfinite(p).all():
        raise DetectorError(f"{name}: the proposals have NaN or infinite values")
    return p


# ----------------------------------------------------------------------------------------- detector
class Detector:
    """Open-world detector (see the module doc). Build it with :meth:`from_checkpoint`."""

    def __init__(self, model, pipeline, encoder: TextEncoderSpec, proposal_model=None, proposal_pipeline=None,
                 classes=None, score_thr: float = 0.3, num_proposals: int = 100, cache_size: int = 64,
                 encoder_note: str = ""):
        from .data.transforms import Compose

        self.model = model
        self.pipeline = Compose(pipeline)
        self.proposal_model = proposal_model
        self.proposal_pipeline = None if proposal_pipeline is None else Compose(proposal_pipeline)
        self.encoder = encoder
        self.encoder_note = encoder_note
        self.score_thr = float(score_thr)
        self.num_proposals = int(num_proposals)
        self.cache_size = int(cache_size)
        self.embed_dim = int(model.roi_head.bbox_head.fc_reg.weight.shape[1])
        self._regions = OrderedDict()      # (image hash, proposal key) -> Regions
        self._embeddings = {}              # tuple(names) -> (C, D) float32
        self.vocabulary = None
        self.last_timings = {}
        if classes is not None:
            self.set_vocabulary(classes)

    @classmethod
    def from_checkpoint(cls, checkpoint, proposal_checkpoint=None, classes=None, encoder=None,
                        score_thr: float = 0.3, beta: float = 0.3, config=None, proposal_config=None,
                        num_proposals: int = 100, cache_size: int = 64):
        """A detector from a stage-2 checkpoint (and a stage-1 one for proposals; without it every
        ``detect`` call needs ``proposals=``). ``config``/``proposal_config`` override the configs
        stored in the checkpoints. See the module doc for ``encoder``."""
        import unidetector  # noqa: F401  (runtime bootstrap before jittor)

        if int(num_proposals) < 1:
            raise DetectorError(f"num_proposals must be at least 1 (the top proposals per image), got {num_proposals}")
        sd, meta = read_detector_checkpoint(checkpoint)
        kind = checkpoint_kind_message(checkpoint, sd, 2)
        if kind:
            raise DetectorError(kind)
        if checkpoint_stage(sd) != 2 or "roi_head.bbox_head.fc_reg.weight" not in sd:
            raise DetectorError(f"{checkpoint}: not a stage-2 UniDetector checkpoint (no "
                                "roi_head.bbox_head.attnpool / fc_reg weights)")
        embed_dim = int(sd["roi_head.bbox_head.fc_reg.weight"].shape[1])
        enc, note = resolve_encoder(encoder, sd, meta, embed_dim, checkpoint)
        cfg = _config_for(checkpoint, sd, meta, config, "stage-2")
        model = _build_loaded(open_world_model_config(cfg.model, embed_dim, beta), sd, checkpoint)
        pipeline = image_pipeline(_test_pipeline(cfg), num_proposals)
        proposal_model = proposal_pipeline = None
        if proposal_checkpoint is not None:
            psd, pmeta = read_detector_checkpoint(proposal_checkpoint)
            kind = checkpoint_kind_message(proposal_checkpoint, psd, 1)
            if kind or checkpoint_stage(psd) != 1:
                raise DetectorError(kind or f"{proposal_checkpoint} is not a stage-1 (proposal network) checkpoint: "
                                    "it has no rpn_head weights")
            pcfg = _config_for(proposal_checkpoint, psd, pmeta, proposal_config, "stage-1")
            pmodel_cfg = copy.deepcopy(pcfg.model.to_dict() if hasattr(pcfg.model, "to_dict") else dict(pcfg.model))
            pmodel_cfg.pop("train_cfg", None)
            proposal_model = _build_loaded(pmodel_cfg, psd, proposal_checkpoint)
            proposal_pipeline = image_pipeline(_test_pipeline(pcfg))
        return cls(model, pipeline, enc, proposal_model, proposal_pipeline, classes=classes, score_thr=score_thr,
                   num_proposals=num_proposals, cache_size=cache_size, encoder_note=note)

    # -- vocabulary ---------------------------------------------------------------------------------
    def embeddings(self, classes) -> np.ndarray:
        """``(C, D)`` text embeddings of ``classes`` (memory, then disk cache, then the encoder)."""
        from .text.cache import cached_embeddings
        from .text.vocab import resolve_vocabulary, text_names

        names = tuple(resolve_vocabulary(classes=classes))
        if names not in self._embeddings:
            tnames = text_names(names)
            if self.encoder.id:
                emb, hit = cached_embeddings(self.encoder.id, tnames, self.encoder.encode, self.encoder.templates)
            else:
                emb, hit = self.encoder.encode(tnames), False
            if emb.shape != (len(names), self.embed_dim):
                raise DetectorError(f"text encoder {self.encoder.id or self.encoder!r} gives {emb.shape[1]}-d "
                                    f"embeddings but the checkpoint's region embeddings are {self.embed_dim}-d")
            self._embeddings[names] = emb
            self.last_timings["embedding_cache_hit"] = hit
        return self._embeddings[names]

    def set_vocabulary(self, classes) -> list:
        """Make ``classes`` (list or comma-separated string) the default vocabulary; returns it."""
        from .text.vocab import resolve_vocabulary

        names = resolve_vocabulary(classes=classes)
        self.embeddings(names)
        self.vocabulary = names
        return names

    # -- stages -------------------------------------------------------------------------------------
    def _prepare(self, pipeline, rgb, name, proposals=None) -> dict:
        from .data.loader import collate_detection

        bgr = np.ascontiguousarray(rgb[..., ::-1])
        results = dict(img_info=dict(filename=name), img_prefix=None, filename=name, ori_filename=name, img=bgr,
                       img_shape=bgr.shape, ori_shape=bgr.shape, img_fields=["img"], bbox_fields=[], mask_fields=[],
                       seg_fields=[], dataset_id=0)
        if proposals is not None:
            results["proposals"] = np.asarray(proposals, np.float32)
        return collate_detection([pipeline(results)])

    def propose(self, rgb, name="<array>") -> np.ndarray:
        """Stage 1: ``(n, 5)`` proposals ``[x1, y1, x2, y2, score]`` (original pixels, by score)."""
        import jittor as jt

        if self.proposal_model is None:
            raise DetectorError("no proposal model: build the detector with a stage-1 checkpoint "
                                "(--proposal-checkpoint) or pass proposals=")
        batch = self._prepare(self.proposal_pipeline, rgb, name)
        with jt.no_grad():
            out = self.proposal_model(jt.array(batch["img"]), batch["img_metas"], rescale=True)[0]
        p = np.asarray(out.numpy() if hasattr(out, "numpy") else out, np.float32).reshape(-1, 5)
        return p[np.argsort(-p[:, 4], kind="stable")]

    def regions(self, rgb, proposals, name="<array>"):
        """Stage 2 up to the region embeddings (:class:`~unidetector.engine.regions.Regions`)."""
        from .engine.regions import extract_regions

        batch = self._prepare(self.pipeline, rgb, name, proposals)
        return extract_regions(self.model, batch["img"], batch["img_metas"], batch["proposals"])[0]

    def score(self, regions, embeddings: np.ndarray, names) -> Detections:
        """Vocabulary scoring of cached regions: cosine logits, fusion, decode, soft-NMS, ``score_thr``."""
        from .engine.regions import score_regions
        from .models.roi_heads.bbox_heads.bbox_head_clip import classifier_weights

        dets, labels = score_regions(self.model, regions, classifier_weights(embeddings))
        keep = dets[:, 4] >= self.score_thr
        dets, labels = dets[keep], labels[keep]
        order = np.argsort(-dets[:, 4], kind="stable")
        dets, labels = dets[order], labels[order]
        h, w = regions.ori_shape[:2]
        boxes = dets[:, :4].copy()
        boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, w)
        boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, h)
        return Detections(boxes.astype(np.float32), dets[:, 4].astype(np.float32), labels,
                          [names[i] for i in labels], (int(h), int(w)), list(names))

    # -- public -------------------------------------------------------------------------------------
    def detect(self, image, classes=None, proposals=None, reuse_regions: bool = True) -> Detections:
        """Detections of ``classes`` (default: the vocabulary set last) in ``image`` (a path or an RGB
        uint8 array). ``proposals``: ``(n, 5)`` stage-1 boxes with scores in original pixels (instead
        of the proposal model). With ``reuse_regions``, an image seen before is only re-scored."""
        from .text.vocab import resolve_vocabulary

        names = resolve_vocabulary(classes=classes) if classes is not None else self.vocabulary
        if names is None:
            raise DetectorError("no vocabulary: pass classes=[...] or call set_vocabulary first")
        timings = {"stage1": 0.0, "regions": 0.0, "reused": False}
        t0 = time.perf_counter()
        emb = self.embeddings(names)
        timings["embeddings"] = time.perf_counter() - t0
        rgb, name = load_rgb(image)
        if proposals is not None:
            proposals = scored_proposals(proposals, name)
        pkey = "stage1" if proposals is None else hashlib.sha1(proposals.tobytes()).hexdigest()
        key = (_image_hash(rgb), pkey)
        regions = self._regions.get(key) if reuse_regions else None
        if regions is not None:
            self._regions.move_to_end(key)
            timings["reused"] = True
        else:
            t = time.perf_counter()
            if proposals is None:
                proposals = self.propose(rgb, name)
                timings["stage1"] = time.perf_counter() - t
            t = time.perf_counter()
            regions = self.regions(rgb, proposals, name)
            timings["regions"] = time.perf_counter() - t
            if self.cache_size > 0:
                self._regions[key] = regions
                while len(self._regions) > self.cache_size:
                    self._regions.popitem(last=False)
        t = time.perf_counter()
        dets = self.score(regions, emb, names)
        timings["score"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - t0
        self.last_timings = timings
        return dets

    def draw(self, image, detections: Detections, thickness: int = 2) -> np.ndarray:
        """The image (RGB uint8) with boxes, class names and scores; one readable colour per class."""
        from .visualize import class_color, draw_detections

        rgb, _ = load_rgb(image)
        order = np.argsort(detections.scores, kind="stable")  # best drawn last (on top)
        texts = [f"{detections.names[i]} {detections.scores[i]:.2f}" for i in order]
        colors = [class_color(int(detections.labels[i])) for i in order]
        return draw_detections(rgb, detections.boxes[order], texts, colors=colors, thickness=thickness)

    def clear_cache(self) -> None:
        self._regions.clear()
