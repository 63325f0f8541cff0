"""Detection losses with mmdet 2.18 semantics (registered in ``MODELS`` under the official names).

Every loss is ``loss_weight * reduce(elementwise_loss * weight)`` where the reduction follows
mmdet's ``weight_reduce_loss``:

* ``avg_factor is None``: ``'mean'`` -> ``mean``, ``'sum'`` -> ``sum``, ``'none'`` -> as is;
* ``avg_factor`` given and ``'mean'``: ``sum(loss * weight) / avg_factor`` (no epsilon, as in 2.18);
  ``'sum'`` with an ``avg_factor`` is an error.

``reduction_override`` in ``__call__`` replaces the configured reduction for one call.
"""
from __future__ import annotations

import jittor as jt
from jittor import nn

from ..ops.boxes import bbox_overlaps
from ..registry import MODELS

__all__ = ["weight_reduce_loss", "CrossEntropyLoss", "L1Loss", "SmoothL1Loss", "IoULoss", "accuracy"]

REDUCTIONS = ("none", "mean", "sum")


def weight_reduce_loss(loss: jt.Var, weight: jt.Var | None = None, reduction: str = "mean",
                       avg_factor: float | None = None) -> jt.Var:
    """mmdet ``weight_reduce_loss``: apply an element-wise ``weight``, then reduce."""
    if weight is not None:
        loss = loss * weight
    if avg_factor is None:
        if reduction == "mean":
            return loss.mean()
        return loss.sum() if reduction == "sum" else loss
    if reduction == "mean":
        return loss.sum() / avg_factor
    if reduction == "none":
        return loss
    raise ValueError("avg_factor can not be used with reduction='sum'")


class _Loss(nn.Module):
    """Common ``reduction``/``loss_weight`` handling."""

    def __init__(self, reduction: str = "mean", loss_weight: float = 1.0):
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(f"{type(self).__name__}: reduction must be one of {REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction
        self.loss_weight = float(loss_weight)

    def _reduction(self, reduction_override):
        if reduction_override not in (None,) + REDUCTIONS:
            raise ValueError(f"reduction_override must be None or one of {REDUCTIONS}, got {reduction_override!r}")
        return reduction_override or self.reduction


@MODELS.register_module()
class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy, or per-class sigmoid BCE with ``use_sigmoid=True``.

    ``__call__(cls_score, label, weight=None, avg_factor=None, reduction_override=None)``:

    * softmax: ``cls_score`` ``(N, C)`` logits, ``label`` ``(N,)`` int in ``[0, C)``; element loss
      ``-log softmax(cls_score)[label]``, ``weight`` ``(N,)``.
    * sigmoid: ``cls_score`` ``(N, C)`` logits; ``label`` ``(N,)`` int is expanded to one-hot
      ``(N, C)`` (labels outside ``[0, C)``, e.g. the background index ``C``, give an all-zero row;
      mmdet ``_expand_onehot_labels``) and ``weight`` ``(N,)`` to ``(N, C)``; or ``label`` is already
      ``(N, C)`` float. Element loss ``BCE_with_logits``.
    """

    def __init__(self, use_sigmoid: bool = False, use_mask: bool = False, reduction: str = "mean",
                 class_weight=None, loss_weight: float = 1.0):
        super().__init__(reduction, loss_weight)
        if use_mask or class_weight is not None:
            raise NotImplementedError("CrossEntropyLoss: use_mask and class_weight are not used by UniDetector")
        self.use_sigmoid = use_sigmoid

    def execute(self, cls_score, label, weight=None, avg_factor=None, reduction_override=None):
        reduction = self._reduction(reduction_override)
        if self.use_sigmoid:
            if label.ndim != cls_score.ndim:
                num_ch = cls_score.shape[-1]
                label = (label[:, None] == jt.arange(num_ch)[None, :]).float32()
                if weight is not None:
                    weight = weight.reshape(-1, 1).broadcast(label.shape)
            # numerically stable BCE with logits: max(x, 0) - x * y + log(1 + exp(-|x|))
            x = cls_score
            loss = jt.maximum(x, 0.0) - x * label + jt.log(1.0 + jt.exp(-jt.abs(x)))
        else:
            log_p = nn.log_softmax(cls_score, dim=1)
            onehot = (label.int64()[:, None] == jt.arange(cls_score.shape[1])[None, :]).float32()
            loss = -(log_p * onehot).sum(dim=1)
        if weight is not None:
            weight = weight.float32()
        return self.loss_weight * weight_reduce_loss(loss, weight, reduction, avg_factor)


@MODELS.register_module()
class L1Loss(_Loss):
    """``|pred - target|`` element-wise; ``weight`` has the shape of ``pred``."""

    def execute(self, pred, target, weight=None, avg_factor=None, reduction_override=None):
        reduction = self._reduction(reduction_override)
        loss = jt.abs(pred - target)
        return self.loss_weight * weight_reduce_loss(loss, weight, reduction, avg_factor)


@MODELS.register_module()
class SmoothL1Loss(_Loss):
    """``0.5 d^2 / beta`` if ``d < beta`` else ``d - 0.5 beta``, ``d = |pred - target|``."""

    def __init__(self, beta: float = 1.0, reduction: str = "mean", loss_weight: float = 1.0):
        super().__init__(reduction, loss_weight)
        if beta <= 0:
            raise ValueError(f"SmoothL1Loss: beta must be > 0, got {beta}")
        self.beta = float(beta)

    def execute(self, pred, target, weight=None, avg_factor=None, reduction_override=None):
        reduction = self._reduction(reduction_override)
        diff = jt.abs(pred - target)
        loss = jt.where(diff < self.beta, 0.5 * diff * diff / self.beta, diff - 0.5 * self.beta)
        return self.loss_weight * weight_reduce_loss(loss, weight, reduction, avg_factor)


@MODELS.register_module()
class IoULoss(_Loss):
    """IoU loss on ``(N, 4)`` decoded boxes: ``1 - IoU`` (``linear=True``) or ``-log IoU``.

    ``IoU = bbox_overlaps(pred, target, is_aligned=True).clamp(min=eps)``. A ``(N, 4)`` ``weight``
    is reduced to ``(N,)`` by its mean (mmdet). mmdet returns ``(pred * weight).sum()`` (= 0) early when
    no weight is positive; that value and its (zero) gradient equal what the formula gives, so the
    host-side test is not done here.
    """

    def __init__(self, linear: bool = False, eps: float = 1e-6, reduction: str = "mean", loss_weight: float = 1.0,
                 mode: str | None = None):
        super().__init__(reduction, loss_weight)
        self.mode = mode or ("linear" if linear else "log")
        if self.mode not in ("linear", "log"):
            raise NotImplementedError(f"IoULoss mode {self.mode!r}: only 'linear' and 'log'")
        self.eps = eps

    def execute(self, pred, target, weight=None, avg_factor=None, reduction_override=None):
        reduction = self._reduction(reduction_override)
        if weight is not None and weight.ndim > 1:
            weight = weight.mean(-1)
        ious = jt.maximum(bbox_overlaps(pred, target, is_aligned=True, eps=1e-6), self.eps)
        loss = 1.0 - ious if self.mode == "linear" else -jt.log(ious)
        return self.loss_weight * weight_reduce_loss(loss, weight, reduction, avg_factor)


def accuracy(pred: jt.Var, target: jt.Var) -> jt.Var:
    """Top-1 accuracy in percent of ``(N, C)`` scores against ``(N,)`` labels (mmdet ``accuracy``)."""
    if pred.shape[0] == 0:
        return jt.zeros((1,), dtype="float32")
    pred_label = jt.argmax(pred, dim=1)[0]
    return (pred_label == target).float32().sum() * (100.0 / pred.shape[0])
