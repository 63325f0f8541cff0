"""Plain-PyTorch references of the networks the benchmarks time (no mmcv, no torchvision).

Used by ``benchmarks/stage2_inference.py`` and ``benchmarks/train_step.py`` to time the same work
in PyTorch in the same run, and by ``tests/test_benchmark_references.py`` to check on shared
weights that each reference computes what ours does. Module paths equal our (= the official
mmdet) state-dict keys, so :func:`load_jittor_weights` copies a Jittor model's weights over.

Stage 2 (open-world inference, official UniDetector ``FastRCNN`` with a CLIP RN50):

* :class:`ModifiedResNetC4`: OpenAI CLIP's ``ModifiedResNet`` stem + ``layer1..3`` (stride 16);
* :func:`roi_align`: mmcv ``roi_align`` (``aligned``, adaptive sampling), written here as
  ``A_y · F · A_xᵀ`` over each RoI's window (bilinear sampling on a regular grid is separable), a
  loop over RoIs with a hand-written backward (torchvision is not a dependency; a masked
  ``F.grid_sample`` and a gather of padded windows were slower here);
* :class:`CLIPRoIHead`: CLIP ``layer4`` on the RoIs, OpenAI's ``AttentionPool2d`` (key/value
  projections of all 50 tokens, as OpenAI's code), cosine logits ``100 · f̂ · t̂`` against the text
  embeddings (+ a zero background column) and the class-agnostic ``fc_reg``.
"""
from __future__ import annotations

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
    weights = torch.zeros(k, n_out, length, dtype=torch.float32, device=start.device)
    if g_max == 0:
        return weights, grid
    p = torch.arange(n_out, dtype=torch.float32, device=start.device)[None, :, None]
    i = torch.arange(g_max, dtype=torch.float32, device=start.device)[None, None, :]
    s = start[:, None, None] + p * bin_size[:, None, None] + (i + 0.5) * bin_size[:, None, None] / \
        grid.clamp(min=1)[:, None, None].to(torch.float32)
    samples = torch.arange(g_max, device=start.device)[None, None, :]
    valid = (samples < grid[:, None, None]) & (s >= -1.0) & (s <= length)
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
    sample outside ``[-1, H] × [-1, W]`` contributes 0, as in mmcv), evaluated on the RoI's window,
    with a backward that accumulates into one map gradient (autograd through per-RoI slices would
    allocate a full-map gradient per RoI).
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
    if rois.shape[0] == 0:
        return feat.new_zeros((0, c, output_size, output_size))
    y0, y9 = _extent(wy)
    x0, x9 = _extent(wx)
    windows = list(zip(rois[:, 0].long().tolist(), y0, y9, x0, x9))
    return _SeparableRoIAlign.apply(feat, wy, wx, windows)


def _extent(weights):
    """Per RoI, ``[first, last + 1)`` of the map rows (or columns) with a non-zero tap (lists of ints)."""
    used = weights.abs().sum(1) > 0                                                         # (K, L)
    idx = torch.arange(used.shape[1], device=used.device)
    first = torch.where(used, idx, used.shape[1]).min(1).values
    last = torch.where(used, idx, -1).max(1).values
    return first.tolist(), (last + 1).tolist()


class _SeparableRoIAlign(torch.autograd.Function):
    """``out[k] = A_y[k] · F[b_k] · A_x[k]ᵀ`` on each RoI's window; the backward accumulates
    ``A_y[k]ᵀ · dout[k] · A_x[k]`` into one map gradient (no full-map tensor per RoI)."""

    @staticmethod
    def forward(ctx, feat, wy, wx, windows):
        n_out, c = wy.shape[1], feat.shape[1]
        out = feat.new_zeros((len(windows), c, n_out, wx.shape[1]))
        for k, (b, y0, y9, x0, x9) in enumerate(windows):
            if y9 > y0 and x9 > x0:
                out[k] = torch.matmul(torch.matmul(wy[k, :, y0:y9], feat[b, :, y0:y9, x0:x9]), wx[k, :, x0:x9].t())
        ctx.save_for_backward(wy, wx)
        ctx.windows, ctx.feat_shape = windows, feat.shape
        return out

    @staticmethod
    def backward(ctx, grad_out):
        wy, wx = ctx.saved_tensors
        grad = grad_out.new_zeros(ctx.feat_shape)
        for k, (b, y0, y9, x0, x9) in enumerate(ctx.windows):
            if y9 > y0 and x9 > x0:
                window = torch.matmul(torch.matmul(wy[k, :, y0:y9].t(), grad_out[k]), wx[k, :, x0:x9])
                grad[b, :, y0:y9, x0:x9] += window
        return grad, None, None, None


def map_roi_levels(rois: torch.Tensor, num_levels: int, finest_scale: int = 56) -> torch.Tensor:
    """mmdet ``SingleRoIExtractor.map_roi_levels``: ``floor(log2(sqrt(w·h) / 56 + 1e-6))`` clamped."""
    scale = torch.sqrt((rois[:, 3] - rois[:, 1]) * (rois[:, 4] - rois[:, 2]))
    return torch.floor(torch.log2(scale / finest_scale + 1e-6)).clamp(0, num_levels - 1).long()


def multilevel_roi_align(feats, rois, strides, output_size: int) -> torch.Tensor:
    """mmdet ``SingleRoIExtractor``: each RoI pooled from the level of its size."""
    levels = map_roi_levels(rois, len(feats))
    out = feats[0].new_zeros((rois.shape[0], feats[0].shape[1], output_size, output_size))
    for lvl, (feat, stride) in enumerate(zip(feats, strides)):
        idx = torch.nonzero(levels == lvl).flatten()
        if idx.numel():
            out = out.index_copy(0, idx, roi_align(feat, rois[idx], output_size, 1.0 / stride))
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
        p = p * torch.cat([torch.as_tensor(calibration, dtype=p.dtype, device=p.device), p.new_ones(1)])[None]
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


# ----------------------------------------------------------------------------- losses (mmdet 2.18 semantics)
def bbox_overlaps_aligned(b1, b2, eps: float = 1e-6):
    lt, rb = torch.maximum(b1[:, :2], b2[:, :2]), torch.minimum(b1[:, 2:], b2[:, 2:])
    wh = (rb - lt).clamp(min=0)
    overlap = wh[:, 0] * wh[:, 1]
    area1 = (b1[:, 2] - b1[:, 0]) * (b1[:, 3] - b1[:, 1])
    area2 = (b2[:, 2] - b2[:, 0]) * (b2[:, 3] - b2[:, 1])
    return overlap / (area1 + area2 - overlap).clamp(min=eps)


def tblr2bboxes(priors, tblr):
    """mmdet ``tblr2bboxes`` (normalizer 1, normalised by the prior size, no clipping)."""
    cx, cy = (priors[:, 0] + priors[:, 2]) / 2, (priors[:, 1] + priors[:, 3]) / 2
    w, h = priors[:, 2] - priors[:, 0], priors[:, 3] - priors[:, 1]
    loc = tblr * torch.stack([h, h, w, w], dim=1)
    return torch.stack([cx - loc[:, 2], cy - loc[:, 0], cx + loc[:, 3], cy + loc[:, 1]], dim=1)


def sigmoid_bce(x, y):
    return torch.clamp(x, min=0) - x * y + torch.log1p(torch.exp(-x.abs()))


# ----------------------------------------------------------------------------- stage 1: the CLN
class ResNetBottleneck(nn.Module):
    """torchvision Bottleneck (stride on the 3×3 conv)."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = None
        if stride != 1 or inplanes != planes * 4:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(planes * 4))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    """torchvision/mmdet ResNet (style pytorch) → C2..C5; ``frozen_stages`` and ``norm_eval`` as mmdet."""

    def __init__(self, stage_blocks=(3, 4, 6, 3), base: int = 64, frozen_stages: int = -1, norm_eval: bool = False):
        super().__init__()
        self.frozen_stages, self.norm_eval = frozen_stages, norm_eval
        self.conv1 = nn.Conv2d(3, base, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(base)
        inplanes = base
        for i, n in enumerate(stage_blocks):
            planes = base * 2 ** i
            blocks = [ResNetBottleneck(inplanes, planes, 1 if i == 0 else 2)]
            inplanes = planes * 4
            blocks += [ResNetBottleneck(inplanes, planes) for _ in range(1, n)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        frozen = [self.conv1, self.bn1] + [getattr(self, f"layer{i}") for i in range(1, frozen_stages + 1)]
        for m in (frozen if frozen_stages >= 0 else []):
            for p in m.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and (self.norm_eval or self.frozen_stages >= 0):  # mmdet: frozen stages and norm_eval BNs in eval
            frozen = [self.bn1] + [getattr(self, f"layer{i}") for i in range(1, self.frozen_stages + 1)]
            for m in (self.modules() if self.norm_eval else [mm for f in frozen for mm in f.modules()]):
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        outs = []
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
            outs.append(x)
        return outs


class ConvModule(nn.Module):
    def __init__(self, cin: int, cout: int, k: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, padding=k // 2)

    def forward(self, x):
        return self.conv(x)


class FPN(nn.Module):
    """mmdet FPN (no extra convs): P2..P5 and P6 = max_pool(P5, 1, stride 2)."""

    def __init__(self, in_channels, out_channels: int, num_outs: int = 5):
        super().__init__()
        self.num_outs = num_outs
        self.lateral_convs = nn.ModuleList([ConvModule(c, out_channels, 1) for c in in_channels])
        self.fpn_convs = nn.ModuleList([ConvModule(out_channels, out_channels, 3) for _ in in_channels])

    def forward(self, inputs):
        lat = [conv(x) for conv, x in zip(self.lateral_convs, inputs)]
        for i in range(len(lat) - 1, 0, -1):
            lat[i - 1] = lat[i - 1] + F.interpolate(lat[i], size=lat[i - 1].shape[-2:], mode="nearest")
        outs = [conv(x) for conv, x in zip(self.fpn_convs, lat)]
        while len(outs) < self.num_outs:
            outs.append(F.max_pool2d(outs[-1], 1, stride=2))
        return outs


class OlnRPNHead(nn.Module):
    def __init__(self, in_channels: int, feat_channels: int):
        super().__init__()
        self.rpn_conv = nn.Conv2d(in_channels, feat_channels, 3, padding=1)
        self.rpn_cls = nn.Conv2d(feat_channels, 1, 1)
        self.rpn_reg = nn.Conv2d(feat_channels, 4, 1)
        self.rpn_obj = nn.Conv2d(feat_channels, 1, 1)

    def forward(self, feats):
        outs = []
        for x in feats:
            x = F.normalize(F.relu(self.rpn_conv(x)), dim=1)
            outs.append((self.rpn_cls(x), self.rpn_reg(x), self.rpn_obj(x)))
        return outs

    @staticmethod
    def losses(outs, t: dict) -> dict:
        """OLN-RPN losses per level from fixed anchor targets ``t`` (:func:`capture_stage1_targets`)."""
        avg, anchors = float(t["num_total_samples"]), t["anchors"]
        losses = dict(loss_rpn_cls=[], loss_rpn_bbox=[], loss_rpn_obj=[])
        start = 0
        for (cls, reg, obj), size in zip(outs, t["level_sizes"]):
            sl = slice(start, start + size)
            start += size
            b = cls.shape[0]
            flat = lambda p, c: p.permute(0, 2, 3, 1).reshape(b, -1, c)  # noqa: E731
            labels, lw = t["labels"][:, sl].reshape(-1), t["label_weights"][:, sl].reshape(-1)
            x = flat(cls, 1).reshape(-1)
            losses["loss_rpn_cls"].append(0.0 * (sigmoid_bce(x, (labels == 0).float()) * lw).sum() / avg)
            boxes = tblr2bboxes(anchors[sl].repeat(b, 1), flat(reg, 4).reshape(-1, 4))
            iou = bbox_overlaps_aligned(boxes, t["bbox_targets"][:, sl].reshape(-1, 4)).clamp(min=1e-6)
            bw = t["bbox_weights"][:, sl].reshape(-1, 4).mean(-1)
            losses["loss_rpn_bbox"].append(10.0 * ((1 - iou) * bw).sum() / avg)
            o = torch.sigmoid(flat(obj, 1).reshape(-1))
            losses["loss_rpn_obj"].append(((o - t["objectness_targets"][:, sl].reshape(-1)).abs()
                                           * t["objectness_weights"][:, sl].reshape(-1)).sum() / avg)
        return losses


class Shared2FCBBoxScoreHead(nn.Module):
    def __init__(self, in_channels: int, fc_out_channels: int, roi_feat_size: int = 7):
        super().__init__()
        self.shared_fcs = nn.ModuleList([nn.Linear(in_channels * roi_feat_size ** 2, fc_out_channels),
                                         nn.Linear(fc_out_channels, fc_out_channels)])
        self.fc_cls = nn.Linear(fc_out_channels, 2)
        self.fc_reg = nn.Linear(fc_out_channels, 4)
        self.fc_bbox_score = nn.Linear(fc_out_channels, 1)

    def forward(self, x):
        x = x.flatten(1)
        for fc in self.shared_fcs:
            x = F.relu(fc(x))
        return self.fc_cls(x), self.fc_reg(x), self.fc_bbox_score(x)

    @staticmethod
    def losses(cls_score, bbox_pred, bbox_score, t: dict) -> dict:
        labels, lw, bt, bw, st, sw = (t[k] for k in ("labels", "label_weights", "bbox_targets", "bbox_weights",
                                                     "score_targets", "score_weights"))
        n = cls_score.shape[0]
        avg = max(float((lw > 0).sum()), 1.0)
        ce = F.cross_entropy(cls_score, labels, reduction="none")
        pos = ((labels >= 0) & (labels < 1)).float()[:, None]
        return dict(loss_cls=(ce * lw).sum() / avg,
                    loss_bbox=((bbox_pred - bt).abs() * bw * pos).sum() / n,
                    loss_bbox_score=((torch.sigmoid(bbox_score.reshape(-1)) - st).abs() * sw).sum() / n)


class _RoIHeadCLN(nn.Module):
    def __init__(self, in_channels: int, fc_out_channels: int):
        super().__init__()
        self.bbox_head = Shared2FCBBoxScoreHead(in_channels, fc_out_channels)


class CLN(nn.Module):
    """Stage 1 (class-agnostic localisation network): ResNet-50 + FPN + OLN-RPN + OLN RoI head.
    :meth:`losses` takes the anchor and RoI targets of our assigners/samplers (one draw, fixed)."""

    strides = (4, 8, 16, 32)

    def __init__(self, base: int = 64, fpn: int = 256, fc: int = 1024, stage_blocks=(3, 4, 6, 3),
                 frozen_stages: int = -1, norm_eval: bool = False):
        super().__init__()
        self.backbone = ResNet(stage_blocks, base, frozen_stages, norm_eval)
        self.neck = FPN([base * 4 * 2 ** i for i in range(4)], fpn)
        self.rpn_head = OlnRPNHead(fpn, fpn)
        self.roi_head = _RoIHeadCLN(fpn, fc)

    def losses(self, img, targets: dict) -> dict:
        feats = self.neck(self.backbone(img))
        losses = OlnRPNHead.losses(self.rpn_head(feats), targets["rpn"])
        rois = targets["rcnn"]["rois"]
        roi_feats = multilevel_roi_align(feats[:4], rois, self.strides, 7)
        losses.update(Shared2FCBBoxScoreHead.losses(*self.roi_head.bbox_head(roi_feats), targets["rcnn"]))
        return losses


# ----------------------------------------------------------------------------- stage 2 training: partitioned head
class PartitionedCLIPHead(nn.Module):
    """``BBoxHeadCLIPPartitioned`` forward and loss with fixed sampled class masks."""

    def __init__(self, embeddings: list, in_channels: int, roi_feat_size: int = 7):
        super().__init__()
        dim = embeddings[0].shape[1]
        self.attnpool = AttentionPool2d(roi_feat_size, in_channels, max(in_channels // 64, 1), dim)
        self.fc_reg = nn.Linear(dim, 4)
        self.classes = [e.shape[0] for e in embeddings]
        for i, e in enumerate(embeddings):
            zs = np.concatenate([e.T, np.zeros((dim, 1), np.float32)], 1)
            self.register_buffer(f"zs_weights_{i}", torch.from_numpy(np.ascontiguousarray(zs, np.float32)))

    def forward(self, x):
        f = self.attnpool(x)
        logits = [LOGIT_SCALE * F.normalize(f, dim=1) @ F.normalize(getattr(self, f"zs_weights_{d}"), dim=0)
                  for d in range(len(self.classes))]
        return logits, self.fc_reg(f)

    def losses(self, logits, deltas, t: dict, num_classes: int) -> dict:
        labels, per_image = t["labels"], []
        for (start, stop), d, mask in zip(t["image_rows"], t["dataset_ids"], t["class_masks"]):
            c, lab = self.classes[d], labels[start:stop]
            target = F.one_hot(lab.clamp(max=num_classes), num_classes + 1)[:, :c].float()
            target = target * (lab != num_classes).float()[:, None]
            loss = sigmoid_bce(logits[d][start:stop, :c], target) * mask[None]
            per_image.append(loss.sum() / (stop - start))
        pos = ((labels >= 0) & (labels < num_classes)).float()[:, None]
        return dict(loss_cls=sum(per_image) / len(per_image),
                    loss_bbox=((deltas - t["bbox_targets"]).abs() * t["bbox_weights"] * pos).sum() / labels.shape[0])


class _RoIHeadCLIPTrain(nn.Module):
    def __init__(self, embeddings, layers, width, roi_feat_size: int = 7):
        super().__init__()
        self.shared_head = SharedHead(layers, width)
        self.bbox_head = PartitionedCLIPHead(embeddings, width * 32, roi_feat_size)


class Stage2Train(nn.Module):
    """Stage-2 training network (CLIP ResNet C4, RoIAlign ``roi_size`` (official 14), layer4 (stride 2),
    partitioned CLIP head with a ``roi_size / 2`` attention pool). ``frozen_stages`` (stem = 0,
    ``layer1`` = 1) get no gradients, nor does layer4 with ``frozen_layer4`` (the synthetic stage 2); ``norm_eval``:
    every BatchNorm uses its running statistics in training (the official stage 2), else batch statistics."""

    def __init__(self, embeddings: list, num_classes: int, layers=(1, 1, 1, 1), width: int = 16,
                 frozen_stages: int = -1, norm_eval: bool = False, roi_size: int = 14, frozen_layer4: bool = False):
        super().__init__()
        self.num_classes, self.norm_eval, self.roi_size = num_classes, norm_eval, roi_size
        self.backbone = ModifiedResNetC4(layers, width)
        self.roi_head = _RoIHeadCLIPTrain(embeddings, layers, width, roi_size // 2)
        b = self.backbone
        frozen = [b.conv1, b.bn1, b.conv2, b.bn2, b.conv3, b.bn3] if frozen_stages >= 0 else []
        frozen += [getattr(b, f"layer{i}") for i in range(1, frozen_stages + 1)]
        frozen += [self.roi_head.shared_head] if frozen_layer4 else []
        for m in frozen:
            for p in m.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self

    def losses(self, img, targets: dict) -> dict:
        c4 = self.backbone(img)
        feats = self.roi_head.shared_head(roi_align(c4, targets["rois"], self.roi_size, 1 / 16))
        logits, deltas = self.roi_head.bbox_head(feats)
        return self.roi_head.bbox_head.losses(logits, deltas, targets, self.num_classes)


def total_loss(losses: dict):
    """mmdet ``_parse_losses``: sum of the entries named ``loss*`` (lists summed)."""
    return sum(sum(v) if isinstance(v, list) else v for k, v in losses.items() if "loss" in k)
