"""Loss curves from ``work_dir/log.jsonl`` drawn with Pillow (no matplotlib needed).

One panel per key (default: every train key containing ``loss``, plus ``lr``), x = global iteration.
"""
from __future__ import annotations

import json
import math

from .errors import UnidetError

COLORS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
          (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


class LogFileError(UnidetError, ValueError):
    """A training log that cannot be read or drawn; the message names the file (and line)."""


def read_log(path) -> list:
    records = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise LogFileError(f"{path}:{n}: not a JSON line ({e}); expected the log.jsonl of a training "
                                   "work dir") from None
    return records


def _fmt(v: float) -> str:
    return f"{v:.3g}"


def plot_log(path, out, keys=None, width=900, panel_height=260) -> list:
    """Write a PNG of the curves of ``keys``; returns the keys drawn."""
    from PIL import Image, ImageDraw

    train = [r for r in read_log(path) if r.get("mode", "train") == "train"]
    if not train:
        raise LogFileError(f"{path}: no training records")
    if keys is None:
        keys = sorted({k for r in train for k in r if "loss" in k and k != "loss_scale"})
        keys = (["loss"] if "loss" in keys else []) + [k for k in keys if k != "loss"] + ["lr"]
    keys = [k for k in keys if any(k in r for r in train)]
    if not keys:
        raise ValueError(f"{path}: none of the requested keys are in the log")
    img = Image.new("RGB", (width, panel_height * len(keys)), "white")
    draw = ImageDraw.Draw(img)
    left, right, top, bottom = 70, 20, 25, 30
    for p, key in enumerate(keys):
        y0 = p * panel_height
        pts = [(r.get("global_iter", r.get("iter", i)), r[key]) for i, r in enumerate(train)
               if key in r and isinstance(r[key], (int, float)) and math.isfinite(r[key])]
        x_lo, x_hi = (min(x for x, _ in pts), max(x for x, _ in pts)) if pts else (0, 1)
        v_lo, v_hi = (min(v for _, v in pts), max(v for _, v in pts)) if pts else (0, 1)
        if x_hi == x_lo:
            x_hi = x_lo + 1
        if v_hi == v_lo:
            v_hi, v_lo = v_hi + abs(v_hi) * 0.05 + 1e-12, v_lo - abs(v_lo) * 0.05 - 1e-12
        pw, ph = width - left - right, panel_height - top - bottom
        draw.rectangle([left, y0 + top, left + pw, y0 + top + ph], outline=(0, 0, 0))
        draw.text((left, y0 + 5), key, fill=(0, 0, 0))
        for t in range(5):
            v = v_lo + (v_hi - v_lo) * t / 4
            y = y0 + top + ph - ph * t / 4
            draw.line([left - 4, y, left, y], fill=(0, 0, 0))
            draw.text((5, y - 6), _fmt(v), fill=(0, 0, 0))
            x = left + pw * t / 4
            draw.line([x, y0 + top + ph, x, y0 + top + ph + 4], fill=(0, 0, 0))
            draw.text((x - 10, y0 + top + ph + 8), _fmt(x_lo + (x_hi - x_lo) * t / 4), fill=(0, 0, 0))
        xy = [(left + pw * (x - x_lo) / (x_hi - x_lo), y0 + top + ph - ph * (v - v_lo) / (v_hi - v_lo))
              for x, v in pts]
        color = COLORS[p % len(COLORS)]
        if len(xy) > 1:
            draw.line(xy, fill=color, width=2)
        for x, y in xy if len(xy) <= 1 else []:
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=color)
    img.save(out, format="PNG")
    return keys
