"""CLIP ModifiedResNet as the stage-2 detector backbone (``CLIPResNet``, official UniDetector).

Differences from torchvision's ResNet (CLIP, Radford et al. 2021): a 3-conv stem with an
average pool, anti-aliased strided blocks (an ``AvgPool2d(stride)`` after ``conv2`` and in
front of the 1×1 shortcut conv, every conv has stride 1), and attention pooling at the end
(:class:`~unidetector.models.layers.AttentionPool2d`, used by the RoI box head here).
Every sub-module path equals the official state-dict key, e.g.
``backbone.layer1.0.downsample.0.weight``.
"""
from __future__ import annotations

from collections import OrderedDict

from jittor import nn

from ...ops.activation import add_relu, relu
from ...registry import MODELS
from ..layers import BlockAvgPool2d, channels_last, make_norm


class CLIPBottleneck(nn.Module):
    """CLIP's anti-aliased Bottleneck (expansion 4); its BatchNorms run in eval mode unless
    ``norm_eval=False`` (training from scratch, e.g. the synthetic world)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, norm_eval: bool = True):
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = make_norm(planes, norm_eval)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = make_norm(planes, norm_eval)
        self.avgpool = BlockAvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = make_norm(out, norm_eval)
        self.stride = stride
        self.downsample = None
        if stride > 1 or inplanes != out:
            # keys "-1" (pool, no weights), "0" (conv), "1" (BN) as in the official checkpoints
            self.downsample = nn.Sequential(OrderedDict([
                ("-1", BlockAvgPool2d(stride) if stride > 1 else nn.Identity()),
                ("0", nn.Conv2d(inplanes, out, 1, stride=1, bias=False)),
                ("1", make_norm(out, norm_eval)),
            ]))

    def execute(self, x, layers: channels_last.Layers | None = None):
        """(N, C, H, W) → (N, 4·planes, H/stride, W/stride); (N, H, W, C) in and out with channels-last
        ``layers`` (:data:`channels_last.INFERENCE`: each convolution fused with its BatchNorm, the residual add
        and the ReLU; :data:`channels_last.TRAINING`)."""
        if layers is not None:
            cl = layers
            out = cl.conv_bn(self.conv1, self.bn1, x, relu=True)
            out = cl.apply(self.avgpool, cl.conv_bn(self.conv2, self.bn2, out, relu=True))
            identity = x if self.downsample is None else cl.apply(self.downsample, x)
            return cl.conv_bn(self.conv3, self.bn3, out, residual=identity, relu=True)
        out = relu(self.bn1(self.conv1(x)))
        out = relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(self.avgpool(out)))
        return add_relu(out, x if self.downsample is None else self.downsample(x))


def make_clip_res_layer(inplanes: int, planes: int, blocks: int, stride: int = 1,
                        norm_eval: bool = True) -> nn.Sequential:
    """``blocks`` CLIP Bottlenecks (the first one strided); output ``planes * 4`` channels."""
    layers = [CLIPBottleneck(inplanes, planes, stride, norm_eval)]
    layers += [CLIPBottleneck(planes * CLIPBottleneck.expansion, planes, norm_eval=norm_eval)
               for _ in range(1, blocks)]
    return nn.Sequential(*layers)


def freeze(*modules) -> None:
    """Stop gradients of every parameter of ``modules`` (``requires_grad=False``)."""
    for m in modules:
        for p in m.parameters():
            p.stop_grad()


def load_pretrained(module: nn.Module, path: str, prefix_map: dict) -> None:
    """Load ``path`` (OpenAI ``.pt``, PyTorch ``.pth`` or converted ``.pkl``) into ``module``,
    keeping keys that start with a ``prefix_map`` key, renamed to its value; prints the report."""
    from ...convert import read_checkpoint, load_state_dict  # lazy: the convert package reads zip/pickle

    sd = read_checkpoint(path)
    picked = {}
    for key, value in sd.items():
        for old, new in prefix_map.items():
            if key.startswith(old):
                picked[new + key[len(old):]] = value
                break
    report = load_state_dict(module, picked, strict=False)
    print(f"{type(module).__name__}: loaded {path}\n{report.format()}")


@MODELS.register_module()
class CLIPResNet(nn.Module):
    """CLIP ModifiedResNet stem + layer1..3 → ``(C4,)`` (stride 16, ``width*16`` channels).

    Official: ``mmdet/models/backbones/clipresnet.py`` (UniDetector). As there, the stem
    and ``layer1`` are frozen, every BatchNorm runs in eval mode (also in training) and
    the BN γ/β of ``layer2``/``layer3`` stay trainable.

    Args:
        layers: blocks per stage, e.g. ``[3, 4, 6, 3]`` for RN50 (``layers[3]`` is used
            by :class:`CLIPResLayer`).
        output_dim, input_resolution: accepted for config compatibility with the official
            class, which stores them and never uses them.
        width: stem width (64 for RN50; C4 has ``width*16`` channels).
        pretrained: optional checkpoint path loaded by :meth:`init_weights`; OpenAI CLIP
            ``visual.*`` keys are used with the prefix stripped (official behaviour), and
            ``backbone.*`` keys of converted / mmdet checkpoints are used as well.
        style: only ``'pytorch'`` (the official configs pass it; it has no effect).
        frozen_stages: 1 in the official code (hard-coded): stem + layer1 frozen;
            -1 freezes nothing, 0 the stem only, k the stem and layer1..k.
        norm_eval: True (official, for CLIP / RegionCLIP weights): every BatchNorm uses its
            running statistics, also in training. False: ordinary BatchNorm (batch statistics
            in training) in the stages that are not frozen, for training from scratch, e.g. on the
            synthetic world; frozen stages keep their running statistics (as mmdet's ResNet).
    """

    def __init__(self, layers, output_dim: int = 512, input_resolution: int = 224, width: int = 64,
                 pretrained: str | None = None, style: str = "pytorch", frozen_stages: int = 1,
                 norm_eval: bool = True):
        super().__init__()
        if style != "pytorch":
            raise ValueError(f"CLIPResNet: style={style!r} is not supported (only 'pytorch')")
        if len(layers) < 3:
            raise ValueError(f"CLIPResNet: layers must list at least 3 stages, got {layers!r}")
        self.layers_cfg = list(layers)
        self.width = width
        self.output_dim = output_dim
        self.input_resolution = input_resolution
        self.pretrained = pretrained
        self.frozen_stages = frozen_stages
        self.out_channels = width * 16

        # frozen stages keep their running statistics also with norm_eval=False (mmdet's _freeze_stages puts them
        # in eval mode), so that their weights and statistics both stay fixed
        stem_eval, stage_eval = norm_eval or frozen_stages >= 0, [norm_eval or i <= frozen_stages for i in (1, 2, 3)]
        self.conv1 = nn.Conv2d(3, width // 2, 3, stride=2, padding=1, bias=False)
        self.bn1 = make_norm(width // 2, stem_eval)
        self.conv2 = nn.Conv2d(width // 2, width // 2, 3, padding=1, bias=False)
        self.bn2 = make_norm(width // 2, stem_eval)
        self.conv3 = nn.Conv2d(width // 2, width, 3, padding=1, bias=False)
        self.bn3 = make_norm(width, stem_eval)
        self.avgpool = BlockAvgPool2d(2)
        self.layer1 = make_clip_res_layer(width, width, layers[0], norm_eval=stage_eval[0])
        self.layer2 = make_clip_res_layer(width * 4, width * 2, layers[1], stride=2, norm_eval=stage_eval[1])
        self.layer3 = make_clip_res_layer(width * 8, width * 4, layers[2], stride=2, norm_eval=stage_eval[2])
        self._freeze_stages()

    def _freeze_stages(self):
        if self.frozen_stages >= 0:
            freeze(self.conv1, self.bn1, self.conv2, self.bn2, self.conv3, self.bn3)
        for i in range(1, self.frozen_stages + 1):
            freeze(getattr(self, f"layer{i}"))

    def init_weights(self, pretrained: str | None = None):
        path = pretrained or self.pretrained
        if path:
            load_pretrained(self, path, {"visual.": "", "backbone.": ""})
            self._freeze_stages()

    def stem(self, x, layers: channels_last.Layers | None = None):
        for conv, bn in ((self.conv1, self.bn1), (self.conv2, self.bn2), (self.conv3, self.bn3)):
            x = layers.conv_bn(conv, bn, x, relu=True) if layers is not None else relu(bn(conv(x)))
        return layers.apply(self.avgpool, x) if layers is not None else self.avgpool(x)

    def fixed_blocks(self) -> int:
        """How many leading blocks (the stem, then each block of layer1..3) are fixed functions in training
        (:func:`channels_last.fixed`): with ``frozen_stages = k`` and ``norm_eval``, the stem and layer1..k."""
        stem = (self.conv1, self.bn1, self.conv2, self.bn2, self.conv3, self.bn3)
        groups = [stem] + [(block,) for layer in (self.layer1, self.layer2, self.layer3) for block in layer]
        return channels_last.leading_fixed(groups)

    def execute(self, x):
        fixed = self.fixed_blocks() if self.is_training() else 0
        return tuple(channels_last.run_blocks(self, x, [self.stem, *self.layer1, *self.layer2, *self.layer3], fixed))
