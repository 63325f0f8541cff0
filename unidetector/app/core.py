"""What the ``unidet serve`` page does, without Gradio: models, uploads, vocabularies, one request.

* :func:`resolve_models`: the stage-2 and stage-1 checkpoints given, or those of an ``unidet
  experiment`` work dir (``WORK_DIR/work_dirs/stage2_partitioned/latest.pkl`` and
  ``WORK_DIR/work_dirs/stage1_cln/latest.pkl``); a clear :class:`ServeError` saying how to make them.
* :func:`find_world`: the synthetic world of that work dir (class names, test images as examples).
* :func:`read_upload`: an uploaded file as RGB pixels, refused with a one-line message
  (:class:`InputRejected`) when it is not where uploads land, over the byte or pixel limit, not an
  image, or corrupt. The user's file name is only ever shown, never used to build a path.
* :class:`VocabularyMenu`: typed class names (bounded in count and length) or a built-in list.
* :class:`DetectionService`: one request — detect (the :class:`~unidetector.api.Detector` re-scores
  its cached regions when only the classes change), filter by threshold and count, draw, table rows,
  COCO-style JSON file, and a line with the time of the network pass and of the re-scoring. Classes
  may also come from image exemplars (boxes marked on the page, :mod:`unidetector.app.exemplars`):
  :meth:`DetectionService.add_exemplar` checks one, :meth:`DetectionService.detect` uses them.

Bounded state: the detector's region cache (``cache_size`` images), the in-memory text embeddings
(:attr:`Limits.embedding_cache` vocabularies; typed vocabularies are never written to the on-disk
embedding cache, only the fixed built-in lists are), the JSON files (:attr:`Limits.result_files`),
the exemplars of a page (:attr:`Limits.max_exemplars`) and the pixels of exemplar images, shared by
all pages (:attr:`Limits.exemplar_pixels`; the detector keeps ``cache_size`` exemplar embeddings).
"""
from __future__ import annotations

import json
import time
import warnings
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UnidetError

DEFAULT_WORK_DIR = "work_dirs/experiment"
#: Where ``unidet experiment`` writes its checkpoints and world, relative to its work dir.
STAGE2_IN_WORK_DIR = Path("work_dirs/stage2_partitioned/latest.pkl")
STAGE1_IN_WORK_DIR = Path("work_dirs/stage1_cln/latest.pkl")
WORLD_IN_WORK_DIR = Path("data/synthetic")
#: Image formats the page accepts (Pillow's names); decoding is OpenCV's, as in ``unidet detect``.
IMAGE_FORMATS = ("JPEG", "PNG", "BMP", "TIFF", "WEBP", "MPO")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class ServeError(UnidetError):
    """``unidet serve`` cannot start: no models, or options that do not fit together."""


class InputRejected(UnidetError):
    """A request the page refuses; the message is shown on the page (one line, names the file)."""


@dataclass
class Limits:
    """Safety limits of the page (each one a ``unidet serve`` option)."""

    max_bytes: int = 10 * 2 ** 20          # upload size
    max_pixels: int = 25_000_000           # width x height of an upload
    max_classes: int = 100                 # typed class names per request
    max_name_chars: int = 100              # characters per typed class name
    max_detections: int = 1000             # the largest "max detections" accepted
    embedding_cache: int = 16              # vocabularies kept in memory
    result_files: int = 32                 # JSON files kept for download
    max_exemplars: int = 16                # image exemplars per page
    exemplar_pixels: int = 100_000_000     # pixels of exemplar images kept (all pages together)


# ----------------------------------------------------------------------------------------- models
def experiment_models(work_dir) -> tuple:
    """``(stage2, stage1)`` checkpoint paths of an ``unidet experiment`` work dir; :class:`ServeError`
    naming the missing files and the command that makes them."""
    wd = Path(work_dir)
    stage2, stage1 = wd / STAGE2_IN_WORK_DIR, wd / STAGE1_IN_WORK_DIR
    missing = [str(p) for p in (stage2, stage1) if not p.is_file()]
    if missing:
        make = "unidet experiment --quick" + ("" if str(work_dir) == DEFAULT_WORK_DIR else f" --work-dir {work_dir}")
        raise ServeError(f"no trained models to serve: {' and '.join(missing)} not found. Make them with "
                         f"`{make}` (about 4 minutes on 2 CPU cores; the full run drops --quick), or give "
                         "your own: unidet serve --checkpoint STAGE2.pkl --proposal-checkpoint STAGE1.pkl")
    return str(stage2), str(stage1)


def resolve_models(checkpoint=None, proposal_checkpoint=None, work_dir=DEFAULT_WORK_DIR) -> tuple:
    """``(stage2, stage1, source)``: both checkpoints given, or neither (those of ``work_dir``)."""
    if checkpoint is None and proposal_checkpoint is None:
        stage2, stage1 = experiment_models(work_dir)
        return stage2, stage1, f"the experiment in {work_dir}"
    if checkpoint is None:
        raise ServeError("--proposal-checkpoint needs --checkpoint STAGE2.pkl (the CLIP RoI classifier)")
    if proposal_checkpoint is None:
        raise ServeError("--checkpoint needs --proposal-checkpoint STAGE1.pkl: the page runs stage 1 (the CLN) on "
                         "every uploaded image to find its regions")
    for flag, path in (("--checkpoint", checkpoint), ("--proposal-checkpoint", proposal_checkpoint)):
        if not Path(path).is_file():
            raise ServeError(f"{flag} {path}: file not found")
    return str(checkpoint), str(proposal_checkpoint), "the given checkpoints"


@dataclass
class World:
    """The synthetic world of an experiment work dir: class names (id order) and example images."""

    names: list
    examples: list = field(default_factory=list)


def find_world(work_dir, n_examples: int = 8):
    """The :class:`World` of ``WORK_DIR/data/synthetic`` (``world.json``; examples: the first
    ``n_examples`` images of the test set ``val_lvis.json`` that exist), or None without one."""
    from ..data.synthetic import load_world

    root = Path(work_dir) / WORLD_IN_WORK_DIR
    try:
        meta = load_world(root)
        names = [c["name"] for c in sorted(meta["classes"], key=lambda c: c["id"])]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    examples = []
    try:
        val = json.loads((root / "val_lvis.json").read_text())
        for im in val.get("images", []):
            path = (root / "images" / im["file_name"]).resolve()
            if path.is_file():
                examples.append(str(path))
            if len(examples) >= n_examples:
                break
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return World(names, examples)


def image_classes(work_dir, image_path) -> list:
    """Class names annotated on one test image of the world of ``work_dir`` (for default queries and
    tests), in order of first appearance; ``[]`` when unknown."""
    root = Path(work_dir) / WORLD_IN_WORK_DIR
    try:
        val = json.loads((root / "val_lvis.json").read_text())
    except (OSError, ValueError):
        return []
    names = {c["id"]: c["name"] for c in val.get("categories", [])}
    target = Path(image_path).resolve()
    ids = [im["id"] for im in val.get("images", []) if (root / "images" / im["file_name"]).resolve() == target]
    out = []
    for a in val.get("annotations", []):
        if ids and a["image_id"] == ids[0] and names.get(a["category_id"]) not in out:
            out.append(names[a["category_id"]])
    return out


# ----------------------------------------------------------------------------------------- uploads
def _inside(path: Path, roots) -> bool:
    for root in roots:
        root = Path(root).resolve()
        if path == root or root in path.parents:
            return True
    return False


def read_upload(path, limits: Limits, allowed_roots) -> tuple:
    """``(rgb uint8 (H, W, 3), display name)`` of an uploaded file.

    ``allowed_roots``: folders (or files) uploads may come from (Gradio's upload folder, the example
    images); anything else is refused. Checked in this order, each with its own message: present,
    inside the allowed roots, at most ``limits.max_bytes``, an image of a supported format (header),
    at most ``limits.max_pixels``, pixels decodable (OpenCV, EXIF orientation applied as ``unidet detect``).
    """
    import cv2
    from PIL import Image, UnidentifiedImageError

    if not path:
        raise InputRejected("no image yet: upload one (JPEG, PNG, BMP, TIFF or WebP) or pick an example")
    p = Path(path).resolve()
    name = p.name
    if not _inside(p, allowed_roots) or not p.is_file():
        raise InputRejected(f"{name}: refused (only files uploaded through this page or its examples are read)")
    size = p.stat().st_size
    if size > limits.max_bytes:
        raise InputRejected(f"{name}: {size / 2 ** 20:.1f} MB is over the upload limit of "
                            f"{limits.max_bytes / 2 ** 20:g} MB (unidet serve --max-upload-mb)")
    if size == 0:
        raise InputRejected(f"{name}: the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(p) as im:
                (w, h), fmt = im.size, im.format
    except Image.DecompressionBombError:
        raise InputRejected(f"{name}: far more than the limit of {limits.max_pixels / 1e6:g} megapixels") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise InputRejected(f"{name}: not an image (or a corrupt one); upload a JPEG, PNG, BMP, TIFF or WebP "
                            "file") from None
    if fmt not in IMAGE_FORMATS:
        raise InputRejected(f"{name}: {fmt} images are not supported; upload a JPEG, PNG, BMP, TIFF or WebP file")
    if w * h > limits.max_pixels:
        raise InputRejected(f"{name}: {w}x{h} = {w * h / 1e6:.1f} megapixels is over the limit of "
                            f"{limits.max_pixels / 1e6:g} megapixels (unidet serve --max-megapixels)")
    bgr = cv2.imdecode(np.fromfile(str(p), dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None or bgr.ndim != 3 or min(bgr.shape[:2]) < 1:
        raise InputRejected(f"{name}: the {fmt} file is corrupt or truncated (its pixels cannot be decoded)")
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)), name


# ----------------------------------------------------------------------------------------- vocabulary
TYPED = "typed class names"
BUILTIN_LABELS = {"coco": "COCO", "objects365": "Objects365", "lvis": "LVIS"}


class VocabularyMenu:
    """The page's vocabulary choices: typed names, the synthetic world's classes, the built-in lists.

    Labels map to fixed lists loaded at start (a label never reaches a file path); built-in lists
    that are not shipped with this installation are left out.
    """

    def __init__(self, world_names=None, builtins=("coco", "objects365", "lvis")):
        from ..text.vocab import VocabularyError, builtin_vocabulary

        self.lists = OrderedDict()
        if world_names:
            self.lists[f"synthetic world ({len(world_names)} classes)"] = list(world_names)
        for key in builtins:
            try:
                names = builtin_vocabulary(key)
            except VocabularyError:
                continue
            self.lists[f"{BUILTIN_LABELS.get(key, key)} ({len(names)} classes)"] = names

    @property
    def labels(self) -> list:
        return [TYPED, *self.lists]

    def names(self, label, typed, limits: Limits, allow_empty: bool = False) -> tuple:
        """``(class names, built_in)`` for a menu ``label`` and the typed text; ``allow_empty``: no typed
        names is ``([], False)`` (the classes come from image exemplars)."""
        from ..text.vocab import resolve_vocabulary

        if label in (None, "", TYPED):
            text = str(typed or "")
            if not text.strip():
                if allow_empty:
                    return [], False
                raise InputRejected("no classes: type class names, comma-separated (e.g. red star, blue ring), "
                                    "pick a built-in vocabulary, or add an image exemplar")
            if len(text) > limits.max_classes * (limits.max_name_chars + 2):
                raise InputRejected(f"the class list is {len(text)} characters long; the page takes up to "
                                    f"{limits.max_classes} names of up to {limits.max_name_chars} characters")
            names = resolve_vocabulary(classes=text)
            if len(names) > limits.max_classes:
                raise InputRejected(f"{len(names)} class names typed; the page takes up to {limits.max_classes} "
                                    "(pick a built-in vocabulary for more)")
            long = [n for n in names if len(n) > limits.max_name_chars]
            if long:
                shown = long[0] if len(long[0]) <= 40 else long[0][:40] + "..."
                raise InputRejected(f"class name {shown!r} is {len(long[0])} characters long; the limit is "
                                    f"{limits.max_name_chars}")
            return names, False
        if label not in self.lists:
            raise InputRejected(f"unknown vocabulary {str(label)[:60]!r}; choose one of: {', '.join(self.labels)}")
        return list(self.lists[label]), True


# ----------------------------------------------------------------------------------------- requests
def filter_detections(dets, score_thr: float, max_dets: int):
    """The detections scoring at least ``score_thr``, best ``max_dets`` (``dets`` is sorted by score)."""
    from ..api import Detections

    keep = np.flatnonzero(dets.scores >= float(score_thr))[:max(0, int(max_dets))]
    return Detections(dets.boxes[keep], dets.scores[keep], dets.labels[keep], [dets.names[i] for i in keep],
                      dets.image_size, list(dets.vocabulary))


def table_rows(dets, sources=None) -> list:
    """``[[class, score, x1, y1, x2, y2, query], ...]`` (score to 3 decimals, box in pixels to 0.1; query:
    where the class came from, ``sources[class]``, "text" when not given)."""
    sources = sources or {}
    return [[name, round(float(s), 3), *(round(float(v), 1) for v in box), sources.get(name, "text")]
            for name, s, box in zip(dets.names, dets.scores.tolist(), dets.boxes.tolist())]


TABLE_HEADERS = ["class", "score", "x1", "y1", "x2", "y2", "query"]


def timing_text(timings: dict, network_seconds=None) -> str:
    """One line: the network pass (stage 1 + stage-2 regions) and the re-scoring, or that the cached
    regions were re-scored without a network pass; the text embeddings and the exemplar embeddings
    (``timings["exemplars"]``: a pass over each new exemplar box) when they took 10 ms or more."""
    score_ms = 1000 * timings.get("score", 0.0)
    emb, ex = timings.get("embeddings", 0.0), timings.get("exemplars", 0.0)
    emb_text = (f"; text embeddings {emb:.2f} s" if emb >= 0.01 else "") + \
        (f"; exemplar embeddings {ex:.2f} s" if ex >= 0.01 else "")
    if timings.get("reused"):
        before = f" (this image's network pass took {network_seconds:.2f} s)" if network_seconds else ""
        return (f"Re-scored the cached regions in {score_ms:.1f} ms: no network pass{before}{emb_text}.")
    net = timings.get("stage1", 0.0) + timings.get("regions", 0.0)
    return (f"Network pass {net:.2f} s (stage 1 {timings.get('stage1', 0.0):.2f} s, stage-2 regions "
            f"{timings.get('regions', 0.0):.2f} s); re-scoring {score_ms:.1f} ms{emb_text}.")


@dataclass
class Result:
    """One answered request: the kept detections, the annotated image, table rows, the JSON file and
    the timing line; ``reused``: the cached regions were re-scored (no network pass); ``sources``:
    ``{class: "text" | "exemplar" | "text + exemplar"}`` of the vocabulary."""

    detections: object
    annotated: np.ndarray
    rows: list
    json_path: str
    timing: str
    reused: bool
    timings: dict
    sources: dict = field(default_factory=dict)


class DetectionService:
    """Requests of the page against one :class:`~unidetector.api.Detector` (built with
    ``score_thr=0``: the page's threshold filters afterwards, so moving it is a re-scoring)."""

    def __init__(self, detector, limits: Limits | None = None, out_dir=None):
        from ..api import TextEncoderSpec

        self.detector = detector
        self.limits = limits or Limits()
        self.out_dir = Path(out_dir) if out_dir is not None else None
        enc = detector.encoder
        self._builtin_encoder = enc                       # fixed lists: on-disk embedding cache as usual
        self._typed_encoder = TextEncoderSpec("", enc.encode_fn, getattr(enc, "templates", ()))  # memory only
        self._network_seconds = OrderedDict()             # image sha1 -> seconds of its network pass
        self._files = deque()
        from .exemplars import ImageStore

        self.exemplar_images = ImageStore(self.limits.exemplar_pixels)
        self.network_passes = 0
        self.requests = 0

    def _embeddings_lru(self, names) -> None:
        """Keep the detector's in-memory text embeddings to ``limits.embedding_cache`` vocabularies,
        least recently used out (the Detector has no public bound yet; its cache is a dict keyed by
        the tuple of names)."""
        cache = getattr(self.detector, "_embeddings", None)
        if not isinstance(cache, dict):
            return
        key = tuple(names)
        if key in cache:
            cache[key] = cache.pop(key)
        while len(cache) > max(1, self.limits.embedding_cache):
            cache.pop(next(iter(cache)))

    def _write_json(self, record: dict) -> str:
        import tempfile

        if self.out_dir is None:
            self.out_dir = Path(tempfile.mkdtemp(prefix="unidet-serve-"))
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / f"detections_{self.requests:06d}.json"   # never the user's file name
        path.write_text(json.dumps(record, indent=1))
        self._files.append(path)
        while len(self._files) > max(1, self.limits.result_files):
            old = self._files.popleft()
            try:
                old.unlink()
            except OSError:
                pass
        return str(path)

    def new_exemplars(self):
        """An empty :class:`~unidetector.app.exemplars.ExemplarSet` for a page (``limits.max_exemplars``)."""
        from .exemplars import ExemplarSet

        return ExemplarSet(self.limits.max_exemplars)

    def add_exemplar(self, exemplars, name, rgb: np.ndarray, image_name: str, box):
        """Add the ``box`` on ``rgb`` (from :func:`read_upload`) as an exemplar of class ``name`` to a page's
        ``exemplars`` (checked by :meth:`~unidetector.app.exemplars.ExemplarSet.add`; its pixels go to the
        shared image store only once it is accepted); returns the new exemplar."""
        from .exemplars import image_digest

        h, w = rgb.shape[:2]
        ex = exemplars.add(name, image_digest(rgb), image_name, box, w, h, self.limits.max_name_chars)
        self.exemplar_images.put(rgb)
        return ex

    def detect(self, rgb: np.ndarray, name: str, names, builtin: bool, score_thr: float, max_dets,
               exemplars=None) -> Result:
        """Detect ``names`` and the classes of a page's ``exemplars`` (an
        :class:`~unidetector.app.exemplars.ExemplarSet`, or None) on ``rgb``; see :class:`Result`."""
        from .exemplars import exemplar_query, image_digest

        try:
            max_dets = int(max_dets)
        except (TypeError, ValueError):
            raise InputRejected(f"max detections must be a whole number, got {max_dets!r}") from None
        if not 1 <= max_dets <= self.limits.max_detections:
            raise InputRejected(f"max detections must be between 1 and {self.limits.max_detections}, got {max_dets}")
        score_thr = float(score_thr)
        if not 0.0 <= score_thr <= 1.0:
            raise InputRejected(f"the score threshold must be between 0 and 1, got {score_thr}")
        names, query, sources = exemplar_query(names, exemplars, self.exemplar_images)
        if not names and not query:
            raise InputRejected("no classes: type class names, comma-separated (e.g. red star, blue ring), pick a "
                                "built-in vocabulary, or add an image exemplar")
        self.requests += 1
        det = self.detector
        t0 = time.perf_counter()
        for items in query.values():          # a pass over each new exemplar box (the detector caches them)
            for item in items:
                det.exemplar_embedding(item)
        t_exemplars = time.perf_counter() - t0
        det.encoder = self._builtin_encoder if builtin else self._typed_encoder
        key = image_digest(rgb)
        try:
            # no names: the classes are the exemplars' only (the service never sets a detector vocabulary)
            all_dets = det.detect(rgb, classes=list(names) if names else None, exemplars=query or None)
        finally:
            det.encoder = self._builtin_encoder
        t = dict(det.last_timings, exemplars=t_exemplars)
        if names:
            self._embeddings_lru(names)
        if not t.get("reused"):
            self.network_passes += 1
            self._network_seconds[key] = t.get("stage1", 0.0) + t.get("regions", 0.0)
            while len(self._network_seconds) > max(1, getattr(det, "cache_size", 64)):
                self._network_seconds.popitem(last=False)
        kept = filter_detections(all_dets, score_thr, max_dets)
        t0 = time.perf_counter()
        annotated = det.draw(rgb, kept)
        t["draw"] = time.perf_counter() - t0
        h, w = kept.image_size
        coco = [dict(d, query=sources.get(d["class_name"], "text")) for d in kept.to_coco(0)]
        record = {"image": name, "image_id": 0, "width": w, "height": h, "vocabulary": list(all_dets.vocabulary),
                  "queries": sources, "exemplars": exemplars.records() if exemplars is not None else [],
                  "score_thr": score_thr, "max_detections": max_dets, "detections": coco}
        return Result(kept, annotated, table_rows(kept, sources), self._write_json(record),
                      timing_text(t, self._network_seconds.get(key)), bool(t.get("reused")), t, sources)


def loud_host_warning(host: str, port: int) -> str | None:
    """The warning printed when the page listens beyond this machine (None for loopback hosts)."""
    if host in LOOPBACK_HOSTS:
        return None
    bar = "!" * 78
    return (f"{bar}\nunidet serve: WARNING: listening on {host}:{port}, reachable from other machines.\n"
            "  Anyone who can reach this port can upload images and use this machine's processors; there is\n"
            "  no login. Serve on 127.0.0.1 (the default) and tunnel, or put an authenticating proxy in front.\n"
            f"{bar}")


def default_classes(world, work_dir=None, limit: int = 6) -> str:
    """The class names pre-filled on the page: those annotated on the first example image (then other
    world classes) up to ``limit``; empty without a world."""
    if world is None:
        return ""
    names = image_classes(work_dir, world.examples[0]) if (work_dir and world.examples) else []
    for n in world.names:
        if len(names) >= limit:
            break
        if n not in names:
            names.append(n)
    return ", ".join(names[:limit])

