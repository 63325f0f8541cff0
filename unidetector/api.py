"""Detect anything: open-world detection with any vocabulary, from Python (``unidet detect`` uses it).

    from unidetector import Detector
    det = Detector.from_checkpoint("work_dirs/stage2_partitioned/latest.pkl",
                                   proposal_checkpoint="work_dirs/stage1_cln/latest.pkl",
                                   classes=["red star", "blue ring"])
    d = det.detect("image.png")               # Detections: boxes (n, 4), scores, labels, names
    d2 = det.detect("image.png", classes=["green cross"])   # re-scores the cached regions only
    rgb = det.draw("image.png", d)

Pipeline per image (SPEC §1, §5): proposals → top ``num_proposals`` boxes with their score ``o`` →
the CLIP RoI head: backbone, RoIAlign, CLIP ``layer4``, attention pool → region embeddings ``f`` and
box deltas. Scoring a vocabulary ``T`` (text embeddings of the class names) is then
``p = sigmoid(100 · cos(f, T))``, ``s = p^β · o^(1−β)``, decode, per-class soft-NMS (the config's
``test_cfg.rcnn``), and the final ``score_thr``.

**Checkpoint kinds** (:func:`unidetector.convert.checkpoints.checkpoint_kind`):

* *decoupled* (official "2nd stage"): a stage-2 checkpoint (CLIP RoI classifier, ``FastRCNN``) with
  proposals from a stage-1 checkpoint (the CLN, ``proposal_checkpoint``) or given ``proposals=``;
  defaults: the top 100 proposals, β = 0.3 (the official LVIS inference);
* *end-to-end*: one checkpoint (CLIP C4 backbone + ``RPNHead`` + CLIP RoI head, ``FasterRCNN``) that
  makes its own proposals (one backbone pass for the RPN and the RoI head); defaults as the official
  end-to-end inference: every RPN proposal (``test_cfg.rpn.max_per_img``, 1000), sigmoid scores only
  (β = 1). Given ``proposals=`` replace its RPN.

Other kinds are refused with what they are and where they go: a stage-1 checkpoint as the detector,
a CLIP/RegionCLIP backbone initialisation (neither a box regression ``fc_reg`` nor text embeddings), a bare
backbone.

**Cached regions**: ``f``, the deltas, the proposals and the image meta of the last ``cache_size``
images are kept, keyed by the image content (sha1 of the pixels) and the proposal source, so a new
vocabulary on an image already seen costs only the scoring step (no backbone, no RoI head).

**Models from checkpoints**: the model config is the config text stored in the checkpoint's meta
(``meta['config']``, kept by ``unidet convert`` and read from mmdet ``.pth`` files too; parsed as data,
never executed) or ``config=``; ``cfg_options`` (``{"a.b": value}``) and ``max_dets``
(``test_cfg.rcnn.max_per_img``; the official LVIS inference keeps :data:`LVIS_MAX_DETS`) change it. The
CLIP box head (``BBoxHeadCLIPPartitioned``/``BBoxHeadCLIP``) becomes the open-world inference head
``BBoxHeadCLIPInference`` (β = ``beta``, no calibration), ``with_proposal_score=True``, and the config's
test pipeline gets ``LoadProposals(num_proposals, load_score=True)``. The model is built without its
training-time files (``zeroshot_path`` embeddings, ``cat_freq_path`` counts: :func:`~unidetector.models.
roi_heads.bbox_heads.bbox_head_clip.without_data_files`): the text-embedding buffers of the checkpoint
are never used (``zs_weights*`` stay the model's own, SPEC §5); the vocabulary's embeddings come from
the text encoder, or are given precomputed (``embeddings=``: an ``.npy`` of ``unidet embed`` or the
official ``clip_embeddings/*.npy``, rows = the classes in order).

**Text encoder** (``encoder=``): ``"clip:PATH"`` (CLIP RN50 text tower, 81 prompt templates),
``"synthetic"`` / ``"synthetic:dim=D,seed=S"`` (the synthetic world's word vectors), or an object with
``encode(names) -> (C, D)`` (and optionally a ``cache_id`` string). Default: the encoder the checkpoint
was trained with when that can be established (a ``text_encoder`` entry in its meta, or its stored
training embeddings equal the synthetic encoding of its ``CLASSES``); otherwise ``encoder=`` (or
precomputed ``embeddings=``) is required (:class:`DetectorError`, no guess). An encoder other than the
established one gets an :class:`EncoderMismatchWarning` (``unidet detect`` prints it as one ``warning:``
line). Embeddings are cached on disk (:mod:`unidetector.text.cache`), a CLIP encoder keyed by the
content of its weights file (a copied or touched ``RN50.pt`` finds them again).
"""
from __future__ import annotations

import copy
import hashlib
import os
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from .convert.checkpoints import checkpoint_kind_message
from .data.pipelines import image_pipeline, test_pipeline
from .errors import DetectorError
from .text.encoders import (EncoderMismatchWarning, TextEncoderSpec, make_text_encoder,  # noqa: F401
                            resolve_encoder)

__all__ = ["Detector", "Detections", "DetectorError", "EncoderMismatchWarning", "TextEncoderSpec",
           "checkpoint_kind_message", "make_text_encoder"]

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
#: ``test_cfg.rcnn.max_per_img`` of the official LVIS inference configs (``unidet detect --vocab lvis``).
LVIS_MAX_DETS = 300
#: Decoupled defaults (the official LVIS inference): top proposals per image and the fusion exponent.
DECOUPLED_NUM_PROPOSALS, DECOUPLED_BETA = 100, 0.3
#: End-to-end default (the official end-to-end inference): sigmoid scores only.
END2END_BETA = 1.0


class Detector:
    """Open-world detector (see the module doc). Build it with :meth:`from_checkpoint`.

    ``own_proposals``: the model is end-to-end (its RPN makes the proposals; ``proposal_pipeline`` is
    the image pipeline without proposals). ``embeddings``: precomputed ``(C, D)`` text embeddings of
    ``classes`` (rows in the same order)."""

    def __init__(self, model, pipeline, encoder: TextEncoderSpec | None, proposal_model=None, proposal_pipeline=None,
                 classes=None, score_thr: float = 0.3, num_proposals: int = DECOUPLED_NUM_PROPOSALS,
                 cache_size: int = 64, encoder_note: str = "", own_proposals: bool = False, embeddings=None,
                 kind: str = "stage2"):
        from .data.transforms import Compose

        self.model = model
        self.pipeline = Compose(pipeline)
        self.own_proposals = bool(own_proposals)
        self.proposal_model = model if self.own_proposals else proposal_model
        self.proposal_pipeline = None if proposal_pipeline is None else Compose(proposal_pipeline)
        self.encoder = encoder
        self.encoder_note = encoder_note
        self.kind = kind
        self.score_thr = float(score_thr)
        self.num_proposals = int(num_proposals)
        self.cache_size = int(cache_size)
        self.embed_dim = int(model.roi_head.bbox_head.embed_dim)
        self._regions = OrderedDict()      # (image hash, proposal key) -> Regions
        self._embeddings = {}              # tuple(names) -> (C, D) float32
        self._exemplars = OrderedDict()    # (image hash, box) -> (D,) unit-norm exemplar embedding
        self.vocabulary = None
        self.last_timings = {}
        if classes is not None:
            self.set_vocabulary(classes, embeddings=embeddings)
        elif embeddings is not None:
            raise DetectorError("embeddings= needs classes= (one name per embedding row, in the same order)")

    @property
    def max_dets(self) -> int:
        """Detections kept per image (``test_cfg.rcnn.max_per_img``)."""
        return int(self.model.roi_head.test_cfg["max_per_img"])

    @classmethod
    def from_checkpoint(cls, checkpoint, proposal_checkpoint=None, classes=None, encoder=None,
                        score_thr: float = 0.3, beta: float | None = None, config=None, proposal_config=None,
                        num_proposals: int | None = None, cache_size: int = 64, embeddings=None, max_dets=None,
                        cfg_options=None, require_proposal_source: bool = False, text_encoder_required: bool = True):
        """A detector from a stage-2 checkpoint (with a stage-1 one for proposals; without it every
        ``detect`` call needs ``proposals=``) or an end-to-end checkpoint (its own RPN). ``config`` /
        ``proposal_config`` override the configs stored in the checkpoints; ``cfg_options``
        (``{"a.b": value}``) and ``max_dets`` change the stage-2 one. ``beta`` / ``num_proposals``
        default to the official values of the checkpoint's kind (module doc). ``embeddings``: a
        ``.npy`` path or ``(C, D)`` array of precomputed text embeddings of ``classes``. See the
        module doc for ``encoder``. ``require_proposal_source``: a stage-2 checkpoint without
        ``proposal_checkpoint`` is an error (found before any model is built; ``unidet detect`` without
        ``--proposals``). ``text_encoder_required=False``: the vocabulary comes from image exemplars only, so a
        checkpoint whose text encoder cannot be established is accepted (class names then need one)."""
        import unidetector  # noqa: F401  (runtime bootstrap before jittor)
        from .convert.checkpoints import checkpoint_kind, describe_checkpoint, region_embed_dim
        from .engine.open_world import (apply_settings, build_loaded, config_for, open_world_model_config,
                                        read_detector_checkpoint)

        if num_proposals is not None and int(num_proposals) < 1:
            raise DetectorError(f"num_proposals must be at least 1 (the top proposals per image), got {num_proposals}")
        sd, meta = read_detector_checkpoint(checkpoint)
        kind = checkpoint_kind(sd)
        if kind == "stage1":
            raise DetectorError(checkpoint_kind_message(checkpoint, sd, 2))
        if kind not in ("stage2", "end2end"):
            raise DetectorError(describe_checkpoint(checkpoint, sd) + "; give a trained stage-2 or end-to-end "
                                "checkpoint" if kind else
                                f"{checkpoint}: not a UniDetector detector checkpoint (no "
                                "roi_head.bbox_head.attnpool / fc_reg weights): give a stage-2 or end-to-end checkpoint")
        own = kind == "end2end" and proposal_checkpoint is None
        if require_proposal_source and kind == "stage2" and proposal_checkpoint is None:
            raise DetectorError(f"{checkpoint} is a stage-2 (CLIP RoI classifier) checkpoint: it classifies proposals "
                                "made elsewhere; give --proposal-checkpoint STAGE1 (run stage 1 on each image) or "
                                "--proposals rp.pkl (Python: proposal_checkpoint= or detect(proposals=))")
        embed_dim = region_embed_dim(sd)
        enc, note = resolve_encoder(encoder, sd, meta, embed_dim, checkpoint,
                                    required=embeddings is None and text_encoder_required)
        cfg = apply_settings(config_for(checkpoint, meta, config, "stage-2"), checkpoint, cfg_options, max_dets)
        mismatch = checkpoint_kind_message(checkpoint, sd, cfg.model)
        if mismatch:
            raise DetectorError(f"{mismatch} (the model is the one of "
                                f"{'the config stored in the checkpoint' if config is None else config})")
        if beta is None:
            beta = END2END_BETA if kind == "end2end" else DECOUPLED_BETA
        if num_proposals is None:
            num_proposals = DECOUPLED_NUM_PROPOSALS
            if own:
                num_proposals = int(((cfg.model.get("test_cfg") or {}).get("rpn") or {}).get("max_per_img") or 1000)
        model = build_loaded(open_world_model_config(cfg.model, embed_dim, beta), sd, checkpoint, embed_dim)
        test = test_pipeline(cfg)
        pipeline = image_pipeline(test, num_proposals)
        proposal_model = proposal_pipeline = None
        if own:
            proposal_pipeline = image_pipeline(test)
        elif proposal_checkpoint is not None:
            psd, pmeta = read_detector_checkpoint(proposal_checkpoint)
            pkind = checkpoint_kind(psd)
            if pkind != "stage1":
                raise DetectorError((checkpoint_kind_message(proposal_checkpoint, psd, 1) if pkind else None)
                                    or (describe_checkpoint(proposal_checkpoint, psd)
                                        + "; --proposal-checkpoint takes a stage-1 (proposal network) checkpoint"
                                        if pkind else f"{proposal_checkpoint} is not a stage-1 (proposal network) "
                                        "checkpoint: it has no rpn_head weights"))
            pcfg = config_for(proposal_checkpoint, pmeta, proposal_config, "stage-1")
            pmodel_cfg = copy.deepcopy(pcfg.model.to_dict() if hasattr(pcfg.model, "to_dict") else dict(pcfg.model))
            pmodel_cfg.pop("train_cfg", None)
            mismatch = checkpoint_kind_message(proposal_checkpoint, psd, pmodel_cfg)
            if mismatch:
                raise DetectorError(mismatch)
            proposal_model = build_loaded(pmodel_cfg, psd, proposal_checkpoint)
            proposal_pipeline = image_pipeline(test_pipeline(pcfg))
        return cls(model, pipeline, enc, proposal_model, proposal_pipeline, classes=classes, score_thr=score_thr,
                   num_proposals=num_proposals, cache_size=cache_size, encoder_note=note, own_proposals=own,
                   embeddings=embeddings, kind=kind)

    # -- vocabulary ---------------------------------------------------------------------------------
    def embeddings(self, classes) -> np.ndarray:
        """``(C, D)`` text embeddings of ``classes`` (given ones, memory, then disk cache, then the encoder)."""
        from .text.cache import cached_embeddings
        from .text.vocab import resolve_vocabulary, text_names

        names = tuple(resolve_vocabulary(classes=classes))
        if names not in self._embeddings:
            if self.encoder is None:
                raise DetectorError(f"no text encoder to embed {len(names)} class names ({', '.join(names[:3])}"
                                    f"{', ...' if len(names) > 3 else ''}): only precomputed embeddings were given; "
                                    "pass --encoder clip:PATH (Python: encoder=) or their embeddings "
                                    "(--embeddings E.npy, Python: embeddings=)")
            tnames = text_names(names)
            if self.encoder.id:
                emb, hit = cached_embeddings(self.encoder.id, tnames, self.encoder.encode, self.encoder.templates)
            else:
                emb, hit = self.encoder.encode(tnames), False
            if emb.shape != (len(names), self.embed_dim):
                raise DetectorError(f"text encoder {self.encoder} gives {emb.shape[1]}-d "
                                    f"embeddings but the checkpoint's region embeddings are {self.embed_dim}-d")
            self._embeddings[names] = emb
            self.last_timings["embedding_cache_hit"] = hit
        return self._embeddings[names]

    def set_vocabulary(self, classes, embeddings=None) -> list:
        """Make ``classes`` (list or comma-separated string) the default vocabulary; returns it.
        ``embeddings``: their precomputed ``(C, D)`` text embeddings (an ``.npy`` path or an array,
        rows in the order of ``classes``; checked by :func:`~unidetector.text.embeddings.load_embeddings`)
        instead of the encoder."""
        from .text.embeddings import load_embeddings
        from .text.vocab import resolve_vocabulary

        names = resolve_vocabulary(classes=classes)
        if embeddings is not None:
            self._embeddings[tuple(names)] = load_embeddings(embeddings, num_classes=len(names), dim=self.embed_dim,
                                                            class_names=names)
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
        """Proposals ``(n, 5)`` ``[x1, y1, x2, y2, score]`` (original pixels, by score): stage 1, or the
        end-to-end model's RPN (its top ``num_proposals``)."""
        import jittor as jt

        if self.proposal_model is None:
            raise DetectorError("no proposal model: build the detector with a stage-1 checkpoint "
                                "(--proposal-checkpoint) or pass proposals=")
        batch = self._prepare(self.proposal_pipeline, rgb, name)
        if self.own_proposals:
            _, props = self._rpn(batch)
            p = np.asarray(props.numpy(), np.float32).reshape(-1, 5).copy()
            p[:, :4] /= np.asarray(batch["img_metas"][0]["scale_factor"], np.float32).reshape(-1)[:4]
        else:
            with jt.no_grad():
                out = self.proposal_model(jt.array(batch["img"]), batch["img_metas"], rescale=True)[0]
            p = np.asarray(out.numpy() if hasattr(out, "numpy") else out, np.float32).reshape(-1, 5)
        return p[np.argsort(-p[:, 4], kind="stable")]

    def _rpn(self, batch) -> tuple:
        """End-to-end: ``(backbone features, (n, 5) RPN proposals in network-input pixels)``, the top
        ``num_proposals`` by score."""
        import jittor as jt

        with jt.no_grad():
            feats = self.model.extract_feat(jt.array(batch["img"]))
            props = self.model.rpn_head.simple_test_rpn(feats, batch["img_metas"])[0]
        order = np.argsort(-props[:, 4].numpy(), kind="stable")[:self.num_proposals]
        return feats, props[jt.array(order)] if len(order) else props[:0]

    def regions(self, rgb, proposals, name="<array>"):
        """Stage 2 up to the region embeddings (:class:`~unidetector.models.roi_heads.regions.Regions`)."""
        import jittor as jt

        batch = self._prepare(self.pipeline, rgb, name, proposals)
        with jt.no_grad():
            return self.model.region_embeddings(jt.array(batch["img"]), batch["img_metas"], batch["proposals"])[0]

    def score(self, regions, embeddings: np.ndarray, names) -> Detections:
        """Vocabulary scoring of cached regions (``roi_head.score_regions``: cosine logits, fusion, decode,
        soft-NMS), then ``score_thr``."""
        import jittor as jt

        with jt.no_grad():
            dets, labels = self.model.roi_head.score_regions(regions, embeddings)
        dets = np.asarray(dets.numpy(), np.float32).reshape(-1, 5)
        labels = np.asarray(labels.numpy(), np.int64).reshape(-1)
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
    def exemplar_embedding(self, exemplar) -> np.ndarray:
        """``(D,)`` unit-norm embedding of one image exemplar: an image (path or RGB uint8 array; the whole
        image is the box) or ``(image, [x1, y1, x2, y2])`` with the box in its pixels. It goes through the
        same backbone → RoIAlign → layer4 → attention pool as every region, so it lives in the space the
        vocabulary is matched in."""
        image, box = exemplar if isinstance(exemplar, tuple) else (exemplar, None)
        rgb, name = load_rgb(image)
        h, w = rgb.shape[:2]
        box = np.float32([0, 0, w, h]) if box is None else np.asarray(box, np.float32).reshape(-1)
        inside = (box.shape == (4,) and np.isfinite(box).all() and 0 <= box[0] < box[2] <= w
                  and 0 <= box[1] < box[3] <= h)
        if not inside:
            raise DetectorError(f"exemplar {name}: the box {box.tolist()} must be x1 < x2, y1 < y2 inside the image "
                                f"({w} x {h} pixels)")
        key = (_image_hash(rgb), tuple(box.tolist()))
        if key not in self._exemplars:
            f = self.regions(rgb, np.concatenate([box, [1.0]])[None].astype(np.float32), name).features[0]
            self._exemplars[key] = (f / max(float(np.linalg.norm(f)), 1e-12)).astype(np.float32)
            while len(self._exemplars) > max(self.cache_size, 1):
                self._exemplars.popitem(last=False)
        return self._exemplars[key]

    def vocabulary_embeddings(self, classes=None, exemplars=None) -> tuple:
        """``(names, (C, D) embeddings)`` of a vocabulary of class names (``classes``, default the one set
        last) and image ``exemplars`` (``{name: exemplar or [exemplars]}``, see :meth:`exemplar_embedding`).
        A name given by exemplars only is their mean direction; a name given both ways mixes the two (mean
        of the unit text and exemplar embeddings); other names keep their text embedding."""
        from .text.vocab import resolve_vocabulary

        text = resolve_vocabulary(classes=classes) if classes is not None else list(self.vocabulary or [])
        ex = {str(n).strip(): (v if isinstance(v, list) else [v]) for n, v in (exemplars or {}).items()}
        for n, items in ex.items():
            if not n or not items:
                raise DetectorError(f"exemplars: every entry needs a class name and at least one exemplar ({n!r})")
        names = text + [n for n in ex if n not in text]
        if not names:
            raise DetectorError("no vocabulary: pass classes=[...] (or exemplars={name: image}) or call "
                                "set_vocabulary first")
        if not ex:
            return names, self.embeddings(names)
        text_rows = dict(zip(text, self.embeddings(text))) if text else {}
        rows = []
        for n in names:
            parts = [] if n not in text_rows else [text_rows[n] / max(float(np.linalg.norm(text_rows[n])), 1e-12)]
            if n in ex:
                e = np.mean([self.exemplar_embedding(x) for x in ex[n]], axis=0)
                parts.append(e / max(float(np.linalg.norm(e)), 1e-12))
            rows.append(np.mean(parts, axis=0))
        return names, np.stack(rows).astype(np.float32)

    def detect(self, image, classes=None, proposals=None, reuse_regions: bool = True, exemplars=None) -> Detections:
        """Detections of ``classes`` (default: the vocabulary set last) and/or of classes given by image
        ``exemplars`` (:meth:`vocabulary_embeddings`) in ``image`` (a path or an RGB uint8 array).
        ``proposals``: ``(n, 5)`` stage-1 boxes with scores in original pixels (instead of the proposal
        model). With ``reuse_regions``, an image seen before is only re-scored."""
        timings = {"stage1": 0.0, "regions": 0.0, "reused": False}
        t0 = time.perf_counter()
        names, emb = self.vocabulary_embeddings(classes, exemplars)
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
            if proposals is None and self.own_proposals:  # end-to-end: one backbone pass for RPN and RoI head
                import jittor as jt

                batch = self._prepare(self.proposal_pipeline, rgb, name)
                feats, props = self._rpn(batch)
                timings["stage1"] = time.perf_counter() - t
                t = time.perf_counter()
                with jt.no_grad():
                    regions = self.model.roi_head.region_embeddings(feats, [props], batch["img_metas"])[0]
            else:
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
