"""mmdet/torchvision ``ResNet`` (Bottleneck, ``style='pytorch'``) as the stage-1 backbone.

Parameter names are the torchvision/mmdet state-dict keys (``conv1``, ``bn1``,
``layer1.0.conv2.weight``, ``layer2.0.downsample.0.weight``, ``layer2.0.downsample.1.running_var``),
so ``torchvision://resnet50`` and official stage-1 checkpoints load name for name.

On the CPU the residual stages run channels-last between the stem and the stage outputs
(:func:`~unidetector.models.layers.channels_last.run_blocks`): fused oneDNN calls in inference, and in
training the frozen running-statistics blocks without a backward graph and the others through the
differentiable channels-last layers; the stem (7×7 conv and max pool) stays NCHW.
"""
from __future__ import annotations

import numpy as np
from jittor import nn

from ...ops.activation import add_relu, relu
from ...registry import MODELS
from ..layers import channels_last, make_norm
from .clip_resnet import freeze, load_pretrained

ARCH_SETTINGS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


class Bottleneck(nn.Module):
    """torchvision Bottleneck, expansion 4; ``style='pytorch'`` puts the stride on the 3×3 conv.

    ``x (N, inplanes, H, W) -> (N, 4 * planes, H / stride, W / stride)``.
    """

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, norm_eval: bool = True,
                 norm_requires_grad: bool = True):
        super().__init__()
        out = planes * self.expansion
        norm = lambda c: make_norm(c, norm_eval, norm_requires_grad)  # noqa: E731
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = norm(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = norm(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = norm(out)
        self.downsample = None
        if stride != 1 or inplanes != out:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride=stride, bias=False), norm(out))

    def execute(self, x, layers: channels_last.Layers | None = None):
        """(N, C, H, W) in and out, or (N, H, W, C) with channels-last ``layers`` (:data:`channels_last.INFERENCE`:
        each convolution fused with its BatchNorm, the residual add and the ReLU; :data:`channels_last.TRAINING`)."""
        if layers is not None:
            out = layers.conv_bn(self.conv1, self.bn1, x, relu=True)
            out = layers.conv_bn(self.conv2, self.bn2, out, relu=True)
            identity = x if self.downsample is None else layers.apply(self.downsample, x)
            return layers.conv_bn(self.conv3, self.bn3, out, residual=identity, relu=True)
        out = relu(self.bn1(self.conv1(x)))
        out = relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return add_relu(out, x if self.downsample is None else self.downsample(x))


@MODELS.register_module()
class ResNet(nn.Module):
    """ResNet-50/101/152 returning the stage outputs listed in ``out_indices``.

    Stage ``i`` (``layer{i+1}``) has ``base_channels * 2**i * 4`` output channels and stride
    ``4 * 2**i``: for ``base_channels=64`` C2..C5 = 256/512/1024/2048 at strides 4/8/16/32.

    Args:
        depth: 50, 101 or 152.
        in_channels: image channels.
        stem_channels: stem width (default ``base_channels``).
        base_channels: width of ``layer1`` before expansion (64 for the real model).
        num_stages: number of residual stages (1-4).
        stage_blocks: blocks per stage, overriding ``depth``'s (mmdet; e.g. ``(1, 1, 1, 1)`` for a
            small model trained from scratch on the synthetic world).
        strides: stride of the first block of each stage.
        out_indices: stages whose outputs are returned, e.g. ``(0, 1, 2, 3)``.
        style: only ``'pytorch'`` (stride on the 3×3 conv, torchvision layout).
        frozen_stages: ``-1`` nothing, ``0`` the stem, ``k`` the stem and ``layer1..k``: no
            gradients and running statistics (the official stage 1 uses 1).
        norm_cfg: ``dict(type='BN', requires_grad=True)``; ``requires_grad=False`` freezes every
            BN affine parameter.
        norm_eval: every BN normalises with its running statistics, also in training (official:
            True); the affine parameters of unfrozen stages stay trainable.
        zero_init_residual: start every ``bn3`` scale at 0 (mmdet's random init; checkpoints
            overwrite it).
        with_cp: accepted for config compatibility (no gradient checkpointing in Jittor).
        pretrained / init_cfg: checkpoint path (or ``init_cfg=dict(type='Pretrained',
            checkpoint=...)``) loaded by :meth:`init_weights`; ``torchvision://`` names must be
            converted to a local file first (``unidet convert``).
    """

    def __init__(self, depth: int = 50, in_channels: int = 3, stem_channels: int | None = None,
                 base_channels: int = 64, num_stages: int = 4, strides=(1, 2, 2, 2), dilations=(1, 1, 1, 1),
                 out_indices=(0, 1, 2, 3), style: str = "pytorch", deep_stem: bool = False, avg_down: bool = False,
                 frozen_stages: int = -1, norm_cfg: dict | None = None, norm_eval: bool = True,
                 with_cp: bool = False, zero_init_residual: bool = True, pretrained: str | None = None,
                 init_cfg: dict | None = None, stage_blocks=None):
        super().__init__()
        if depth not in ARCH_SETTINGS:
            raise ValueError(f"ResNet: depth must be one of {sorted(ARCH_SETTINGS)}, got {depth}")
        if style != "pytorch" or deep_stem or avg_down or any(d != 1 for d in dilations):
            raise NotImplementedError("ResNet: only style='pytorch' without deep_stem/avg_down/dilation is supported")
        norm_cfg = dict(type="BN", requires_grad=True) if norm_cfg is None else dict(norm_cfg)
        if norm_cfg.get("type", "BN") not in ("BN", "SyncBN"):
            raise NotImplementedError(f"ResNet: norm_cfg type {norm_cfg['type']!r} (only BN)")
        if not 1 <= num_stages <= 4 or max(out_indices) >= num_stages:
            raise ValueError(f"ResNet: num_stages={num_stages} and out_indices={out_indices} do not fit")
        requires_grad = norm_cfg.get("requires_grad", True)
        self.out_indices = tuple(out_indices)
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.pretrained = pretrained or (init_cfg or {}).get("checkpoint")
        stem_channels = stem_channels or base_channels

        self.conv1 = nn.Conv2d(in_channels, stem_channels, 7, stride=2, padding=3, bias=False)
        self.bn1 = make_norm(stem_channels, norm_eval or frozen_stages >= 0, requires_grad)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        inplanes = stem_channels
        self.res_layers = []
        stage_blocks = tuple(stage_blocks or ARCH_SETTINGS[depth])[:num_stages]
        if len(stage_blocks) < num_stages or min(stage_blocks) < 1:
            raise ValueError(f"ResNet: stage_blocks={stage_blocks} must give >= 1 block for each of "
                             f"{num_stages} stages")
        for i, num_blocks in enumerate(stage_blocks):
            planes = base_channels * 2 ** i
            eval_bn = norm_eval or i < frozen_stages
            blocks = [Bottleneck(inplanes, planes, strides[i], eval_bn, requires_grad)]
            inplanes = planes * Bottleneck.expansion
            blocks += [Bottleneck(inplanes, planes, 1, eval_bn, requires_grad) for _ in range(1, num_blocks)]
            name = f"layer{i + 1}"
            setattr(self, name, nn.Sequential(*blocks))
            self.res_layers.append(name)
        self.out_channels = [base_channels * 2 ** i * Bottleneck.expansion for i in self.out_indices]
        if zero_init_residual:  # mmdet init: every residual branch starts as zero (block = identity)
            for name in self.res_layers:
                for block in getattr(self, name):
                    block.bn3.weight.assign(block.bn3.weight * 0)
        self._freeze_stages()

    def _freeze_stages(self):
        if self.frozen_stages >= 0:
            freeze(self.conv1, self.bn1)
        for i in range(1, self.frozen_stages + 1):
            freeze(getattr(self, f"layer{i}"))

    def init_weights(self, pretrained: str | None = None):
        """Load ``pretrained`` (or the configured checkpoint): torchvision keys or ``backbone.*`` keys."""
        path = pretrained or self.pretrained
        if path:
            load_pretrained(self, path, {"backbone.": "", "": ""})
            self._freeze_stages()

    def blocks(self) -> list:
        """The residual blocks of every stage, in order."""
        return [block for name in self.res_layers for block in getattr(self, name)]

    def execute(self, x):
        """``(N, 3, H, W)`` -> tuple of the ``out_indices`` stage maps, finest first."""
        x = self.maxpool(relu(self.bn1(self.conv1(x))))
        blocks = self.blocks()
        fixed = channels_last.leading_fixed([(b,) for b in blocks]) if self.is_training() else 0
        stage_ends = np.cumsum([len(getattr(self, name)) for name in self.res_layers]) - 1
        return tuple(channels_last.run_blocks(self, x, blocks, fixed, taps=stage_ends[list(self.out_indices)]))
