"""Detection ops with mmcv/mmdet 2.x semantics, in Jittor (CPU and CUDA kernels), and the kernels
of the shared layers (``bmm``, ``batch_norm``, ``activation``, ``block_pool``, ``onednn``). Every
``jt.code`` kernel's C++ / CUDA source is a file in ``kernels/`` (see :mod:`.kernel_source`).

Importing this package registers the box coders, ``AnchorGenerator``,
``MaxIoUAssigner`` and ``RandomSampler`` in ``unidetector.registry.TASK_UTILS``.
"""
from .. import runtime  # noqa: F401  (before jittor)
from .anchors import AnchorGenerator, anchor_inside_flags
from .assigners import AssignResult, MaxIoUAssigner
from .boxes import bbox2result, bbox2roi, bbox_overlaps, clip_bboxes, rescale_bboxes, roi2bbox
from .coders import DeltaXYWHBBoxCoder, TBLRBBoxCoder, bbox2delta, bboxes2tblr, delta2bbox, tblr2bboxes
from .nms import batched_nms, multiclass_nms, nms, soft_nms
from .roi_align import RoIAlign, multilevel_roi_align, roi_align
from .samplers import RandomSampler, SamplingResult

__all__ = [
    "AnchorGenerator", "anchor_inside_flags", "AssignResult", "MaxIoUAssigner", "RandomSampler", "SamplingResult",
    "bbox_overlaps", "clip_bboxes", "rescale_bboxes", "bbox2roi", "roi2bbox", "bbox2result",
    "DeltaXYWHBBoxCoder", "TBLRBBoxCoder", "bbox2delta", "delta2bbox", "bboxes2tblr", "tblr2bboxes",
    "nms", "soft_nms", "batched_nms", "multiclass_nms", "RoIAlign", "roi_align", "multilevel_roi_align",
]
