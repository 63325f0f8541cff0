"""Plain-PyTorch references of the networks the benchmarks time (no mmcv, no torchvision).

Used by ``benchmarks/stage2_inference.py`` and ``benchmarks/train_step.py`` to time the same work
in PyTorch in the same run, and by ``tests/test_benchmark_references.py`` to check on shared
weights that each reference computes what ours does. Module paths equal our (= the official
mmdet) state-dict keys, so :func:`load_jittor_weights` copies a Jittor model's weights over.

Stage 2 (open-world inference, official UniDetector ``FastRCNN`` with a CLIP RN50):

* :class:`ModifiedResNetC4`: OpenAI CLIP's ``ModifiedResNet`` stem + ``layer1..3`` (stride 16);
* :func:`roi_align`: mmcv ``roi_align`` (``aligned``, adaptive sampling), written here per RoI as
  ``A_y · F · A_xᵀ`` over the RoI's window (bilinear sampling on a regular grid is separable);
* :class:`CLIPRoIHead`: CLIP ``layer4`` on the RoIs, OpenAI's ``AttentionPool2d`` (key/value
  projections of all 50 tokens, as OpenAI's code), cosine logits ``100 · f̂ · t̂`` against the text
  embeddings (+ a zero background column) and the class-agnostic ``fc_reg``.
"""
from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LOGIT_SCALE = 100.0


# ----------------------------------------------------------------------------- CLIP ResNet (OpenAI)
class Bottleneck(nn.Module):
    """OpenAI CLIP's anti-aliased Bottleneck (expansion 4): avgpool after conv2 when strided."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = None
        if stride > 1 or inplanes != planes * 4:
            self.downsample = nn.Sequential(OrderedDict([
                ("-1", nn.AvgPool2d(stride)), ("0", nn.Conv2d(inplanes, planes * 4, 1, bias=False)),
                ("1", nn.BatchNorm2d(planes * 4))]))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(self.avgpool(out)))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


def make_layer(inplanes: int, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(Bottleneck(inplanes, planes, stride), *[Bottleneck(planes * 4, planes)
                                                                  for _ in range(1, blocks)])


class ModifiedResNetC4(nn.Module):
    """CLIP ``ModifiedResNet`` up to ``layer3``: (N, 3, H, W) → (N, 16·width, H/16, W/16)."""

    def __init__(self, layers=(3, 4, 6, 3), width: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width // 2, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width // 2)
        self.conv2 = nn.Conv2d(width // 2, width // 2, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width // 2)
        self.conv3 = nn.Conv2d(width // 2, width, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.avgpool = nn.AvgPool2d(2)
        self.layer1 = make_layer(width, width, layers[0])
        self.layer2 = make_layer(width * 4, width * 2, layers[1], stride=2)
        self.layer3 = make_layer(width * 8, width * 4, layers[2], stride=2)

    def forward(self, x):
        for conv, bn in ((self.conv1, self.bn1), (self.conv2, self.bn2), (self.conv3, self.bn3)):
            x = F.relu(bn(conv(x)))
        return self.layer3(self.layer2(self.layer1(self.avgpool(x))))


class AttentionPool2d(nn.Module):
    """OpenAI CLIP's ``AttentionPool2d`` (``F.multi_head_attention_forward``, query = mean token)."""

    def __init__(self, spacial_dim: int, embed_dim: int, num_heads: int, output_dim: int):
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.randn(spacial_dim ** 2 + 1, embed_dim) / embed_dim ** 0.5)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.c_proj = nn.Linear(embed_dim, output_dim)
        self.num_heads = num_heads

    def forward(self, x):
        x = x.flatten(start_dim=2).permute(2, 0, 1)
        x = torch.cat([x.mean(dim=0, keepdim=True), x], dim=0)
        x = x + self.positional_embedding[:, None, :].to(x.dtype)
        x, _ = F.multi_head_attention_forward(
            query=x[:1], key=x, value=x, embed_dim_to_check=x.shape[-1], num_heads=self.num_heads,
            q_proj_weight=self.q_proj.weight, k_proj_weight=self.k_proj.weight, v_proj_weight=self.v_proj.weight,
            in_proj_weight=None, in_proj_bias=torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias]),
            bias_k=None, bias_v=None, add_zero_attn=False, dropout_p=0, out_proj_weight=self.c_proj.weight,
            out_proj_bias=self.c_proj.bias, use_separate_proj_weight=True, training=self.training,
            need_weights=False)
        return x.squeeze(0)


# ----------------------------------------------------------------------------- RoIAlign (mmcv semantics)
def _axis_weights(start, size, n_out: int, sampling_ratio: int, length: int):
    """(K, n_out, length) weights of the bilinear samples of every bin along one axis, and the
    (K,) sample counts per bin on this axis (mmcv: ``grid = ceil(size / n_out)`` when adaptive)."""
    k = start.shape[0]
    bin_size = size / n_out
    grid = (torch.full_like(size, float(sampling_ratio)) if sampling_ratio > 0
            else torch.ceil(size / n_out)).to(torch.int64)
    g_max = int(grid.max()) if k else 0
    weights = torch.zeros(k, n_out, length, dtype=torch.float32)
    if g_max == 0:
        return weights, grid
    p = torch.arange(n_out, dtype=torch.float32)[None, :, None]
    i = torch.arange(g_max, dtype=torch.float32)[None, None, :]
    s = start[:, None, None] + p * bin_size[:, None, None] + (i + 0.5) * bin_size[:, None, None] / \
        grid.clamp(min=1)[:, None, None].to(torch.float32)
    valid = (torch.arange(g_max)[None, None, :] < grid[:, None, None]) & (s >= -1.0) & (s <= length)
    s = s.clamp(min=0.0)
    low = s.floor().to(torch.int64)
    at_end = low >= length - 1
    low = torch.where(at_end, torch.full_like(low, length - 1), low)
    high = torch.where(at_end, low, low + 1)
    s = torch.where(at_end, low.to(s.dtype), s)
    frac = s - low
    v = valid.to(torch.float32)
    for j in range(g_max):  # scatter each sample's two taps into its bin's row
        weights.scatter_add_(2, low[:, :, j:j + 1], ((1 - frac) * v)[:, :, j:j + 1])
        weights.scatter_add_(2, high[:, :, j:j + 1], (frac * v)[:, :, j:j + 1])
    return weights, grid


def roi_align(feat: torch.Tensor, rois: torch.Tensor, output_size: int, spatial_scale: float,
              sampling_ratio: int = 0, aligned: bool = True) -> torch.Tensor:
    """mmcv ``roi_align`` (avg): (B, C, H, W) map, (K, 5) RoIs ``[b, x1, y1, x2, y2]`` → (K, C, out, out).

    Bilinear sampling on a regular grid is separable, so each RoI is ``A_y · F · A_xᵀ / count`` with
    ``A_y`` (out, H) and ``A_x`` (out, W) the summed tap weights of the samples of every bin (a
    sample outside ``[-1, H] × [-1, W]`` contributes 0, as in mmcv), evaluated on the RoI's window.
    """
    _, c, h, w = feat.shape
    r = rois.to(torch.float32)
    offset = 0.5 if aligned else 0.0
    x1, y1 = r[:, 1] * spatial_scale - offset, r[:, 2] * spatial_scale - offset
    rw, rh = r[:, 3] * spatial_scale - offset - x1, r[:, 4] * spatial_scale - offset - y1
    if not aligned:
        rw, rh = rw.clamp(min=1.0), rh.clamp(min=1.0)
    wy, gy = _axis_weights(y1, rh, output_size, sampling_ratio, h)
    wx, gx = _axis_weights(x1, rw, output_size, sampling_ratio, w)
    count = (gy * gx).clamp(min=1).to(torch.float32)
    wy = (wy / count[:, None, None]).to(feat.dtype)
    wx = wx.to(feat.dtype)
    out = feat.new_zeros((rois.shape[0], c, output_size, output_size))
    rows, cols = wy.abs().sum(1) > 0, wx.abs().sum(1) > 0
    for k in range(rois.shape[0]):
        ry, rx = torch.nonzero(rows[k]).flatten(), torch.nonzero(cols[k]).flatten()
        if ry.numel() == 0 or rx.numel() == 0:
            continue
        y0, y9, x0, x9 = int(ry[0]), int(ry[-1]) + 1, int(rx[0]), int(rx[-1]) + 1
        window = feat[int(rois[k, 0]), :, y0:y9, x0:x9]
        out[k] = torch.matmul(torch.matmul(wy[k, :, y0:y9], window), wx[k, :, x0:x9].t())
    return out


# ----------------------------------------------------------------------------- stage-2 RoI head and network
class CLIPBoxHead(nn.Module):
    """Official ``BBoxHeadCLIP`` forward: attention pool → cosine logits (+ zero bg column), ``fc_reg``."""

    def __init__(self, embeddings: np.ndarray, in_channels: int = 2048, roi_feat_size: int = 7):
        super().__init__()
        dim = embeddings.shape[1]
        self.attnpool = AttentionPool2d(roi_feat_size, in_channels, max(in_channels // 64, 1), dim)
        self.fc_reg = nn.Linear(dim, 4)
        zs = np.concatenate([embeddings.T, np.zeros((dim, 1), np.float32)], 1)
        self.register_buffer("zs_weights", torch.from_numpy(np.ascontiguousarray(zs, np.float32)))

    def forward(self, x):
        f = self.attnpool(x)
        logits = LOGIT_SCALE * F.normalize(f, dim=1) @ F.normalize(self.zs_weights, dim=0)
        return logits, self.fc_reg(f)


class SharedHead(nn.Module):
    """CLIP ``layer4`` on RoI features (N, 16·width, 14, 14) → (N, 32·width, 7, 7)."""

    def __init__(self, layers=(3, 4, 6, 3), width: int = 64):
        super().__init__()
        self.layer4 = make_layer(width * 16, width * 8, layers[3], stride=2)

    def forward(self, x):
        return self.layer4(x)


class CLIPRoIHead(nn.Module):
    """RoIAlign 14×14 on C4 (stride 16) → ``shared_head`` → ``bbox_head``."""

    def __init__(self, embeddings: np.ndarray, layers=(3, 4, 6, 3), width: int = 64, roi_size: int = 14,
                 stride: int = 16):
        super().__init__()
        self.roi_size, self.stride = roi_size, stride
        self.shared_head = SharedHead(layers, width)
        self.bbox_head = CLIPBoxHead(embeddings, width * 32, roi_size // 2)

    def forward(self, feat, rois):
        return self.bbox_head(self.shared_head(roi_align(feat, rois, self.roi_size, 1.0 / self.stride)))


class Stage2(nn.Module):
    """The stage-2 network (official ``FastRCNN`` with CLIP RN50, without post-processing):
    ``backbone(img)`` → C4, ``roi_head(C4, rois)`` → (logits (K, C+1), deltas (K, 4))."""

    def __init__(self, embeddings: np.ndarray, layers=(3, 4, 6, 3), width: int = 64):
        super().__init__()
        self.backbone = ModifiedResNetC4(layers, width)
        self.roi_head = CLIPRoIHead(embeddings, layers, width)

    def forward(self, img, rois):
        return self.roi_head(self.backbone(img), rois)


def fuse_scores(logits, proposal_scores, calibration=None, beta: float = 0.3):
    """Official open-world scores: ``p = sigmoid(logits)``, ``p[:, :C] *= calibration``,
    ``p^β · o^(1-β)`` with the (K,) proposal scores ``o``."""
    p = torch.sigmoid(logits)
    if calibration is not None:
        p = p * torch.cat([torch.as_tensor(calibration, dtype=p.dtype), p.new_ones(1)])[None]
    return p ** beta * proposal_scores.reshape(-1, 1) ** (1.0 - beta)


# ----------------------------------------------------------------------------- weights
def load_jittor_weights(module: nn.Module, jt_module, prefix: str = "") -> list:
    """Copy a Jittor module's parameters and buffers into ``module`` (same names after ``prefix``);
    returns the torch keys that got no value (``num_batches_tracked`` excepted)."""
    src = {k: v for k, v in jt_module.state_dict().items()}
    missing = []
    with torch.no_grad():
        for name, tensor in list(module.state_dict(keep_vars=True).items()):
            if name.endswith("num_batches_tracked"):
                continue
            key = prefix + name
            if key not in src:
                missing.append(name)
                continue
            value = src[key]
            value = value.numpy() if hasattr(value, "numpy") else np.asarray(value)
            if tuple(value.shape) != tuple(tensor.shape):
                raise ValueError(f"{key}: Jittor shape {tuple(value.shape)}, torch {tuple(tensor.shape)}")
            tensor.copy_(torch.from_numpy(np.ascontiguousarray(value)).to(tensor.dtype))
    return missing
