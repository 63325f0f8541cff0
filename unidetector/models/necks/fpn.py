"""mmdet ``FPN`` (Lin et al. 2017) with the mmdet 2.18 defaults used by UniDetector stage 1."""
from __future__ import annotations

from typing import Sequence

import jittor as jt
import numpy as np
from jittor import nn

from ...registry import MODELS
from ..layers import channels_last


class ConvModule(nn.Module):
    """A conv whose parameters live under ``.conv`` (mmcv ``ConvModule`` key names, no norm/act); oneDNN
    channels-last on the CPU (:func:`~unidetector.models.layers.channels_last.conv2d`)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding)
        nn.init.xavier_uniform_(self.conv.weight)  # mmdet FPN init_cfg: Xavier (uniform), bias 0
        nn.init.constant_(self.conv.bias, 0.0)

    def execute(self, x):
        return channels_last.conv2d(self.conv, x)


def upsample_nearest(x: jt.Var, size: Sequence[int]) -> jt.Var:
    """PyTorch ``F.interpolate(x, size, mode='nearest')``: output pixel ``i`` reads input
    ``floor(i * in / out)`` (exactly a 2× repeat for the /32-padded pyramids)."""
    in_h, in_w = x.shape[-2:]
    out_h, out_w = int(size[0]), int(size[1])
    rows = np.minimum(np.floor(np.arange(out_h) * np.float32(in_h / out_h)).astype(np.int64), in_h - 1)
    cols = np.minimum(np.floor(np.arange(out_w) * np.float32(in_w / out_w)).astype(np.int64), in_w - 1)
    return x.reindex([x.shape[0], x.shape[1], out_h, out_w],
                     ["i0", "i1", "@e0(i2)", "@e1(i3)"], extras=[jt.array(rows), jt.array(cols)])


@MODELS.register_module()
class FPN(nn.Module):
    """Feature pyramid: lateral 1×1 convs, top-down nearest upsampling + sum, 3×3 output convs,
    and extra levels by ``max_pool2d(kernel 1, stride 2)`` of the last output.

    ``inputs`` C2..C5 ``(N, in_channels[i], H_i, W_i)`` -> ``num_outs`` maps P2..P6
    ``(N, out_channels, ·, ·)``, finest first. Key names as mmdet: ``lateral_convs.i.conv.*``,
    ``fpn_convs.i.conv.*``.

    Args:
        in_channels: channels of each backbone map used.
        out_channels: channels of every pyramid level.
        num_outs: number of outputs (levels beyond the inputs are max-pooled).
        start_level, end_level: backbone maps used (``end_level=-1``: up to the last).
        add_extra_convs: only ``False`` (the official stage-1 value) is supported.
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int, num_outs: int, start_level: int = 0,
                 end_level: int = -1, add_extra_convs=False, relu_before_extra_convs: bool = False,
                 no_norm_on_lateral: bool = False, conv_cfg=None, norm_cfg=None, act_cfg=None,
                 upsample_cfg: dict | None = None, init_cfg=None):
        super().__init__()
        if add_extra_convs or conv_cfg is not None or norm_cfg is not None or act_cfg is not None:
            raise NotImplementedError("FPN: only add_extra_convs=False without conv/norm/act cfgs is supported")
        if upsample_cfg not in (None, dict(mode="nearest")):
            raise NotImplementedError(f"FPN: upsample_cfg={upsample_cfg} (only nearest by size)")
        self.in_channels = list(in_channels)
        self.out_channels = out_channels
        self.num_outs = num_outs
        self.start_level = start_level
        self.end_level = len(self.in_channels) if end_level == -1 else end_level
        if not start_level < self.end_level <= len(self.in_channels) or num_outs < self.end_level - start_level:
            raise ValueError(f"FPN: start_level={start_level}, end_level={end_level}, num_outs={num_outs} "
                             f"do not fit {len(self.in_channels)} inputs")
        levels = range(start_level, self.end_level)
        self.lateral_convs = nn.ModuleList([ConvModule(self.in_channels[i], out_channels, 1) for i in levels])
        self.fpn_convs = nn.ModuleList([ConvModule(out_channels, out_channels, 3, padding=1) for _ in levels])

    def execute(self, inputs):
        if len(inputs) != len(self.in_channels):
            raise ValueError(f"FPN expects {len(self.in_channels)} inputs, got {len(inputs)}")
        laterals = [conv(inputs[i + self.start_level]) for i, conv in enumerate(self.lateral_convs)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + upsample_nearest(laterals[i], laterals[i - 1].shape[-2:])
        outs = [conv(lat) for conv, lat in zip(self.fpn_convs, laterals)]
        while len(outs) < self.num_outs:
            outs.append(nn.max_pool2d(outs[-1], 1, stride=2))
        return tuple(outs)
