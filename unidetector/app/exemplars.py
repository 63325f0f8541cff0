"""Image exemplars on the ``unidet serve`` page, without Gradio: a box marked on an image as a query.

The user clicks two opposite corners of a box on an image (:func:`next_corners`) or types ``x1, y1,
x2, y2`` (:func:`parse_box`), names the class and adds it. A page session keeps its exemplars as
records (:class:`ExemplarSet`: name, image, box; bounded in count); the pixels of their images live
once in the server's :class:`ImageStore` (bounded in pixels, shared by the sessions, least recently
used out). :func:`exemplar_query` turns the typed class names and the exemplars into the ``classes``
and ``exemplars`` arguments of :meth:`unidetector.api.Detector.detect` and says where each class
came from ("text", "exemplar" or "text + exemplar"): a name given both ways mixes its text and
exemplar embeddings (the API's rule, :meth:`~unidetector.api.Detector.vocabulary_embeddings`), and
names equal up to case and spacing are one class (:func:`unidetector.text.vocab.name_key`).

Boxes are ``(x1, y1, x2, y2)`` floats in the image's pixels, ``0 <= x1 < x2 <= width`` and
``0 <= y1 < y2 <= height`` (what :meth:`~unidetector.api.Detector.exemplar_embedding` accepts).
"""
from __future__ import annotations

import math
import re
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from .core import InputRejected

#: Where each class of a request came from (the result table's ``query`` column).
TEXT, EXEMPLAR, BOTH = "text", "exemplar", "text + exemplar"
EXEMPLAR_HEADERS = ["class", "image", "box (x1, y1, x2, y2)"]
MARK_COLOR = (255, 0, 200)


# ----------------------------------------------------------------------------------------- boxes
def format_box(box) -> str:
    """``'12, 30, 80.5, 95'`` (whole numbers without decimals, others to 0.1 pixel)."""
    return ", ".join(f"{v:g}" if float(v).is_integer() else f"{v:.1f}" for v in (float(v) for v in box))


def parse_box(text) -> tuple:
    """``(x1, y1, x2, y2)`` from ``'x1, y1, x2, y2'`` (commas and/or spaces); :class:`InputRejected` saying
    how to give one otherwise. Corners in any order are sorted (``'50, 60, 10, 20'`` is ``(10, 20, 50, 60)``)."""
    text = str(text or "").strip().strip("[]()")
    if not text:
        raise InputRejected("no box: click two opposite corners of the object on the image (or type x1, y1, x2, y2 "
                            "in pixels)")
    parts = [p for p in re.split(r"[,\s]+", text) if p]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise InputRejected(f"the box {shown!r} is not four numbers x1, y1, x2, y2 (pixels)")
    return box_from_corners(values[:2], values[2:])


def box_from_corners(p, q) -> tuple:
    """The box with opposite corners ``p = (x, y)`` and ``q``: ``(min x, min y, max x, max y)``."""
    (px, py), (qx, qy) = (float(v) for v in p), (float(v) for v in q)
    return min(px, qx), min(py, qy), max(px, qx), max(py, qy)


def check_box(box, width: int, height: int, image_name: str) -> tuple:
    """``box`` (sorted corners) if it is a box inside the ``width`` x ``height`` image, else
    :class:`InputRejected`: empty (no width or height) or (partly) outside the image."""
    x1, y1, x2, y2 = (float(v) for v in box)
    if x2 - x1 < 1 or y2 - y1 < 1:
        raise InputRejected(f"the box {format_box(box)} is empty ({x2 - x1:g} x {y2 - y1:g} pixels): click two "
                            "opposite corners of the object, at least a pixel apart in x and in y")
    if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
        raise InputRejected(f"the box {format_box(box)} is outside {image_name} ({width} x {height} pixels): x from "
                            f"0 to {width}, y from 0 to {height}")
    return x1, y1, x2, y2


def next_corners(corners, point) -> tuple:
    """A click at ``point = (x, y)``: ``(corners, box or None)``. The first click of a box is its first
    corner (no box yet); the second closes the box; a third starts a new box."""
    corners = list(corners or [])
    corners = corners + [tuple(point)] if len(corners) == 1 else [tuple(point)]
    return corners, (box_from_corners(*corners) if len(corners) == 2 else None)


def marked_image(rgb: np.ndarray, box=None, corner=None) -> np.ndarray:
    """A copy of ``rgb`` with the box being marked (``box``) or its first corner (``corner``: a cross)."""
    import cv2

    from ..visualize import draw_detections

    if box is not None:
        return draw_detections(rgb, [box], ["exemplar box"], colors=[MARK_COLOR], thickness=2)
    out = np.ascontiguousarray(rgb.copy())
    if corner is not None:
        x, y = (int(round(float(v))) for v in corner)
        arm = max(6, min(rgb.shape[:2]) // 40)
        cv2.line(out, (x - arm, y), (x + arm, y), MARK_COLOR, 2)
        cv2.line(out, (x, y - arm), (x, y + arm), MARK_COLOR, 2)
    return out


# ----------------------------------------------------------------------------------------- state
def image_digest(rgb: np.ndarray) -> str:
    """The key of an image's pixels (the one the detector caches its regions and exemplars by)."""
    from ..api import _image_hash

    return _image_hash(rgb)


class ImageStore:
    """The pixels of exemplar images, once per image (by :func:`image_digest`), at most ``max_pixels``
    in all (least recently used out; the newest image always stays)."""

    def __init__(self, max_pixels: int):
        self.max_pixels = int(max_pixels)
        self._images = OrderedDict()

    def put(self, rgb: np.ndarray) -> str:
        key = image_digest(rgb)
        self._images[key] = self._images.pop(key, rgb)
        while len(self._images) > 1 and sum(a.shape[0] * a.shape[1] for a in self._images.values()) > self.max_pixels:
            self._images.popitem(last=False)
        return key

    def get(self, key: str):
        """The image, or None when it was dropped (or never stored)."""
        if key in self._images:
            self._images.move_to_end(key)
        return self._images.get(key)

    def __len__(self) -> int:
        return len(self._images)


@dataclass(frozen=True)
class Exemplar:
    """One exemplar: a class ``name``, the display name and ``digest`` of its image, the box in its pixels."""

    name: str
    image_name: str
    digest: str
    box: tuple


class ExemplarSet:
    """The exemplars of one page session (at most ``max_exemplars``), in the order added."""

    def __init__(self, max_exemplars: int = 16):
        self.max_exemplars = int(max_exemplars)
        self.items = []

    def __len__(self) -> int:
        return len(self.items)

    def add(self, name, digest: str, image_name: str, box, width: int, height: int,
            max_name_chars: int = 100) -> Exemplar:
        """Add the exemplar ``box`` on an image (``width`` x ``height`` pixels) as class ``name``;
        :class:`InputRejected` for a missing or too long name, a bad box (:func:`check_box`), the same
        exemplar twice or one over ``max_exemplars``. A name equal to an earlier one up to case and
        spacing takes its spelling (one class, exemplars averaged)."""
        from ..text.vocab import name_key

        name = " ".join(str(name or "").split())
        if not name:
            raise InputRejected("no class name: type the name of what the box shows (e.g. blue ring), then press "
                                "Add exemplar")
        if len(name) > max_name_chars:
            raise InputRejected(f"the class name is {len(name)} characters long; the limit is {max_name_chars}")
        box = check_box(box, width, height, image_name)
        name = next((e.name for e in self.items if name_key(e.name) == name_key(name)), name)
        ex = Exemplar(name, str(image_name), digest, tuple(round(v, 1) for v in box))
        if ex in self.items:
            raise InputRejected(f"{name}: this box on {image_name} is already an exemplar")
        if len(self.items) >= self.max_exemplars:
            raise InputRejected(f"{len(self.items)} exemplars is the most a page keeps; clear them to add others")
        self.items.append(ex)
        return ex

    def rows(self) -> list:
        """``[[class, image, "x1, y1, x2, y2"], ...]`` (:data:`EXEMPLAR_HEADERS`)."""
        return [[e.name, e.image_name, format_box(e.box)] for e in self.items]

    def records(self) -> list:
        """``[{"class_name", "image", "box"}, ...]`` for the JSON download."""
        return [{"class_name": e.name, "image": e.image_name, "box": list(e.box)} for e in self.items]


def exemplar_query(names, exemplars, store: ImageStore) -> tuple:
    """``(classes, {class: [(rgb, box), ...]}, {class: source})`` for
    :meth:`~unidetector.api.Detector.detect` from the typed or built-in class ``names`` and an
    :class:`ExemplarSet` (or None). An exemplar whose name is a typed one up to case and spacing takes
    the typed spelling (the API then mixes the two). Sources: :data:`TEXT`, :data:`EXEMPLAR`,
    :data:`BOTH`, classes in the detector's order (names, then exemplar-only classes).
    :class:`InputRejected` when an exemplar's image is no longer in ``store``."""
    from ..text.vocab import name_key

    names = list(names)
    spelling = {name_key(n): n for n in names}
    query = OrderedDict()
    for e in (exemplars.items if exemplars is not None else ()):
        rgb = store.get(e.digest)
        if rgb is None:
            raise InputRejected(f"the image of the exemplar {e.name!r} ({e.image_name}) is no longer kept by the "
                                f"server (it keeps {store.max_pixels / 1e6:g} megapixels of exemplar images); "
                                "clear the exemplars and add it again")
        query.setdefault(spelling.get(name_key(e.name), e.name), []).append((rgb, list(e.box)))
    sources = {n: (BOTH if n in query else TEXT) for n in names}
    sources.update({n: EXEMPLAR for n in query if n not in sources})
    return names, dict(query), sources
