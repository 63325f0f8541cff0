"""mmdet ``SingleRoIExtractor``: pool each RoI from one FPN level chosen by its size."""
from __future__ import annotations

from typing import Sequence

import jittor as jt
from jittor import nn

from ...ops.boxes import as_var
from ...ops.roi_align import RoIAlign, multilevel_roi_align
from ...registry import MODELS

__all__ = ["SingleRoIExtractor"]

ROI_LAYERS = {"RoIAlign": RoIAlign}


@MODELS.register_module()
class SingleRoIExtractor(nn.Module):
    """Extract ``(K, C, out, out)`` RoI features from the level that suits each RoI.

    Level of a RoI of size ``w x h`` (input pixels), with ``L`` maps given::

        level = clamp(floor(log2(sqrt(w * h) / finest_scale + 1e-6)), 0, L - 1)

    i.e. RoIs below ``2 * finest_scale`` (112 px) use the finest map. All levels are
    pooled by one RoIAlign kernel (forward and backward).

    Args:
        roi_layer: ``dict(type='RoIAlign', output_size=7, sampling_ratio=0, ...)``.
        out_channels: channels of the maps.
        featmap_strides: stride of each map, finest first.
        finest_scale: scale threshold of level 0 (56 in mmdet).
    """

    def __init__(self, roi_layer: dict, out_channels: int, featmap_strides: Sequence[int], finest_scale: int = 56,
                 init_cfg=None):
        super().__init__()
        cfg = dict(roi_layer)
        layer_type = cfg.pop("type")
        if layer_type not in ROI_LAYERS:
            raise ValueError(f"SingleRoIExtractor: roi_layer type {layer_type!r} is not supported "
                             f"(available: {', '.join(ROI_LAYERS)})")
        self.roi_layers = nn.ModuleList([ROI_LAYERS[layer_type](spatial_scale=1 / s, **cfg) for s in featmap_strides])
        self.out_channels = out_channels
        self.featmap_strides = list(featmap_strides)
        self.finest_scale = finest_scale

    @property
    def num_inputs(self) -> int:
        """Number of feature maps the extractor uses (``feats[:num_inputs]``)."""
        return len(self.featmap_strides)

    def map_roi_levels(self, rois: jt.Var, num_levels: int) -> jt.Var:
        """``(K,)`` int64 level of each ``(K, 5)`` RoI (mmdet ``map_roi_levels``)."""
        scale = jt.sqrt((rois[:, 3] - rois[:, 1]) * (rois[:, 4] - rois[:, 2]))
        levels = jt.floor(jt.log2(scale / float(self.finest_scale) + 1e-6))
        return jt.clamp(levels, 0, num_levels - 1).int64()

    @staticmethod
    def roi_rescale(rois: jt.Var, scale_factor: float) -> jt.Var:
        """Scale each RoI's width and height by ``scale_factor`` around its centre."""
        cx, cy = (rois[:, 1] + rois[:, 3]) * 0.5, (rois[:, 2] + rois[:, 4]) * 0.5
        w, h = (rois[:, 3] - rois[:, 1]) * scale_factor, (rois[:, 4] - rois[:, 2]) * scale_factor
        return jt.stack([rois[:, 0], cx - w * 0.5, cy - h * 0.5, cx + w * 0.5, cy + h * 0.5], dim=-1)

    def execute(self, feats: Sequence[jt.Var], rois, roi_scale_factor: float | None = None) -> jt.Var:
        """Pool ``(K, 5)`` RoIs ``[batch_idx, x1, y1, x2, y2]`` from ``feats`` (finest first).

        Returns ``(K, out_channels, out_h, out_w)`` float32.
        """
        feats = list(feats)[:self.num_inputs]
        rois = as_var(rois)
        layer = self.roi_layers[0]
        if len(feats) == 1:
            levels = jt.zeros((rois.shape[0],), dtype="int32")
        else:
            levels = self.map_roi_levels(rois, len(feats))
        if roi_scale_factor is not None:
            rois = self.roi_rescale(rois, roi_scale_factor)
        return multilevel_roi_align(feats, rois, levels, [1 / s for s in self.featmap_strides[:len(feats)]],
                                    layer.output_size, layer.sampling_ratio, layer.aligned)
