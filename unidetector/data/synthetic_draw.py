"""Drawing the synthetic world: cluttered backgrounds and pattern-colour-shape objects.

An object is a shape mask (``SHAPES``) filled with a pattern (``PATTERNS``) of its colour (``COLOURS``)
and a dark shade of that colour (40 % brightness), so that the hue identifies the colour at any size and
the pattern is drawn at a scale relative to the object (stripe period, dot spacing and check size are
fractions of its size): a 20-px and a 200-px "striped red star" look alike up to resolution. ``hollow``
keeps only a band along the outline (the background shows inside).
"""
from __future__ import annotations

import math

import cv2
import numpy as np

SHAPES = ("circle", "square", "triangle", "star", "hexagon", "cross", "diamond", "crescent")
COLOURS = {  # RGB
    "red": (220, 35, 35), "orange": (250, 140, 25), "yellow": (240, 215, 35), "green": (35, 175, 55),
    "cyan": (30, 195, 215), "blue": (40, 80, 225), "purple": (150, 55, 195), "pink": (250, 120, 190),
}
PATTERNS = ("plain", "striped", "dotted", "checkered", "hollow")
DARK = 0.4  # brightness of the pattern's second tone


def background(rng, h: int, w: int) -> np.ndarray:
    """``(h, w, 3)`` float32 RGB: a grey base with stripes, muted blobs and lines, and noise."""
    base = rng.uniform(70, 190)
    img = np.empty((h, w, 3), np.float32)
    img[:] = base + rng.uniform(-15, 15, size=3)
    if rng.random() < 0.7:
        theta = rng.uniform(0, np.pi)
        period = rng.uniform(8, 48)
        yy, xx = np.mgrid[0:h, 0:w]
        phase = (xx * np.cos(theta) + yy * np.sin(theta)) * (2 * np.pi / period)
        img += (rng.uniform(8, 25) * np.sin(phase))[..., None] * (1 + rng.uniform(-0.2, 0.2, size=3))
    for _ in range(int(rng.integers(3, 10))):
        grey = rng.uniform(40, 220)
        colour = tuple(float(np.clip(grey + v, 0, 255)) for v in rng.uniform(-25, 25, size=3))
        if rng.random() < 0.6:
            centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            axes = (int(rng.integers(4, max(5, w // 3))), int(rng.integers(4, max(5, h // 3))))
            cv2.ellipse(img, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1)
        else:
            p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            p2 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            cv2.line(img, p1, p2, colour, int(rng.integers(1, 5)))
    img += rng.normal(0, rng.uniform(5, 18), size=img.shape).astype(np.float32)
    return img


def _polygon(shape: str, r: float) -> list:
    """Vertices of a polygonal shape of radius ``r`` around the origin (unrotated)."""
    if shape == "square":
        q = 0.72 * r
        return [(-q, -q), (q, -q), (q, q), (-q, q)]
    if shape == "triangle":
        return [(r * math.cos(a), r * math.sin(a)) for a in np.arange(3) * 2 * math.pi / 3 - math.pi / 2]
    if shape == "hexagon":
        return [(r * math.cos(a), r * math.sin(a)) for a in np.arange(6) * math.pi / 3]
    if shape == "star":
        return [((r if k % 2 == 0 else 0.42 * r) * math.cos(a), (r if k % 2 == 0 else 0.42 * r) * math.sin(a))
                for k, a in enumerate(np.arange(10) * math.pi / 5 - math.pi / 2)]
    if shape == "diamond":
        return [(0, -r), (0.58 * r, 0), (0, r), (-0.58 * r, 0)]
    if shape == "cross":
        t = 0.33 * r
        return [(-t, -r), (t, -r), (t, -t), (r, -t), (r, t), (t, t), (t, r), (-t, r), (-t, t), (-r, t), (-r, -t),
                (-t, -t)]
    raise ValueError(shape)


def shape_mask(shape: str, size: float, theta: float) -> np.ndarray:
    """``(n, n)`` bool mask of a shape of diameter ``size`` px rotated by ``theta``, centred in the patch."""
    n = int(math.ceil(size)) + 4
    c = (n - 1) / 2.0
    r = size / 2.0
    mask = np.zeros((n, n), np.uint8)
    if shape in ("circle", "crescent"):
        cv2.circle(mask, (int(round(c)), int(round(c))), max(2, int(round(r))), 1, -1)
        if shape == "crescent":
            off = 0.45 * r
            bite = np.zeros_like(mask)
            cv2.circle(bite, (int(round(c + off * math.cos(theta))), int(round(c + off * math.sin(theta)))),
                       max(2, int(round(0.8 * r))), 1, -1)
            mask &= 1 - bite
    else:
        cs, sn = math.cos(theta), math.sin(theta)
        pts = np.array([(c + x * cs - y * sn, c + x * sn + y * cs) for x, y in _polygon(shape, r)])
        cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
    return mask.astype(bool)


def pattern_tone(pattern: str, n: int, size: float, theta: float) -> np.ndarray:
    """``(n, n)`` float32 in {0, 1}: 1 where the object shows its colour, 0 its dark shade."""
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) - (n - 1) / 2.0
    u = xx * math.cos(theta) + yy * math.sin(theta)
    v = -xx * math.sin(theta) + yy * math.cos(theta)
    if pattern in ("plain", "hollow"):
        return np.ones((n, n), np.float32)
    if pattern == "striped":
        period = max(4.0, size / 4.0)
        return (np.mod(u, period) < period / 2).astype(np.float32)
    if pattern == "checkered":
        cell = max(2.5, size / 5.0)
        return ((np.floor(u / cell) + np.floor(v / cell)) % 2 == 0).astype(np.float32)
    if pattern == "dotted":
        period = max(4.0, size / 4.0)
        du = np.mod(u, period) - period / 2
        dv = np.mod(v, period) - period / 2
        return (du * du + dv * dv > (0.3 * period) ** 2).astype(np.float32)
    raise ValueError(pattern)


def draw_object(img: np.ndarray, rng, shape: str, colour, pattern: str, cx: float, cy: float, size: float) -> list:
    """Draw one object into ``img`` (float32 RGB, in place); returns its tight box ``[x1, y1, x2, y2]`` in
    pixel-edge coordinates (clipped to the image), or None when nothing of it is inside the image."""
    theta = float(rng.uniform(0, 2 * math.pi))
    mask = shape_mask(shape, size, theta)
    n = mask.shape[0]
    if pattern == "hollow":
        band = max(2, int(round(0.16 * size)))
        inner = cv2.erode(mask.astype(np.uint8), np.ones((2 * band + 1, 2 * band + 1), np.uint8))
        mask &= ~inner.astype(bool)
    tone = pattern_tone(pattern, n, size, theta)
    col = np.float32([np.clip(v + rng.uniform(-18, 18), 0, 255) for v in colour])
    x0, y0 = int(round(cx - (n - 1) / 2.0)), int(round(cy - (n - 1) / 2.0))
    h, w = img.shape[:2]
    xs, ys = slice(max(0, x0), min(w, x0 + n)), slice(max(0, y0), min(h, y0 + n))
    if xs.stop <= xs.start or ys.stop <= ys.start:
        return None
    sub = (slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0))
    m = mask[sub]
    if not m.any():
        return None
    t = tone[sub][m][:, None]
    img[ys, xs][m] = t * col + (1 - t) * (DARK * col)
    rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
    x0, y0 = xs.start, ys.start
    return [x0 + int(cols[0]), y0 + int(rows[0]), x0 + int(cols[-1]) + 1, y0 + int(rows[-1]) + 1]


def layout(rng, h: int, w: int, n: int, min_size: float, max_frac: float) -> list:
    """Centres and sizes ``(cx, cy, size)`` of up to ``n`` objects, largest first (log-uniform sizes from
    ``min_size`` to ``max_frac`` of the short side), each covering at most half of any earlier box."""
    short = min(h, w)
    sizes = np.sort(np.exp(rng.uniform(math.log(min_size), math.log(max_frac * short), size=n)))[::-1]
    placed = []
    for s in sizes:
        for _ in range(30):
            cx = rng.uniform(s / 2 + 1, w - s / 2 - 1)
            cy = rng.uniform(s / 2 + 1, h - s / 2 - 1)
            box = (cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2)
            if all(_overlap(box, other) <= 0.5 for other in placed):
                placed.append(box)
                break
    return [((b[0] + b[2]) / 2, (b[1] + b[3]) / 2, b[2] - b[0]) for b in placed]


def _overlap(box, other) -> float:
    """Fraction of ``other``'s area covered by ``box``."""
    iw = min(box[2], other[2]) - max(box[0], other[0])
    ih = min(box[3], other[3]) - max(box[1], other[1])
    return 0.0 if iw <= 0 or ih <= 0 else iw * ih / ((other[2] - other[0]) * (other[3] - other[1]))
