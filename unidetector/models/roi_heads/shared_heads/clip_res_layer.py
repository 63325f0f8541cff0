"""``CLIPResLayer``: CLIP's ``layer4`` as the RoI shared head (official UniDetector)."""
from __future__ import annotations

from jittor import nn

from ....registry import MODELS
from ...backbones.clip_resnet import CLIPBottleneck, freeze, load_pretrained, make_clip_res_layer
from ...layers.channels_last import run_blocks


@MODELS.register_module()
class CLIPResLayer(nn.Module):
    """CLIP ``layer4`` (``layers[3]`` anti-aliased Bottlenecks, the first with stride 2)
    applied to RoI features: (N, in_channels, 14, 14) → (N, width*32, 7, 7).

    The module path is ``layer4``, so keys read ``roi_head.shared_head.layer4.0.conv1.weight``.
    All BatchNorms run in eval mode (as the official ``train()`` override does; ``norm_eval=False``
    uses batch statistics instead); weights stay trainable.

    Args:
        layers: blocks per stage of the CLIP ResNet (only ``layers[3]`` is used).
        output_dim, input_resolution: accepted for config compatibility (unused, as officially).
        width: CLIP stem width (64 for RN50); layer4 has ``width*8`` planes.
        pretrained: optional checkpoint path for :meth:`init_weights` (``visual.layer4.*`` or
            ``roi_head.shared_head.layer4.*`` keys).
        in_channels: input channels; default ``width*16`` (the official class hard-codes
            1024 for width 64 and 1280 otherwise, i.e. RN50x4's 80*16).
        norm_eval: as :class:`~unidetector.models.backbones.CLIPResNet` (False: batch statistics,
            for training from scratch).
        frozen: stop the gradients of every layer4 parameter (not official: the official stage 2 trains layer4);
            needs ``norm_eval``. Gradients still flow through it to the input; where nothing before it trains, the
            backward pass stops at the attention pool.
    """

    def __init__(self, layers, output_dim: int = 512, input_resolution: int = 224, width: int = 64,
                 pretrained: str | None = None, in_channels: int | None = None, norm_eval: bool = True,
                 frozen: bool = False):
        super().__init__()
        if frozen and not norm_eval:
            raise ValueError("CLIPResLayer: frozen=True needs norm_eval=True (with batch statistics a frozen layer4 "
                             "would still change with every batch)")
        self.in_channels = in_channels or width * 16
        self.out_channels = width * 8 * CLIPBottleneck.expansion
        self.pretrained = pretrained
        self.layer4 = make_clip_res_layer(self.in_channels, width * 8, layers[3], stride=2, norm_eval=norm_eval)
        if frozen:
            freeze(self.layer4)

    def init_weights(self, pretrained: str | None = None):
        path = pretrained or self.pretrained
        if path:
            load_pretrained(self, path, {"visual.layer4.": "layer4.", "roi_head.shared_head.layer4.": "layer4."})

    def execute(self, x):
        return run_blocks(self, x, list(self.layer4))[0]
