"""Data pipeline transforms with mmdet 2.18 / mmcv 1.3 semantics (numpy + OpenCV, no Jittor).

Each transform is a callable ``results -> results`` registered in ``TRANSFORMS`` under its mmdet name,
so ``pipeline=[dict(type='LoadImageFromFile'), dict(type='Resize', img_scale=..., keep_ratio=True), ...]``
from an official config builds as it is (:class:`Compose`).

Conventions: images are loaded **BGR** like mmcv (the official configs' ``Normalize(to_rgb=True)`` then
gives an RGB network input); boxes are ``[x1, y1, x2, y2]`` without ``+1``; every key listed in
``results['bbox_fields']`` (``gt_bboxes``, ``gt_bboxes_ignore``, ``proposals``) follows Resize and
RandomFlip, and only its first four columns are geometry (a proposal score column is kept as it is).
The final ``Collect`` returns ``{'img': (3, H, W) float32, 'img_metas': dict, <keys>: arrays}``;
``img_metas`` has ``filename, ori_filename, ori_shape, img_shape, pad_shape, scale_factor`` (w, h, w, h),
``flip, flip_direction, img_norm_cfg, dataset_id``.
"""
from __future__ import annotations

import os.path as osp

import cv2
import numpy as np

from ..errors import UnidetError
from ..registry import TRANSFORMS, build
from .proposals import select_proposals

cv2.setNumThreads(0)


class ImageLoadError(UnidetError, IOError):
    """An image file is missing or cannot be decoded."""


def read_image(path: str, channel_order: str = "bgr") -> np.ndarray:
    """Read a colour image as uint8 (H, W, 3); raise :class:`ImageLoadError` naming the file."""
    if not osp.isfile(path):
        raise ImageLoadError(f"image file not found: {path}")
    buf = np.fromfile(path, dtype=np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    if img is None:
        raise ImageLoadError(f"cannot decode image (corrupt or not an image): {path}")
    if channel_order == "rgb":
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return img


class Compose:
    """Apply transforms in order; accepts config dicts (built from ``TRANSFORMS``) or callables.
    A transform returning ``None`` stops the pipeline and ``None`` is returned (mmdet)."""

    def __init__(self, transforms=()):
        self.transforms = []
        for i, t in enumerate(transforms or ()):
            if isinstance(t, dict):
                t = build(t, TRANSFORMS, key_path=f"pipeline[{i}]")
            elif not callable(t):
                raise TypeError(f"pipeline[{i}]: expected a dict or a callable, got {type(t).__name__}")
            self.transforms.append(t)

    def __call__(self, results):
        for t in self.transforms:
            results = t(results)
            if results is None:
                return None
        return results

    def __repr__(self):
        return "Compose(" + ", ".join(type(t).__name__ for t in self.transforms) + ")"


@TRANSFORMS.register_module()
class LoadImageFromFile:
    def __init__(self, to_float32=False, color_type="color", channel_order="bgr", file_client_args=None):
        if color_type != "color":
            raise ValueError(f"LoadImageFromFile: only color_type='color' is supported, got {color_type!r}")
        self.to_float32 = to_float32
        self.channel_order = channel_order

    def __call__(self, results):
        info = results["img_info"]
        prefix = results.get("img_prefix")
        filename = osp.join(prefix, info["filename"]) if prefix else info["filename"]
        img = read_image(filename, self.channel_order)
        if self.to_float32:
            img = img.astype(np.float32)
        results["filename"] = filename
        results["ori_filename"] = info["filename"]
        results["img"] = img
        results["img_shape"] = img.shape
        results["ori_shape"] = img.shape
        results["img_fields"] = ["img"]
        return results


@TRANSFORMS.register_module()
class LoadAnnotations:
    def __init__(self, with_bbox=True, with_label=True, with_mask=False, with_seg=False, poly2mask=True,
                 file_client_args=None, denorm_bbox=False):
        if with_mask or with_seg:
            raise ValueError("LoadAnnotations: masks and segmentation maps are not supported (detection only)")
        self.with_bbox = with_bbox
        self.with_label = with_label

    def __call__(self, results):
        ann = results["ann_info"]
        if self.with_bbox:
            results["gt_bboxes"] = ann["bboxes"].copy()
            results["bbox_fields"].append("gt_bboxes")
            if ann.get("bboxes_ignore") is not None:
                results["gt_bboxes_ignore"] = ann["bboxes_ignore"].copy()
                results["bbox_fields"].append("gt_bboxes_ignore")
        if self.with_label:
            results["gt_labels"] = ann["labels"].copy()
        return results


@TRANSFORMS.register_module()
class LoadProposals:
    """Official ``LoadProposals(num_max_proposals, load_score)`` (SPEC §3)."""

    def __init__(self, num_max_proposals=None, load_score=False):
        self.num_max_proposals = num_max_proposals
        self.load_score = load_score

    def __call__(self, results):
        if results.get("proposals") is None:
            raise KeyError("LoadProposals: this image has no proposals; set the dataset's proposal_file")
        results["proposals"] = select_proposals(results["proposals"], self.num_max_proposals, self.load_score)
        results["bbox_fields"].append("proposals")
        return results


def rescale_size(w: int, h: int, scale) -> tuple:
    """mmcv ``rescale_size`` with a (long, short) or scalar scale: returns ((new_w, new_h), factor)."""
    if isinstance(scale, (int, float)):
        factor = float(scale)
    else:
        long_edge, short_edge = max(scale), min(scale)
        factor = min(long_edge / max(h, w), short_edge / min(h, w))
    return (int(w * factor + 0.5), int(h * factor + 0.5)), factor


def _boxes_geometry(boxes: np.ndarray) -> np.ndarray:
    return boxes[:, :4] if boxes.ndim == 2 else boxes


@TRANSFORMS.register_module()
class Resize:
    """mmdet ``Resize``: ``multiscale_mode='range'`` draws the long side and the short side uniformly
    from the given scales (``randint`` inclusive); with ``keep_ratio`` the image is scaled by
    ``min(long / max(h, w), short / min(h, w))``. Boxes are scaled and clipped to the image."""

    def __init__(self, img_scale=None, multiscale_mode="range", ratio_range=None, keep_ratio=True,
                 bbox_clip_border=True, backend="cv2", override=False, interpolation="bilinear"):
        if img_scale is None:
            self.img_scale = None
        else:
            self.img_scale = img_scale if isinstance(img_scale, list) else [img_scale]
            self.img_scale = [tuple(s) for s in self.img_scale]
        if ratio_range is not None:
            raise ValueError("Resize: ratio_range is not supported")
        if multiscale_mode not in ("range", "value"):
            raise ValueError(f"Resize: multiscale_mode must be 'range' or 'value', got {multiscale_mode!r}")
        self.multiscale_mode = multiscale_mode
        self.keep_ratio = keep_ratio
        self.bbox_clip_border = bbox_clip_border
        self.interpolation = {"bilinear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST,
                              "bicubic": cv2.INTER_CUBIC, "area": cv2.INTER_AREA}[interpolation]

    def _random_scale(self):
        if len(self.img_scale) == 1:
            return self.img_scale[0]
        if self.multiscale_mode == "value":
            return self.img_scale[np.random.randint(len(self.img_scale))]
        longs = [max(s) for s in self.img_scale]
        shorts = [min(s) for s in self.img_scale]
        long_edge = np.random.randint(min(longs), max(longs) + 1)
        short_edge = np.random.randint(min(shorts), max(shorts) + 1)
        return (long_edge, short_edge)

    def __call__(self, results):
        if "scale" not in results:
            if self.img_scale is None:
                raise ValueError("Resize: no img_scale given and no results['scale']")
            results["scale"] = self._random_scale()
        img = results["img"]
        h, w = img.shape[:2]
        if self.keep_ratio:
            (new_w, new_h), _ = rescale_size(w, h, results["scale"])
        else:
            new_w, new_h = results["scale"]
        img = cv2.resize(img, (new_w, new_h), interpolation=self.interpolation)
        w_scale, h_scale = new_w / w, new_h / h
        scale_factor = np.array([w_scale, h_scale, w_scale, h_scale], dtype=np.float32)
        results["img"] = img
        results["img_shape"] = img.shape
        results["pad_shape"] = img.shape
        results["scale_factor"] = scale_factor
        results["keep_ratio"] = self.keep_ratio
        for key in results.get("bbox_fields", []):
            boxes = results[key].astype(np.float32).copy()
            boxes[:, :4] = boxes[:, :4] * scale_factor
            if self.bbox_clip_border:
                boxes[:, 0:4:2] = np.clip(boxes[:, 0:4:2], 0, img.shape[1])
                boxes[:, 1:4:2] = np.clip(boxes[:, 1:4:2], 0, img.shape[0])
            results[key] = boxes
        return results


def flip_boxes(boxes: np.ndarray, img_shape, direction="horizontal") -> np.ndarray:
    """Flip the first four columns of (n, >=4) boxes inside an image of shape (h, w, ...)."""
    out = boxes.copy()
    h, w = img_shape[:2]
    if direction == "horizontal":
        out[:, 0], out[:, 2] = w - boxes[:, 2], w - boxes[:, 0]
    elif direction == "vertical":
        out[:, 1], out[:, 3] = h - boxes[:, 3], h - boxes[:, 1]
    elif direction == "diagonal":
        out[:, 0], out[:, 2] = w - boxes[:, 2], w - boxes[:, 0]
        out[:, 1], out[:, 3] = h - boxes[:, 3], h - boxes[:, 1]
    else:
        raise ValueError(f"unknown flip direction {direction!r}")
    return out


@TRANSFORMS.register_module()
class RandomFlip:
    """mmdet ``RandomFlip(flip_ratio=0.5)``: flips the image and every bbox field."""

    def __init__(self, flip_ratio=None, direction="horizontal"):
        self.flip_ratio = flip_ratio
        self.direction = direction

    def __call__(self, results):
        if "flip" not in results:
            ratio = self.flip_ratio or 0.0
            cur = np.random.choice([self.direction, None], p=[ratio, 1 - ratio])
            results["flip"] = cur is not None
            results["flip_direction"] = cur
        if "flip_direction" not in results:
            results["flip_direction"] = self.direction
        if results["flip"]:
            d = results["flip_direction"]
            code = {"horizontal": 1, "vertical": 0, "diagonal": -1}[d]
            results["img"] = np.ascontiguousarray(cv2.flip(results["img"], code))
            for key in results.get("bbox_fields", []):
                results[key] = flip_boxes(results[key], results["img_shape"], d)
        return results


@TRANSFORMS.register_module()
class Normalize:
    """``(img - mean) / std`` in float32, after an optional BGR→RGB swap (mmcv ``imnormalize``)."""

    def __init__(self, mean, std, to_rgb=True):
        self.mean = np.array(mean, dtype=np.float32)
        self.std = np.array(std, dtype=np.float32)
        self.to_rgb = to_rgb

    def __call__(self, results):
        img = results["img"].astype(np.float32)  # a contiguous copy
        if self.to_rgb:  # a copy with the channels swapped (cv2: ~10x faster than numpy's strided copy)
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB) if img.ndim == 3 and img.shape[2] == 3 else \
                np.ascontiguousarray(img[..., ::-1])
        if img.ndim == 3 and img.shape[2] == len(self.mean):
            # row by row against the tiled mean / std: the same float32 operations as (img - mean) / std, ~10x
            # faster than numpy's broadcasting over a last axis of 3
            rows = img.reshape(img.shape[0], -1)
            np.subtract(rows, np.tile(self.mean, img.shape[1]), out=rows)
            np.divide(rows, np.tile(self.std, img.shape[1]), out=rows)
        else:
            img = (img - self.mean) / self.std
        results["img"] = img
        results["img_norm_cfg"] = dict(mean=self.mean, std=self.std, to_rgb=self.to_rgb)
        return results


@TRANSFORMS.register_module()
class Pad:
    """Pad bottom/right with ``pad_val`` to a fixed ``size`` or a multiple of ``size_divisor``."""

    def __init__(self, size=None, size_divisor=None, pad_to_square=False, pad_val=0):
        if (size is None) == (size_divisor is None):
            raise ValueError("Pad: give exactly one of size and size_divisor")
        self.size = size
        self.size_divisor = size_divisor
        self.pad_val = pad_val

    def __call__(self, results):
        img = results["img"]
        h, w = img.shape[:2]
        if self.size is not None:
            th, tw = self.size
        else:
            d = self.size_divisor
            th, tw = int(np.ceil(h / d)) * d, int(np.ceil(w / d)) * d
        if (th, tw) != (h, w):
            padded = np.full((th, tw) + img.shape[2:], self.pad_val, dtype=img.dtype)
            padded[:h, :w] = img
            img = padded
        results["img"] = img
        results["pad_shape"] = img.shape
        results["pad_fixed_size"] = self.size
        results["pad_size_divisor"] = self.size_divisor
        return results


_ARRAY_KEYS = {"gt_bboxes": np.float32, "gt_bboxes_ignore": np.float32, "proposals": np.float32,
               "gt_labels": np.int64}


@TRANSFORMS.register_module()
class DefaultFormatBundle:
    """Image HWC → CHW float32 (contiguous); boxes float32, labels int64. Missing pad info is filled."""

    def __call__(self, results):
        if "img" in results:
            img = results["img"]
            if img.ndim < 3:
                img = img[..., None]
            results["img"] = np.ascontiguousarray(img.transpose(2, 0, 1)).astype(np.float32, copy=False)
            results.setdefault("pad_shape", img.shape)
            results.setdefault("scale_factor", np.ones(4, dtype=np.float32))
            results.setdefault("img_norm_cfg", dict(mean=np.zeros(3, np.float32), std=np.ones(3, np.float32),
                                                    to_rgb=False))
        for key, dtype in _ARRAY_KEYS.items():
            if key in results:
                results[key] = np.asarray(results[key], dtype=dtype)
        return results


@TRANSFORMS.register_module()
class ImageToTensor:
    def __init__(self, keys=("img",)):
        self.keys = keys

    def __call__(self, results):
        for k in self.keys:
            img = results[k]
            if img.ndim < 3:
                img = img[..., None]
            results[k] = np.ascontiguousarray(img.transpose(2, 0, 1)).astype(np.float32, copy=False)
        return results


@TRANSFORMS.register_module()
class ToTensor:
    def __init__(self, keys=()):
        self.keys = keys

    def __call__(self, results):
        for k in self.keys:
            dtype = _ARRAY_KEYS.get(k)
            results[k] = np.asarray(results[k], dtype=dtype) if dtype else np.asarray(results[k])
        return results


@TRANSFORMS.register_module()
class ToDataContainer:
    """No-op kept for official configs (there is no DataContainer in this port)."""

    def __init__(self, fields=()):
        self.fields = fields

    def __call__(self, results):
        return results


DEFAULT_META_KEYS = ("filename", "ori_filename", "ori_shape", "img_shape", "pad_shape", "scale_factor", "flip",
                     "flip_direction", "img_norm_cfg", "dataset_id")


@TRANSFORMS.register_module()
class Collect:
    """Keep ``keys`` and gather ``meta_keys`` into ``img_metas`` (``dataset_id`` is always kept)."""

    def __init__(self, keys, meta_keys=DEFAULT_META_KEYS):
        self.keys = tuple(keys)
        self.meta_keys = tuple(meta_keys)
        if "dataset_id" not in self.meta_keys:
            self.meta_keys += ("dataset_id",)

    def __call__(self, results):
        meta = {k: results[k] for k in self.meta_keys if k in results}
        meta.setdefault("flip", False)
        meta.setdefault("dataset_id", 0)
        data = {"img_metas": meta}
        for k in self.keys:
            if k not in results:
                raise KeyError(f"Collect: key {k!r} is not in the results (available: {sorted(results)})")
            data[k] = results[k]
        return data


@TRANSFORMS.register_module()
class MultiScaleFlipAug:
    """Test-time wrapper. Only the single-scale, no-flip case (what every UniDetector config uses) is
    supported; it returns the inner pipeline's output unchanged (no per-augmentation lists)."""

    def __init__(self, transforms, img_scale=None, scale_factor=None, flip=False, flip_direction="horizontal"):
        scales = img_scale if isinstance(img_scale, list) else [img_scale]
        if flip or len(scales) != 1 or scale_factor is not None:
            raise ValueError("MultiScaleFlipAug: test-time augmentation (several scales or flip) is not supported")
        self.scale = tuple(scales[0]) if scales[0] is not None else None
        self.transforms = Compose(transforms)

    def __call__(self, results):
        results = dict(results)
        if self.scale is not None:
            results["scale"] = self.scale
        results["flip"] = False
        results["flip_direction"] = None
        return self.transforms(results)


def rescale_boxes_to_original(boxes: np.ndarray, img_meta: dict, clip: bool = True) -> np.ndarray:
    """Map (n, >=4) boxes from the network input back to the original image (undo flip, then
    divide by ``scale_factor``); extra columns (scores) are kept. ``rescale=True`` of mmdet tests."""
    out = np.array(boxes, dtype=np.float32, copy=True)
    if out.size == 0:
        return out
    if img_meta.get("flip"):
        out = flip_boxes(out, img_meta["img_shape"], img_meta.get("flip_direction") or "horizontal")
    out[:, :4] = out[:, :4] / np.asarray(img_meta["scale_factor"], dtype=np.float32)
    if clip:
        h, w = img_meta["ori_shape"][:2]
        out[:, 0:4:2] = np.clip(out[:, 0:4:2], 0, w)
        out[:, 1:4:2] = np.clip(out[:, 1:4:2], 0, h)
    return out
