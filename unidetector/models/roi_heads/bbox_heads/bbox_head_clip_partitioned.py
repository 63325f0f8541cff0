"""``BBoxHeadCLIPPartitioned``: the multi-dataset ("partitioned") CLIP box head of UniDetector.

One frozen text-embedding buffer per training dataset, ``zs_weights_{d}`` ``(D, C_d + 1)``; the
forward pass scores every RoI against every vocabulary, and the loss of an image uses only the
logits of its own dataset (``img_metas[k]['dataset_id']``)::

    for image k (rows r_k, B_k RoIs, dataset d, C = C_d, M = num_classes = max_d C_d = bg label):
        y   = onehot(labels_k)[:, :C]                      # background rows are all zero
        app = {labels_k with M -> C}                       # classes present (+ slot C if any bg RoI)
        S   = app ∪ uniform sample of (fed_loss_num_cat - |app|) classes, excluding app and
              classes with zero training images (cat_freq_path[d])     [neg_class_sampler]
        L_k = Σ_{i ∈ r_k, c ∈ S, c < C} BCEWithLogits(logit_d[i, c], y[i, c]) / B_k
    loss_cls  = mean_k L_k
    loss_bbox = L1(deltas of positives, targets) / (all sampled RoIs)

The logged ``acc`` is the top-1 accuracy of each image against its own vocabulary (the official
value is computed with the last image's dataset and fixed 512-row slices, i.e. meaningless).
"""
from __future__ import annotations

import jittor as jt
import numpy as np

from ....ops.boxes import as_var
from ....registry import MODELS
from ...losses import accuracy
from ....text.embeddings import EmbeddingFileError
from .bbox_head_clip import (CLIPBBoxHeadBase, UniformNegativeClassSampler, classifier_weights, data_files_skipped,
                             embedding_dim, embedding_source, head_embeddings, load_image_counts,
                             load_text_embeddings)

__all__ = ["BBoxHeadCLIPPartitioned"]


@MODELS.register_module()
class BBoxHeadCLIPPartitioned(CLIPBBoxHeadBase):
    """Partitioned CLIP head (see the module doc for the loss).

    Args (official names; see :mod:`.bbox_head_clip` for the shared and ignored ones):
        zeroshot_path: list of ``.npy`` text embeddings, one per dataset (``dataset_id`` order).
        cat_freq_path: list (same length) of cat-info jsons or ``None``.
        num_classes: ``max_d C_d`` (the background label); checked against the embeddings.
        fed_loss_num_cat: classes per image in the loss (appeared + sampled negatives), 50.
        neg_class_sampler: callable ``(appeared (C+1,) bool, eligible (C+1,) bool) -> (C,) bool``
            (default :class:`UniformNegativeClassSampler`); replace it to control the draw.
    """

    def __init__(self, with_avg_pool=False, with_cls=True, with_reg=True, roi_feat_size=7, in_channels=2048,
                 num_classes=80, zeroshot_path=(None,), fed_loss_num_cat=50, cat_freq_path=(None,),
                 bbox_coder=dict(type="DeltaXYWHBBoxCoder", clip_border=True, target_means=[0.0, 0.0, 0.0, 0.0],
                                 target_stds=[0.1, 0.1, 0.2, 0.2]),
                 reg_class_agnostic=True, reg_decoded_bbox=False, reg_predictor_cfg=None, cls_predictor_cfg=None,
                 loss_cls=None, loss_bbox=dict(type="L1Loss", loss_weight=1.0), init_cfg=None, attnpool=None,
                 neg_class_sampler=None):
        if isinstance(zeroshot_path, str) or not zeroshot_path or any(p is None for p in zeroshot_path):
            raise ValueError("BBoxHeadCLIPPartitioned: zeroshot_path must be a list of .npy files, one per dataset")
        cat_freq_path = list(cat_freq_path) if cat_freq_path is not None else [None] * len(zeroshot_path)
        if len(cat_freq_path) == 1 and len(zeroshot_path) > 1 and cat_freq_path[0] is None:
            cat_freq_path = [None] * len(zeroshot_path)
        if len(cat_freq_path) != len(zeroshot_path):
            raise ValueError(f"BBoxHeadCLIPPartitioned: {len(zeroshot_path)} zeroshot_path entries but "
                             f"{len(cat_freq_path)} cat_freq_path entries")
        if data_files_skipped():  # inference build: placeholders of the largest vocabulary, no file read
            embs = [head_embeddings(p, num_classes, attnpool, "BBoxHeadCLIPPartitioned") for p in zeroshot_path]
        else:
            embs = [load_text_embeddings(p, None, embedding_dim(attnpool), "BBoxHeadCLIPPartitioned")
                    for p in zeroshot_path]
        dims = {e.shape[1] for e in embs}
        if len(dims) != 1:
            per_file = ", ".join(f"{embedding_source(p)}: {e.shape[1]}" for p, e in zip(zeroshot_path, embs))
            raise EmbeddingFileError(f"BBoxHeadCLIPPartitioned: the zeroshot_path embeddings have different "
                                     f"dimensions ({per_file}); all must come from one text encoder")
        classes = [e.shape[0] for e in embs]
        if max(classes) != num_classes:
            per_file = ", ".join(f"{embedding_source(p)}: {c}" for p, c in zip(zeroshot_path, classes))
            raise EmbeddingFileError(f"BBoxHeadCLIPPartitioned: num_classes={num_classes} must equal the largest "
                                     f"vocabulary (embedding rows per dataset: {classes}; {per_file}); it is the "
                                     "background label")
        super().__init__(roi_feat_size, in_channels, num_classes, dims.pop(), bbox_coder, reg_class_agnostic,
                         reg_decoded_bbox, loss_bbox, attnpool, with_reg)
        self.dataset_num = len(embs)
        self.classes_per_dataset = classes
        self.zeroshot_files = [embedding_source(p) for p in zeroshot_path]  # per vocabulary, for messages
        for i, emb in enumerate(embs):
            setattr(self, f"zs_weights_{i}", classifier_weights(emb))
        self.image_counts = []
        for i, path in enumerate(cat_freq_path):
            counts = load_image_counts(path)
            if counts is not None and len(counts) != classes[i]:
                raise ValueError(f"BBoxHeadCLIPPartitioned: {path} lists {len(counts)} categories but "
                                 f"{zeroshot_path[i]} has {classes[i]} rows")
            self.image_counts.append(counts)
        self.neg_class_sampler = neg_class_sampler or UniformNegativeClassSampler(fed_loss_num_cat)

    def zs_weights(self, dataset_id: int) -> jt.Var:
        """``(D, C_d + 1)`` text-embedding buffer of dataset ``dataset_id``."""
        return getattr(self, f"zs_weights_{dataset_id}")

    def execute(self, x: jt.Var):
        """``(N, C5, s, s)`` → ``[cls_score_d (N, C_d + 1) for every dataset d]``, ``bbox_pred (N, 4)``."""
        f, deltas = self.embed(x)
        return [self.cosine_logits(f, self.zs_weights(d)) for d in range(self.dataset_num)], deltas

    def own_vocabulary(self) -> jt.Var:
        """The first dataset's vocabulary (the official test convention)."""
        return self.zs_weights(0)

    def loss(self, cls_scores, bbox_pred, rois, img_metas, sampling_results, labels, label_weights, bbox_targets,
             bbox_weights, reduction_override=None):
        """``dict(loss_cls, loss_bbox, acc)`` (module doc); rows of image k are contiguous, ``B_k`` =
        ``sampling_results[k].bboxes`` rows."""
        labels_np = labels.numpy()
        bounds = np.cumsum([0] + [r.pos_bboxes.shape[0] + r.neg_bboxes.shape[0] for r in sampling_results])
        per_image, acc = [], []
        for k, meta in enumerate(img_metas):
            d = int(meta.get("dataset_id", 0))
            if not 0 <= d < self.dataset_num:
                raise ValueError(f"image {k}: dataset_id {d} but the head has {self.dataset_num} vocabularies")
            rows = slice(int(bounds[k]), int(bounds[k + 1]))
            logits, lab = cls_scores[d][rows], labels_np[rows]
            per_image.append(self.sampled_bce(logits, lab, self.num_classes, self.image_counts[d],
                                              self.neg_class_sampler))
            acc.append(accuracy(logits, jt.array(np.where(lab == self.num_classes, self.classes_per_dataset[d], lab))))
        return dict(loss_cls=sum(per_image) / len(per_image), acc=sum(acc) / len(acc),
                    **self.loss_box(bbox_pred, rois, labels, bbox_targets, bbox_weights))

    def get_bboxes(self, rois, cls_score, bbox_pred, img_shape, scale_factor, rescale=False, cfg=None):
        """Test with the first vocabulary's logits (``StandardRoIHead`` passes ``cls_score[0]``):
        ``sigmoid`` scores, decoded boxes, optional NMS."""
        return self.detections(cls_score, bbox_pred, rois, None, dict(img_shape=img_shape, scale_factor=scale_factor),
                               None, cfg, rescale)
