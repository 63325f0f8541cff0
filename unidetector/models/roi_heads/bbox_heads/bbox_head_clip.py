"""CLIP RoI box heads of the official UniDetector: ``BBoxHeadCLIP`` and ``BBoxHeadCLIPInference``.

The head turns ``(N, C5, 7, 7)`` RoI features (CLIP ``layer4`` output) into

* ``f = AttentionPool2d(f5)``: ``(N, D)`` region embeddings in CLIP's joint space;
* logits ``100 · normalize(f) @ normalize(T)``, ``T = zs_weights`` = ``cat(E.T, zeros(D, 1))`` where
  ``E`` is the ``(C, D)`` frozen text embedding of the vocabulary (``zeroshot_path`` .npy). The zero
  last column gives the (never used) background logit 0: there is no learned background, temperature
  or bias;
* class-agnostic deltas ``fc_reg(f)`` ``(N, 4)`` (DeltaXYWH, stds ``.1, .1, .2, .2``); ``with_reg=False``
  (not official: the synthetic configs) has no ``fc_reg`` and keeps the proposals' boxes.

Training (``BBoxHeadCLIP.loss``) is a sigmoid BCE restricted to the classes present in the batch plus
up to ``fed_loss_num_cat`` uniformly sampled negative classes (:class:`UniformNegativeClassSampler`,
injectable), and an L1 box loss on positives averaged over all sampled RoIs.

Open-world testing (``BBoxHeadCLIPInference.get_bboxes``) fuses the classification probability
``p = sigmoid(logit)`` with the stage-1 proposal score ``o``: ``s = p^β · o^(1-β)``, optionally after a
class-prior calibration ``p_c ← p_c · w_c / mean(w)``, ``w_c = π_c^(-γ)`` (see
:mod:`unidetector.calibration`), then per-class soft-NMS (``multiclass_nms``).

Sizes that the official classes hard-code (``AttentionPool2d(7, 2048, 32, 1024)``,
``fc_reg = Linear(1024, 4)``) follow the config here: ``attnpool`` embed dim = ``in_channels``,
``num_heads = in_channels // 64``, spatial size ``roi_feat_size``, output dim = the text-embedding
dimension ``D``; ``fc_reg`` in_features = ``D``. Give ``attnpool=dict(...)`` to override.

**Inference builds** (:func:`without_data_files`): the data files a head reads at construction
(``zeroshot_path`` text embeddings and ``cat_freq_path`` image counts of the *training* vocabularies,
the calibration ``resultfile``) are not needed to run a trained model on another vocabulary or to
check a checkpoint's shapes: inside ``with without_data_files(embed_dim=D):`` the heads use zero
placeholder embeddings (``num_classes`` rows, dimension ``attnpool['output_dim']`` or ``D``), read no
file, and their ``zs_weights*`` are replaced at scoring time (``unidet detect``) or never used
(``unidet convert``'s shape check).

Official kwargs accepted for config compatibility and unused (as in the official code):
``with_avg_pool`` (the pool module is never called), ``with_cls`` (there is no ``fc_cls``),
``reg_predictor_cfg``/``cls_predictor_cfg`` (plain linear), and the *type* of ``loss_cls`` (the loss
is always the sampled sigmoid BCE; only ``loss_cls['loss_weight']`` is read, by ``BBoxHeadCLIP``).
"""
from __future__ import annotations

import os
from contextlib import contextmanager

import jittor as jt
import numpy as np
from jittor import nn

from ....ops import DeltaXYWHBBoxCoder, multiclass_nms  # noqa: F401  (registers the coder)
from ....ops.boxes import as_var, rescale_bboxes
from ....registry import MODELS, TASK_UTILS, build
from ...layers import AttentionPool2d
from ...layers.functional import l2_normalize
from ...losses import CrossEntropyLoss, accuracy
from ....text.embeddings import EmbeddingFileError, load_embeddings

__all__ = ["BBoxHeadCLIP", "BBoxHeadCLIPInference", "CLIPBBoxHeadBase", "UniformNegativeClassSampler",
           "head_embeddings", "load_text_embeddings", "load_image_counts", "without_data_files"]

LOGIT_SCALE = 100.0  # 1 / τ with τ = 0.01 (official, not learnable)


def load_text_embeddings(path, num_classes: int | None = None, dim: int | None = None,
                         head: str = "the box head") -> np.ndarray:
    """``(C, D)`` float32 text embeddings of a box head (rows = classes in category-id order), read by
    :func:`unidetector.text.embeddings.load_embeddings` (the one reader of embedding files).

    ``path`` is a ``.npy`` path or an array-like (the open-world placeholder). Raises
    :class:`~unidetector.text.embeddings.EmbeddingFileError` (a ``ValueError``) naming the file when it
    is missing (with how to make it), unreadable, not 2-D, has NaN/inf rows, has a row count other
    than ``num_classes`` or a dimension other than ``dim`` (the head's ``attnpool.output_dim``).
    """
    emb = load_embeddings(path)
    name = embedding_source(path)
    if num_classes is not None and emb.shape[0] != num_classes:
        raise EmbeddingFileError(
            f"text embeddings {name} have {emb.shape[0]} rows but the head has num_classes={num_classes} "
            f"({head}, model.roi_head.bbox_head): the embedding file must hold one row per class of the "
            "vocabulary, in category-id order (make it with `unidet embed --ann ANN.json ...`)")
    if dim is not None and emb.shape[1] != dim:
        raise EmbeddingFileError(
            f"text embeddings {name} have dimension {emb.shape[1]} but {head}'s attnpool output_dim is {dim} "
            "(model.roi_head.bbox_head.attnpool): embed with the text encoder of the model's CLIP")
    return emb


#: RN50's text-embedding dimension: the placeholder dimension of :func:`without_data_files` when nothing
#: else fixes it.
DEFAULT_EMBED_DIM = 1024
_NO_DATA_FILES = []  # stack of embed_dim hints (None = unknown) while heads are built without data files


@contextmanager
def without_data_files(embed_dim: int | None = None):
    """Build CLIP box heads without reading their data files (module doc, "Inference builds").

    ``embed_dim``: the text-embedding dimension ``D`` of the weights to load (e.g. the checkpoint's
    ``fc_reg.weight.shape[1]``), used when the config's ``attnpool`` does not fix it; default 1024 (RN50).
    """
    _NO_DATA_FILES.append(None if embed_dim is None else int(embed_dim))
    try:
        yield
    finally:
        _NO_DATA_FILES.pop()


def data_files_skipped() -> bool:
    """True inside :func:`without_data_files`."""
    return bool(_NO_DATA_FILES)


def head_embeddings(path, num_classes: int | None, attnpool: dict | None, head: str) -> np.ndarray:
    """``(C, D)`` embeddings a head is built with: :func:`load_text_embeddings` of ``path``, or, inside
    :func:`without_data_files`, zeros of ``num_classes`` rows (1 when unknown) and dimension
    ``attnpool['output_dim']``, else the context's ``embed_dim``, else :data:`DEFAULT_EMBED_DIM`."""
    if not data_files_skipped():
        return load_text_embeddings(path, num_classes, embedding_dim(attnpool), head)
    dim = embedding_dim(attnpool) or _NO_DATA_FILES[-1] or DEFAULT_EMBED_DIM
    return np.zeros((int(num_classes or 1), int(dim)), np.float32)


def embedding_dim(attnpool: dict | None):
    """The text-embedding dimension a head config fixes (``attnpool['output_dim']``), else None."""
    return (attnpool or {}).get("output_dim")


def embedding_source(path) -> str:
    """How a ``zeroshot_path`` entry is named in messages: the file, or ``<array>``."""
    return str(path) if isinstance(path, (str, os.PathLike)) else "<array>"


def classifier_weights(emb: np.ndarray) -> jt.Var:
    """``(D, C + 1)`` frozen buffer ``cat(emb.T, zeros(D, 1))`` (official ``zs_weights``)."""
    zs = np.concatenate([emb.T, np.zeros((emb.shape[1], 1), np.float32)], axis=1)
    return jt.array(np.ascontiguousarray(zs)).stop_grad()


def load_image_counts(cat_freq_path) -> np.ndarray | None:
    """``(C,)`` ``image_count`` of a cat-info json (``scripts/get_cat_info.py``) sorted by category id."""
    from ....calibration import class_counts_from_cat_info  # the one reader of cat-info files

    if cat_freq_path is None or data_files_skipped():
        return None
    return class_counts_from_cat_info(cat_freq_path)


HEAD_PRIOR = object()  # calibration argument: the head's own prior (from ``resultfile``), if any


def apply_calibration(p: jt.Var, weights) -> jt.Var:
    """``p (n, C + 1)`` with its class columns multiplied by ``(C,)`` weights (None: unchanged)."""
    if weights is None:
        return p
    weights = np.asarray(weights, np.float32).reshape(-1)
    if weights.shape[0] != p.shape[1] - 1:
        raise ValueError(f"calibration has {weights.shape[0]} class weights, the logits {p.shape[1] - 1} "
                         "classes (+ background)")
    return p * jt.array(np.concatenate([weights, np.ones(1, np.float32)]))[None]


#: element-wise ``BCEWithLogits(x, y)`` of ``(B, C)`` logits and ``(B, C)`` float targets
sigmoid_bce = CrossEntropyLoss(use_sigmoid=True, reduction="none")


class UniformNegativeClassSampler:
    """Which classes a sampled-sigmoid loss looks at (official federated-style negative sampling).

    Called with the ``(C + 1,)`` bool vectors ``appeared`` (classes among the labels, slot ``C`` =
    "an RoI is background") and ``eligible`` (classes that may be drawn: not appeared, and with a
    non-zero training image count; slot ``C`` counts as eligible). If fewer than ``num_classes``
    classes appeared, ``num_classes - #appeared`` more are drawn uniformly without replacement from
    the eligible ones (all of them if there are fewer; the official ``torch.multinomial`` would
    raise). A drawn background slot is dropped, as officially. Returns the ``(C,)`` bool class mask.

    Args:
        num_classes: ``fed_loss_num_cat`` (50).
        rng: ``None`` (numpy's global RNG), an int seed or a ``numpy.random.Generator``.
    """

    def __init__(self, num_classes: int = 50, rng=None):
        self.num_classes = int(num_classes)
        self.rng = np.random.default_rng(rng) if isinstance(rng, (int, np.integer)) else rng

    def __call__(self, appeared: np.ndarray, eligible: np.ndarray) -> np.ndarray:
        chosen = appeared.copy()
        need = self.num_classes - int(appeared.sum())
        if need > 0:
            pool = np.flatnonzero(eligible & ~appeared)
            draw = (self.rng.permutation(len(pool)) if self.rng is not None
                    else np.random.permutation(len(pool)))[:need]
            chosen[pool[draw]] = True
        return chosen[:-1]


class CLIPBBoxHeadBase(nn.Module):
    """What every CLIP box head shares: attention pooling, cosine logits, ``fc_reg``, targets and the
    box loss. Subclasses hold the text-embedding buffers and the classification loss.

    Args (besides the ignored official ones listed in the module doc):
        roi_feat_size: spatial size of the RoI features (7).
        in_channels: channels of the RoI features (2048 for RN50).
        num_classes: background label index (``M``; classes are ``0..M-1``).
        embed_dim: dimension ``D`` of the text embeddings (= attnpool output).
        bbox_coder: ``DeltaXYWHBBoxCoder`` config (stds ``.1, .1, .2, .2``).
        reg_class_agnostic: must be True (the CLIP heads regress one box per RoI).
        reg_decoded_bbox: apply the box loss to decoded boxes (False officially).
        loss_bbox: box loss config (``L1Loss``).
        attnpool: overrides of ``AttentionPool2d(spacial_dim, embed_dim, num_heads, output_dim)``.
        with_reg: build ``fc_reg`` and train it (official); False keeps every box where its proposal put it
            (no ``fc_reg`` weights, no ``loss_bbox``, zero deltas).
    """

    def __init__(self, roi_feat_size: int, in_channels: int, num_classes: int, embed_dim: int, bbox_coder: dict,
                 reg_class_agnostic: bool, reg_decoded_bbox: bool, loss_bbox: dict, attnpool: dict | None,
                 with_reg: bool = True):
        super().__init__()
        if not reg_class_agnostic:
            raise ValueError(f"{type(self).__name__}: only reg_class_agnostic=True is supported (official configs)")
        self.num_classes = num_classes
        self.reg_class_agnostic = True
        self.reg_decoded_bbox = reg_decoded_bbox
        pool_cfg = dict(spacial_dim=roi_feat_size, embed_dim=in_channels, num_heads=max(in_channels // 64, 1),
                        output_dim=embed_dim)
        pool_cfg.update(attnpool or {})
        if pool_cfg["output_dim"] != embed_dim:
            raise ValueError(f"{type(self).__name__}: attnpool output_dim {pool_cfg['output_dim']} differs from "
                             f"the text-embedding dimension {embed_dim}")
        self.attnpool = AttentionPool2d(**pool_cfg)
        self.with_reg = bool(with_reg)
        self._embed_dim = int(embed_dim)
        self.fc_reg = nn.Linear(embed_dim, 4) if self.with_reg else None
        if self.with_reg:
            nn.init.gauss_(self.fc_reg.weight, 0.0, 0.001)
            nn.init.constant_(self.fc_reg.bias, 0.0)
        self.bbox_coder = build(bbox_coder, TASK_UTILS, key_path="model.roi_head.bbox_head.bbox_coder")
        self.loss_bbox = build(loss_bbox, MODELS, key_path="model.roi_head.bbox_head.loss_bbox")

    @staticmethod
    def cosine_logits(features: jt.Var, zs_weights: jt.Var) -> jt.Var:
        """``(N, C + 1)`` = ``100 · normalize(f, dim=1) @ normalize(T, dim=0)``."""
        return LOGIT_SCALE * jt.matmul(l2_normalize(features, 1), l2_normalize(zs_weights, 0))

    # ------------------------------------------------------------------ open vocabulary
    @property
    def embed_dim(self) -> int:
        """``D``, the dimension of the region (and text) embeddings."""
        return self._embed_dim

    def embed(self, roi_feats: jt.Var):
        """``(N, C5, s, s)`` RoI features → region embeddings ``(N, D)`` (attention pool) and class-agnostic
        box deltas ``(N, 4)`` (zeros without ``fc_reg``). Everything before the vocabulary."""
        f = self.attnpool(roi_feats)
        return f, self.fc_reg(f) if self.with_reg else jt.zeros((f.shape[0], 4))

    def own_vocabulary(self) -> jt.Var:
        """``(D, C + 1)`` classifier weights of the vocabulary the head was built with (``zs_weights``)."""
        raise NotImplementedError

    def class_scores(self, logits: jt.Var, proposal_scores=None, calibration=None) -> jt.Var:
        """``(n, C + 1)`` test scores from logits: ``sigmoid``, times ``(C,)`` calibration weights if given."""
        return apply_calibration(jt.sigmoid(logits), None if calibration is HEAD_PRIOR else calibration)

    def score(self, embeddings, deltas, rois, proposal_scores, vocabulary, img_meta: dict, calibration=None,
              cfg=None, rescale: bool = True):
        """Detections of one image's regions under a vocabulary.

        Args:
            embeddings: ``(n, D)`` region embeddings (:meth:`embed`); deltas ``(n, 4)``; rois ``(n, 5)``.
            proposal_scores: ``(n,)`` stage-1 scores (fused by heads that fuse them) or None.
            vocabulary: ``(C, D)`` text or exemplar embeddings, or None for the head's own.
            img_meta: ``img_shape`` and ``scale_factor`` of the network input.
            calibration: ``(C,)`` weights ``w / mean(w)``, None (raw) or ``HEAD_PRIOR`` (the head's own).
            cfg: rcnn test cfg (``score_thr``, ``nms``, ``max_per_img``); None returns the boxes and scores.
        Returns ``(dets (k, 5), labels (k,))``, boxes in original pixels when ``rescale``.
        """
        weights = self.own_vocabulary() if vocabulary is None else \
            classifier_weights(np.asarray(vocabulary, np.float32))
        if len(rois) == 0:
            if cfg is None:
                return jt.zeros((0, 4)), jt.zeros((0, weights.shape[1]))
            return jt.zeros((0, 5)), jt.zeros((0,), dtype="int64")
        logits = self.cosine_logits(as_var(embeddings), weights)
        return self.detections(logits, deltas, rois, proposal_scores, img_meta, calibration, cfg, rescale)

    def detections(self, logits, deltas, rois, proposal_scores, img_meta: dict, calibration, cfg, rescale: bool):
        """Decode, score (:meth:`class_scores`) and post-process (:meth:`postprocess`) one image."""
        bboxes = self.decode_boxes(as_var(rois), None if deltas is None else as_var(deltas), img_meta["img_shape"],
                                   img_meta["scale_factor"], rescale)
        return self.postprocess(bboxes, self.class_scores(logits, proposal_scores, calibration), cfg)

    # ------------------------------------------------------------------ training targets
    def get_targets(self, sampling_results, gt_bboxes, gt_labels, rcnn_train_cfg, concat: bool = True):
        """Per sampled RoI: ``labels`` (bg = ``num_classes``), ``label_weights``, encoded
        ``bbox_targets`` (zeros for negatives) and ``bbox_weights`` (1 for positives).

        Rows follow ``sampling_result.bboxes`` (positives, then negatives) image by image.
        """
        pos_weight = (rcnn_train_cfg or {}).get("pos_weight", -1)
        pos_weight = 1.0 if pos_weight <= 0 else float(pos_weight)
        out = ([], [], [], [])
        for res in sampling_results:
            num_pos, num_neg = res.pos_bboxes.shape[0], res.neg_bboxes.shape[0]
            labels = jt.full((num_pos + num_neg,), self.num_classes, dtype="int64")
            weights = jt.concat([jt.full((num_pos,), pos_weight), jt.ones((num_neg,))])
            targets = jt.zeros((num_pos + num_neg, 4))
            box_w = jt.zeros((num_pos + num_neg, 4))
            if num_pos:
                labels = jt.concat([res.pos_gt_labels.int64(), labels[num_pos:]])
                pos_t = res.pos_gt_bboxes if self.reg_decoded_bbox else \
                    self.bbox_coder.encode(res.pos_bboxes, res.pos_gt_bboxes)
                targets = jt.concat([pos_t, targets[num_pos:]])
                box_w = jt.concat([jt.ones((num_pos, 4)), box_w[num_pos:]])
            for lst, v in zip(out, (labels, weights, targets, box_w)):
                lst.append(v)
        if concat:
            return tuple(jt.concat(lst, 0) for lst in out)
        return out

    def loss_box(self, bbox_pred: jt.Var, rois: jt.Var, labels: jt.Var, bbox_targets: jt.Var,
                 bbox_weights: jt.Var) -> dict:
        """``dict(loss_bbox=loss_bbox(deltas of positives, targets) / N)`` (N = all sampled RoIs, mmdet
        ``BBoxHead``); empty without ``fc_reg``."""
        if not self.with_reg:
            return {}
        labels_np = labels.numpy()
        pos = np.flatnonzero((labels_np >= 0) & (labels_np < self.num_classes))
        if pos.size == 0:
            return dict(loss_bbox=bbox_pred.sum() * 0.0)
        pos = jt.array(pos)
        pred = bbox_pred[pos]
        if self.reg_decoded_bbox:
            pred = self.bbox_coder.decode(rois[pos, 1:], pred)
        return dict(loss_bbox=self.loss_bbox(pred, bbox_targets[pos], bbox_weights[pos],
                                             avg_factor=float(bbox_targets.shape[0])))

    def sampled_bce(self, logits: jt.Var, labels: np.ndarray, bg_label: int, image_counts, sampler) -> jt.Var:
        """Masked BCE of ``(B, C + 1)`` logits of one vocabulary, summed and divided by ``B``.

        ``labels`` ``(B,)`` in ``[0, C)`` or ``bg_label``. Targets are one-hot over the ``C`` classes
        (background rows all zero); only the classes chosen by ``sampler`` (appeared + sampled
        negatives) count, for every row.
        """
        b, c = logits.shape[0], logits.shape[1] - 1
        is_fg = labels != bg_label
        appeared = np.zeros(c + 1, bool)
        appeared[np.where(is_fg, labels, c)] = True
        eligible = np.ones(c + 1, bool)
        if image_counts is not None:
            eligible[:c] = image_counts > 0
        mask = sampler(appeared, eligible & ~appeared)
        target = np.zeros((b, c), np.float32)
        target[np.flatnonzero(is_fg), labels[is_fg]] = 1.0
        loss = sigmoid_bce(logits[:, :c], jt.array(target)) * jt.array(mask.astype(np.float32))[None]
        return loss.sum() / b

    # ------------------------------------------------------------------ testing
    def decode_boxes(self, rois: jt.Var, bbox_pred: jt.Var, img_shape, scale_factor, rescale: bool) -> jt.Var:
        """``(n, 4)`` boxes: deltas applied to the RoIs, clipped to ``img_shape``; divided by
        ``scale_factor`` (original-image pixels) when ``rescale``."""
        if bbox_pred is not None:
            bboxes = self.bbox_coder.decode(rois[:, 1:], bbox_pred, max_shape=img_shape)
        else:
            h, w = float(img_shape[0]), float(img_shape[1])
            bboxes = jt.minimum(jt.maximum(rois[:, 1:], 0.0), jt.array(np.float32([w, h, w, h])))
        if rescale and bboxes.shape[0] > 0:
            bboxes = rescale_bboxes(bboxes, scale_factor)
        return bboxes

    def postprocess(self, bboxes: jt.Var, scores: jt.Var, cfg):
        """``(bboxes, scores)`` when ``cfg`` is None, else ``multiclass_nms`` → ``(dets (k, 5), labels (k,))``."""
        if cfg is None:
            return bboxes, scores
        return multiclass_nms(bboxes, scores, cfg["score_thr"], cfg["nms"], cfg["max_per_img"])


@MODELS.register_module()
class BBoxHeadCLIP(CLIPBBoxHeadBase):
    """Single-vocabulary CLIP box head (official ``BBoxHeadCLIP``; end-to-end and COCO configs).

    Buffer ``zs_weights`` ``(D, C + 1)``. ``loss`` samples negatives over the **whole batch**
    (classes present in any image) and divides the masked BCE by the total RoI count;
    ``get_bboxes`` scores with ``sigmoid`` only.

    Args: see the module doc; ``zeroshot_path`` (``.npy`` with ``num_classes`` rows),
    ``cat_freq_path`` (cat-info json; zero-image classes are never sampled as negatives),
    ``fed_loss_num_cat`` (50), ``neg_class_sampler`` (callable, default
    :class:`UniformNegativeClassSampler`).
    """

    def __init__(self, with_avg_pool=False, with_cls=True, with_reg=True, roi_feat_size=7, in_channels=2048,
                 num_classes=80, zeroshot_path=None, fed_loss_num_cat=50, cat_freq_path=None,
                 bbox_coder=dict(type="DeltaXYWHBBoxCoder", clip_border=True, target_means=[0.0, 0.0, 0.0, 0.0],
                                 target_stds=[0.1, 0.1, 0.2, 0.2]),
                 reg_class_agnostic=True, reg_decoded_bbox=False, reg_predictor_cfg=None, cls_predictor_cfg=None,
                 loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0),
                 loss_bbox=dict(type="L1Loss", loss_weight=1.0), init_cfg=None, attnpool=None,
                 neg_class_sampler=None, embed_dim=None):
        if zeroshot_path is None:  # no vocabulary of its own: it is given at scoring time (open world)
            dim = embed_dim or embedding_dim(attnpool)
            if dim is None:
                raise ValueError(f"{type(self).__name__}: give zeroshot_path (the .npy text embeddings of its "
                                 "vocabulary) or, for a head whose vocabulary is given at scoring time, embed_dim")
            emb = None
        else:
            emb = head_embeddings(zeroshot_path, num_classes, attnpool, type(self).__name__)
            dim = emb.shape[1]
        super().__init__(roi_feat_size, in_channels, num_classes, int(dim), bbox_coder, reg_class_agnostic,
                         reg_decoded_bbox, loss_bbox, attnpool, with_reg)
        self.zs_weights = None if emb is None else classifier_weights(emb)
        self.zeroshot_files = [embedding_source(zeroshot_path)] if emb is not None else []  # for messages
        self.image_counts = load_image_counts(cat_freq_path)
        self.loss_cls_weight = float((loss_cls or {}).get("loss_weight", 1.0))
        self.neg_class_sampler = neg_class_sampler or UniformNegativeClassSampler(fed_loss_num_cat)

    def execute(self, x: jt.Var):
        """``(N, C5, s, s)`` RoI features → ``cls_score (N, C + 1)``, ``bbox_pred (N, 4)``."""
        f, deltas = self.embed(x)
        return self.cosine_logits(f, self.own_vocabulary()), deltas

    def own_vocabulary(self) -> jt.Var:
        if self.zs_weights is None:
            raise ValueError(f"{type(self).__name__} was built without a vocabulary (zeroshot_path=None): score its "
                             "regions with one (roi_head.score_regions(regions, embeddings))")
        return self.zs_weights

    def loss(self, cls_score, bbox_pred, rois, labels, label_weights, bbox_targets, bbox_weights,
             reduction_override=None):
        """``dict(loss_cls, loss_bbox, acc)``; the batch shares one sampled class set."""
        labels_np = labels.numpy()
        loss_cls = self.sampled_bce(cls_score, labels_np, self.num_classes, self.image_counts,
                                    self.neg_class_sampler) * self.loss_cls_weight
        return dict(loss_cls=loss_cls, acc=accuracy(cls_score, labels),
                    **self.loss_box(bbox_pred, rois, labels, bbox_targets, bbox_weights))

    def get_bboxes(self, rois, cls_score, bbox_pred, img_shape, scale_factor, rescale=False, cfg=None):
        """Boxes and ``sigmoid`` scores ``(n, C + 1)`` (``cfg`` None) or NMS-ed detections (mmdet signature)."""
        return self.detections(cls_score, bbox_pred, rois, None, dict(img_shape=img_shape, scale_factor=scale_factor),
                               HEAD_PRIOR, cfg, rescale)


@MODELS.register_module()
class BBoxHeadCLIPInference(BBoxHeadCLIP):
    """Open-world test head: proposal-score fusion and optional prior calibration.

    ``get_bboxes`` receives ``cls_score = (logits (n, C + 1), proposal_scores (n,))`` (the
    ``StandardRoIHead(with_proposal_score=True)`` convention) and scores every (RoI, class) with::

        p = sigmoid(logits)                                  # last column (bg) = 0.5, ignored by NMS
        p[:, :C] *= w / mean(w),  w = prior ** -gamma        # only with withcalibration
        s = p ** beta * o[:, None] ** (1 - beta)

    Calibrated scores are not clamped (they can exceed 1, as officially).

    Args (besides :class:`BBoxHeadCLIP`'s):
        beta: fusion exponent β (0.3).
        withcalibration: apply the prior.
        gamma: calibration exponent γ (0.6).
        resultfile: the prior source: a raw-results ``.pkl`` (official: counts of detections per
            class), a ``.npy`` prior written by ``unidet calibrate`` (used as is), or a cat-info
            ``.json`` (training image counts). See :func:`unidetector.calibration.load_prior`.
        calibration_smoothing: ε added to counts read from a ``.pkl``/``.json`` (default 10, as the
            first official commit; the final official code has none and breaks on zero counts).
    """

    def __init__(self, beta=0.3, withcalibration=False, gamma=0.6, resultfile=None, calibration_smoothing=10.0,
                 **kwargs):
        super().__init__(**kwargs)
        self.beta = float(beta)
        self.withcalibration = bool(withcalibration)
        self.gamma = float(gamma)
        self._calibration = None  # (C,) float32 w / mean(w), not a state-dict entry
        if self.withcalibration and not data_files_skipped():  # the prior is data, not weights
            from ....calibration import calibration_weights, load_prior

            if resultfile is None:
                raise ValueError("BBoxHeadCLIPInference: withcalibration=True needs resultfile "
                                 "(raw results .pkl, prior .npy or cat-info .json)")
            prior = load_prior(resultfile, smoothing=calibration_smoothing, num_classes=self.num_classes)
            self._calibration = calibration_weights(prior, self.gamma)

    def fuse_scores(self, logits: jt.Var, proposal_scores, calibration=HEAD_PRIOR) -> jt.Var:
        """``(n, C + 1)`` fused (and calibrated) scores from logits and ``(n,)`` proposal scores.

        ``calibration``: ``(C,)`` weights ``w / mean(w)`` to apply, ``None`` for raw scores; by default
        the head's own (from ``resultfile`` when ``withcalibration``)."""
        weights = self._calibration if calibration is HEAD_PRIOR else calibration
        p = apply_calibration(jt.sigmoid(logits), weights)
        o = as_var(proposal_scores).reshape(-1, 1)
        return p ** self.beta * o ** (1.0 - self.beta)

    def class_scores(self, logits: jt.Var, proposal_scores=None, calibration=None) -> jt.Var:
        """:meth:`fuse_scores` with the proposal scores; calibrated ``sigmoid`` without them."""
        if proposal_scores is None:
            weights = self._calibration if calibration is HEAD_PRIOR else calibration
            return apply_calibration(jt.sigmoid(logits), weights)
        return self.fuse_scores(logits, proposal_scores, calibration)

    def get_bboxes(self, rois, cls_score, bbox_pred, img_shape, scale_factor, rescale=False, cfg=None):
        logits, proposal_scores = cls_score
        return self.detections(logits, bbox_pred, rois, proposal_scores,
                               dict(img_shape=img_shape, scale_factor=scale_factor), HEAD_PRIOR, cfg, rescale)

