"""Drawing: boxes with names and scores, image grids, grouped bar charts (cv2/Pillow, no matplotlib).

Images are ``(H, W, 3) uint8`` RGB arrays throughout; :func:`save_rgb` writes PNG/JPEG.
"""
from __future__ import annotations

import colorsys

import cv2
import numpy as np


def class_color(index: int) -> tuple:
    """A saturated RGB colour per class index (golden-ratio hue steps: neighbours differ)."""
    h = (index * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_detections(img: np.ndarray, boxes, texts, colors=None, thickness: int = 2,
                    highlight=None) -> np.ndarray:
    """Draw boxes ``(n, 4)`` x1y1x2y2 (pixels) with a label text each on a copy of ``img``.

    Labels sit on a filled box of the box colour with black or white text, whichever reads better.
    ``highlight``: indices drawn thicker with a dashed white outline (e.g. novel classes).
    """
    out = np.ascontiguousarray(img.copy())
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    colors = colors or [class_color(i) for i in range(len(boxes))]
    highlight = set(highlight or ())
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.4
    for i, (box, text) in enumerate(zip(boxes, texts)):
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        color = tuple(int(c) for c in colors[i])
        t = thickness + (1 if i in highlight else 0)
        cv2.rectangle(out, (x1, y1), (x2, y2), color, t)
        if i in highlight:
            for x in range(x1, x2, 8):
                cv2.line(out, (x, y1), (min(x + 4, x2), y1), (255, 255, 255), 1)
                cv2.line(out, (x, y2), (min(x + 4, x2), y2), (255, 255, 255), 1)
        (tw, th), base = cv2.getTextSize(text, font, scale, 1)
        ty = y1 - 2 if y1 - th - base - 2 >= 0 else y1 + th + base + 2
        cv2.rectangle(out, (x1, ty - th - base), (x1 + tw + 2, ty + 1), color, -1)
        luminance = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
        ink = (0, 0, 0) if luminance > 140 else (255, 255, 255)
        cv2.putText(out, text, (x1 + 1, ty - base + 1), font, scale, ink, 1, cv2.LINE_AA)
    return out


def image_grid(images, cell: int = 384, cols: int = 3, background: int = 255) -> np.ndarray:
    """Tile images (each scaled to fit ``cell``×``cell``) into a grid with ``cols`` columns."""
    if not images:
        raise ValueError("image_grid: no images")
    tiles = []
    for img in images:
        s = cell / max(img.shape[:2])
        img = cv2.resize(img, (max(1, int(img.shape[1] * s)), max(1, int(img.shape[0] * s))))
        tile = np.full((cell, cell, 3), background, np.uint8)
        tile[:img.shape[0], :img.shape[1]] = img
        tiles.append(tile)
    cols = min(cols, len(tiles))
    while len(tiles) % cols:
        tiles.append(np.full_like(tiles[0], background))
    return np.vstack([np.hstack(tiles[r:r + cols]) for r in range(0, len(tiles), cols)])


def bar_chart(groups: dict, title: str = "", width: int = 720, height: int = 360,
              y_max: float | None = None) -> np.ndarray:
    """Grouped bars: ``{group: {series: value}}`` → RGB image (series share colours across groups)."""
    from PIL import Image, ImageDraw

    series = list(dict.fromkeys(s for g in groups.values() for s in g))
    values = [v for g in groups.values() for v in g.values()]
    top = y_max or max([v for v in values if np.isfinite(v)] + [1e-6]) * 1.15
    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    left, right, up, down = 60, 20, 40, 50
    pw, ph = width - left - right, height - up - down
    d.text((left, 10), title, fill=(0, 0, 0))
    d.rectangle([left, up, left + pw, up + ph], outline=(0, 0, 0))
    for t in range(5):
        v = top * t / 4
        y = up + ph - ph * t / 4
        d.line([left - 4, y, left + pw, y], fill=(225, 225, 225) if t else (0, 0, 0))
        d.text((8, y - 6), f"{v:.3g}", fill=(0, 0, 0))
    gw = pw / max(1, len(groups))
    bw = gw * 0.8 / max(1, len(series))
    for gi, (gname, g) in enumerate(groups.items()):
        x0 = left + gi * gw + gw * 0.1
        for si, s in enumerate(series):
            v = g.get(s)
            if v is None or not np.isfinite(v):
                continue
            x = x0 + si * bw
            y = up + ph - ph * min(v, top) / top
            d.rectangle([x, y, x + bw - 2, up + ph], fill=class_color(si))
            d.text((x, y - 12), f"{v:.3f}", fill=(0, 0, 0))
        d.text((x0, up + ph + 8), str(gname), fill=(0, 0, 0))
    for si, s in enumerate(series):  # legend
        x = left + 10 + si * 170
        d.rectangle([x, height - 18, x + 10, height - 8], fill=class_color(si))
        d.text((x + 14, height - 20), str(s), fill=(0, 0, 0))
    return np.asarray(img)


def save_rgb(path, img: np.ndarray) -> None:
    """Write an RGB uint8 image (format from the extension); raises OSError when it cannot."""
    if not cv2.imwrite(str(path), cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write image {path}")
