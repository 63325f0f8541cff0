"""Drawing: boxes with names and scores on images (cv2: :func:`draw_detections`, :func:`image_grid`), and the
report figures with matplotlib (Agg, no display): :func:`ap_by_frequency_figure` (grouped bars with intervals)
and :func:`detections_figure` (one panel per image, novel classes marked).

Images are ``(H, W, 3) uint8`` RGB arrays throughout; :func:`save_rgb` writes PNG/JPEG.
"""
from __future__ import annotations

import colorsys

import cv2
import numpy as np

NOVEL_LEGEND = "novel class (never labelled in training)"
SEEN_LEGEND = "class labelled in training"


def class_color(index: int) -> tuple:
    """A saturated RGB colour per class index (golden-ratio hue steps: neighbours differ)."""
    h = (index * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def ink_color(color) -> tuple:
    """Black or white (RGB 0-255), whichever reads better on the background ``color`` (RGB 0-255)."""
    luminance = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
    return (0, 0, 0) if luminance > 140 else (255, 255, 255)


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
        cv2.putText(out, text, (x1 + 1, ty - base + 1), font, scale, ink_color(color), 1, cv2.LINE_AA)
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


def save_rgb(path, img: np.ndarray) -> None:
    """Write an RGB uint8 image (format from the extension); raises OSError when it cannot."""
    if not cv2.imwrite(str(path), cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write image {path}")


def new_figure(width_in: float, height_in: float, dpi: int = 120):
    """A matplotlib ``Figure`` on the Agg canvas (no pyplot, no display) with constrained layout."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def round_ticks(axis, nbins: int = 6, integer: bool = False) -> None:
    """Ticks at round numbers (1, 2, 2.5, 5 × 10^k steps) on a matplotlib axis (``ax.xaxis``/``ax.yaxis``)."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(nbins=nbins, steps=[1, 2, 2.5, 5, 10], integer=integer))


def ap_by_frequency_figure(runs: dict, intervals: dict | None, out_path, metrics=("AP", "APr", "APc", "APf"),
                           title: str = "LVIS-style AP by class frequency", dpi: int = 150):
    """Grouped bars of AP in % (one group per metric, one bar per run) with percentile intervals as error bars.

    ``runs``: ``{run name: {metric: value in [0, 1]}}`` (missing/NaN/negative values: no bar);
    ``intervals``: ``{run name: {metric: (low, high)}}`` in [0, 1], or ``None``. The legend sits below the axes.
    Writes ``out_path`` (PNG) and returns the figure.
    """
    from matplotlib.ticker import MultipleLocator

    names = list(runs)
    fig = new_figure(min(11.0, max(6.0, 2.0 + 0.5 * len(metrics) * max(1, len(names)))), 4.6, dpi)
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(names))
    cmap = _palette(len(names))
    top = 0.0
    for r, name in enumerate(names):
        x = np.arange(len(metrics)) - 0.4 + width * (r + 0.5)
        vals = np.array([_percent(runs[name].get(m)) for m in metrics])
        ok = np.isfinite(vals)
        bars = ax.bar(x[ok], vals[ok], width * 0.92, color=cmap[r], label=name, zorder=2)
        top = max([top, *vals[ok]])
        iv = (intervals or {}).get(name) or {}
        lo = np.array([_percent((iv.get(m) or (None, None))[0]) for m in metrics])
        hi = np.array([_percent((iv.get(m) or (None, None))[1]) for m in metrics])
        has = np.isfinite(lo) & np.isfinite(hi)
        if has.any():
            ax.errorbar(x[has], (lo[has] + hi[has]) / 2, yerr=(hi[has] - lo[has]) / 2, fmt="none", ecolor="black",
                        elinewidth=1.1, capsize=3, zorder=3)
            top = max([top, *hi[has]])
        for b, v, h in zip(bars, vals[ok], np.where(has, hi, vals)[ok]):
            ax.annotate(f"{v:.1f}", (b.get_x() + b.get_width() / 2, max(v, h)), xytext=(0, 2),
                        textcoords="offset points", ha="center", va="bottom", fontsize=7, zorder=4)
    ax.set_xticks(np.arange(len(metrics)), list(metrics))
    ax.set_xlim(-0.5, len(metrics) - 0.5)
    round_ticks(ax.yaxis)
    need = max(top, 1.0) * 1.12  # room for the value labels
    ticks = ax.yaxis.get_major_locator().tick_values(0, need)
    ax.set_ylim(0, min(float(ticks[ticks >= need][0]), max(need, 108.0)))  # ends on a tick, or just above 100 %
    ax.yaxis.set_minor_locator(MultipleLocator(_minor_step(ax)))
    ax.grid(axis="y", color="0.88", zorder=0)
    ax.set_axisbelow(True)
    ax.set_ylabel("AP (%)")
    ax.set_title(title, fontsize=11)
    if names:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=min(len(names), 2), frameon=False,
                  fontsize=9)
    fig.savefig(out_path)
    return fig


def detections_figure(tiles, out_path, cols: int = 3, dpi: int = 120, panel_in: float = 4.8, fontsize: float = 9):
    """Detections drawn on images with matplotlib, one panel per image.

    ``tiles``: ``[(rgb (H, W, 3) uint8, boxes (N, 4) x1y1x2y2 pixels, labels [N str], novel [N bool], title)]``.
    A box and its label get one colour per class (the label without a trailing score; colours repeat only
    beyond ~10 classes in one figure); labels sit on a filled
    background next to their box where they cover no other label; novel classes have dashed boxes and italic
    labels (legend below the panels). Writes ``out_path`` and returns the figure.
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    if not tiles:
        raise ValueError("detections_figure: no images")
    cols = max(1, min(cols, len(tiles)))
    rows = -(-len(tiles) // cols)
    fig = new_figure(panel_in * cols, panel_in * rows + 0.5, dpi)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    keys = list(dict.fromkeys(_class_key(label) for tile in tiles for label in tile[2]))
    colors = {k: np.array(class_color(i)) / 255 for i, k in enumerate(keys)}  # neighbours in order differ
    pending = []
    for ax, (img, boxes, labels, novel, title) in zip(axes, tiles):
        ax.imshow(img, interpolation="antialiased")
        ax.set_title(title, fontsize=fontsize + 1)
        ax.set_xticks([])
        ax.set_yticks([])
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        for box, label, is_novel in zip(boxes, labels, novel):
            color = colors[_class_key(label)]
            ax.add_patch(Rectangle(box[:2], box[2] - box[0], box[3] - box[1], fill=False, edgecolor=color,
                                   linewidth=2.4 if is_novel else 1.6, linestyle=(0, (4, 2)) if is_novel else "-"))
            pending.append((ax, box, label, bool(is_novel), color))
    for ax in axes[len(tiles):]:
        ax.set_axis_off()
    handles = [Line2D([], [], color="0.2", linewidth=1.6, label=SEEN_LEGEND),
               Line2D([], [], color="0.2", linewidth=2.4, linestyle=(0, (4, 2)), label=NOVEL_LEGEND)]
    fig.legend(handles=handles, loc="outside lower center", ncol=2, frameon=False, fontsize=fontsize + 1)
    fig.canvas.draw()  # fix the layout, then place the labels in pixels
    fig.set_layout_engine("none")
    renderer = fig.canvas.get_renderer()
    placed = {}
    for ax, box, label, is_novel, color in pending:
        _place_label(ax, box, label, is_novel, color, fontsize, renderer, placed.setdefault(ax, []))
    fig.savefig(out_path)
    return fig


def _place_label(ax, box, label, is_novel, color, fontsize, renderer, placed: list) -> None:
    """Put ``label`` at the first spot next to ``box`` (above, below, inside top, right-aligned variants) that
    stays in the axes and covers no label already placed; else at the spot that overlaps least."""
    x1, y1, x2, y2 = box
    spots = [(x1, y1, "left", "bottom"), (x1, y2, "left", "top"), (x1, y1, "left", "top"),
             (x2, y1, "right", "bottom"), (x2, y2, "right", "top"), (x2, y2, "right", "bottom")]
    frame = ax.get_window_extent(renderer)
    best = None
    for x, y, ha, va in spots:
        t = ax.text(x, y, label, ha=ha, va=va, fontsize=fontsize, fontstyle="italic" if is_novel else "normal",
                    color=np.array(ink_color(color * 255)) / 255, zorder=5, clip_on=False,
                    bbox=dict(boxstyle="square,pad=0.15", facecolor=color, edgecolor="none", alpha=0.9))
        ext = t.get_window_extent(renderer).expanded(1.0, 1.0).padded(fontsize * 0.15 * ax.figure.dpi / 72)
        cost = sum(_overlap(ext, p) for p in placed) + 10 * _outside(ext, frame)
        if best is None or cost < best[0]:
            if best is not None:
                best[1].remove()
            best = (cost, t, ext)
        else:
            t.remove()
        if cost == 0:
            break
    placed.append(best[2])


def _overlap(a, b) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return max(0.0, w) * max(0.0, h)


def _outside(a, frame) -> float:
    inside = _overlap(a, frame)
    return a.width * a.height - inside


def _class_key(label: str) -> str:
    """A label without a trailing score: ``"striped red star 0.87"`` → ``"striped red star"``."""
    head, _, tail = label.rpartition(" ")
    try:
        float(tail)
        return head or label
    except ValueError:
        return label


def _palette(n: int) -> list:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def _percent(v) -> float:
    return 100.0 * float(v) if v is not None and np.isfinite(v) and v >= 0 else float("nan")


def _minor_step(ax) -> float:
    ticks = ax.get_yticks()
    return float(ticks[1] - ticks[0]) / 2 if len(ticks) > 1 else 1.0
