"""`unidet serve` (the web app) and README_zh.md.

Fast: upload checks, vocabulary menu, the request service on a stand-in detector (filtering, re-scoring
line, bounded caches and files), image exemplars (boxes from clicks or text, their checks, the page's
exemplars and the shared image store, the classes they add and the table's query column), the command's
errors, README_zh lists the same commands as README.md.
Slow (the quick experiment): the real server on 127.0.0.1 and a free port, driven by Playwright in
Debian's headless Chromium (no browser download): upload, type classes, detect, re-score without a
network pass, mark a box with two clicks and add it as an exemplar of a new class (the table then lists
that class as from an exemplar; clearing the exemplars drops it), a text file renamed .jpg, the upload
byte limit, screenshots (``UNIDET_APP_SCREENSHOT=PATH`` also copies the one with text classes there, e.g.
docs/images/app.png).
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from unidetector.app.core import (TYPED, DetectionService, InputRejected, Limits, ServeError, VocabularyMenu,
                                  default_classes, find_world, image_classes, loud_host_warning, read_upload,
                                  resolve_models, timing_text)
from unidetector.app.exemplars import (BOTH, EXEMPLAR, MARK_COLOR, TEXT, ExemplarSet, ImageStore, check_box,
                                       exemplar_query, format_box, image_digest, marked_image, next_corners, parse_box)
from unidetector.errors import UnidetError

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"


def _png(path, w=40, h=30):
    import cv2

    img = np.zeros((h, w, 3), np.uint8)
    img[5:20, 5:30] = (0, 0, 255)
    cv2.imwrite(str(path), img)
    return path


# ------------------------------------------------------------------ uploads
def test_read_upload_accepts_images_and_refuses_the_rest(tmp_path):
    up = tmp_path / "uploads"
    up.mkdir()
    roots, lim = [up], Limits()
    rgb, name = read_upload(str(_png(up / "ok.png")), lim, roots)
    assert rgb.shape == (30, 40, 3) and rgb.dtype == np.uint8 and name == "ok.png"
    assert tuple(rgb[10, 10]) == (255, 0, 0)          # BGR file -> RGB pixels

    def refused(path, limits=lim, where=roots):
        with pytest.raises(InputRejected) as e:
            read_upload(path, limits, where)
        return str(e.value)

    assert "no image yet" in refused(None)
    text = up / "notes.jpg"
    text.write_text("this is a text file renamed .jpg")
    assert "notes.jpg: not an image" in refused(str(text))
    data = (up / "ok.png").read_bytes()
    (up / "cut.png").write_bytes(data[:len(data) // 2])
    assert "cut.png" in refused(str(up / "cut.png")) and "corrupt" in refused(str(up / "cut.png"))
    (up / "empty.jpg").write_bytes(b"")
    assert "empty" in refused(str(up / "empty.jpg"))
    assert "over the upload limit" in refused(str(up / "ok.png"), Limits(max_bytes=100))
    msg = refused(str(up / "ok.png"), Limits(max_pixels=1000))
    assert "40x30" in msg and "megapixels is over the limit" in msg
    from PIL import Image

    Image.new("RGB", (8, 8)).save(up / "anim.gif")
    assert "GIF images are not supported" in refused(str(up / "anim.gif"))
    outside = _png(tmp_path / "elsewhere.png")
    assert "refused" in refused(str(outside))
    assert "refused" in refused(str(up / ".." / "elsewhere.png"))   # no way out of the upload folder
    assert read_upload(str(outside), lim, [outside])[1] == "elsewhere.png"   # an example file, allowed by name


# ------------------------------------------------------------------ vocabulary
def test_vocabulary_menu():
    menu = VocabularyMenu(["red star", "blue ring"])
    assert menu.labels[0] == TYPED and menu.labels[1] == "synthetic world (2 classes)"
    assert "COCO (80 classes)" in menu.labels and "Objects365 (365 classes)" in menu.labels
    lim = Limits(max_classes=3, max_name_chars=14)
    assert menu.names(TYPED, ' red star , "big, dark cat" ', lim) == (["red star", "big, dark cat"], False)
    assert menu.names("synthetic world (2 classes)", "ignored", lim) == (["red star", "blue ring"], True)
    assert menu.names(TYPED, "  ", lim, allow_empty=True) == ([], False)      # the classes of exemplars only
    coco, builtin = menu.names("COCO (80 classes)", "", lim)
    assert len(coco) == 80 and coco[0] == "person" and builtin
    for typed, expected in (("", "no classes"), ("a,b,c,d", "up to 3"),
                            ("a very long class name", "22 characters long; the limit is 14"),
                            ("x" * 100, "characters long")):
        with pytest.raises(InputRejected, match=expected):
            menu.names(TYPED, typed, lim)
    with pytest.raises(UnidetError, match="duplicate"):
        menu.names(TYPED, "red star, Red  Star", lim)
    with pytest.raises(InputRejected, match="unknown vocabulary"):
        menu.names("../../etc/passwd", "", lim)     # a label never reaches a file path


# ------------------------------------------------------------------ requests on a stand-in detector
class FakeDetector:
    """The parts of :class:`unidetector.api.Detector` the service uses; regions are "cached" per image."""

    def __init__(self):
        from unidetector.api import TextEncoderSpec

        self.encoder = TextEncoderSpec("fake-encoder", lambda names: np.ones((len(names), 4), np.float32))
        self.cache_size = 2
        self._embeddings = {}
        self._seen = []
        self.encoders_used = []
        self.last_timings = {}
        self.exemplars_embedded = []
        self.calls = []

    def exemplar_embedding(self, exemplar):
        rgb, box = exemplar
        self.exemplars_embedded.append(tuple(box))
        return np.ones(4, np.float32) / 2

    def detect(self, rgb, classes, exemplars=None):
        from unidetector.api import Detections

        self.calls.append((classes, exemplars))
        self.encoders_used.append(self.encoder.id)
        if classes:
            self._embeddings[tuple(classes)] = self.encoder.encode(classes)
        classes = list(classes or []) + [n for n in (exemplars or {}) if n not in (classes or [])]
        key = rgb.tobytes()
        reused = key in self._seen
        if not reused:
            self._seen = (self._seen + [key])[-self.cache_size:]
        self.last_timings = {"stage1": 0.0 if reused else 0.5, "regions": 0.0 if reused else 0.75, "score": 0.004,
                             "embeddings": 0.0, "reused": reused}
        scores = np.array([0.9, 0.5, 0.25, 0.05], np.float32)
        labels = np.arange(4) % len(classes)
        boxes = np.array([[1, 2, 10, 12]] * 4, np.float32)
        return Detections(boxes, scores, labels, [classes[i] for i in labels], rgb.shape[:2], list(classes))

    def draw(self, rgb, dets):
        out = rgb.copy()
        out[0, 0] = len(dets)
        return out


def test_service_filters_rescores_and_stays_bounded(tmp_path):
    det = FakeDetector()
    svc = DetectionService(det, Limits(embedding_cache=2, result_files=3), out_dir=tmp_path / "json")
    img = np.zeros((20, 30, 3), np.uint8)
    first = svc.detect(img, "photo.jpg", ["red star", "blue ring"], False, 0.3, 100)
    assert not first.reused and svc.network_passes == 1
    assert first.timing.startswith("Network pass 1.25 s (stage 1 0.50 s") and "no network pass" not in first.timing
    assert [r[:2] for r in first.rows] == [["red star", 0.9], ["blue ring", 0.5]]   # 0.25 and 0.05 < 0.3
    assert first.rows[0][2:] == [1.0, 2.0, 10.0, 12.0, "text"] and first.annotated[0, 0, 0] == 2
    record = json.loads(Path(first.json_path).read_text())
    assert Path(first.json_path).name == "detections_000001.json"      # never the user's file name
    assert record["image"] == "photo.jpg" and (record["width"], record["height"]) == (30, 20)
    assert [d["class_name"] for d in record["detections"]] == ["red star", "blue ring"]
    assert record["detections"][0]["bbox"] == [1.0, 2.0, 9.0, 10.0] and record["detections"][1]["category_id"] == 2

    again = svc.detect(img, "photo.jpg", ["green cross"], False, 0.0, 3)  # other classes and threshold: re-score
    assert again.reused and svc.network_passes == 1 and len(again.rows) == 3
    assert again.timing.startswith("Re-scored the cached regions in 4.0 ms: no network pass")
    assert "network pass took 1.25 s" in again.timing
    # typed vocabularies are encoded without the on-disk cache (encoder id ''), built-in lists with it
    svc.detect(img, "photo.jpg", ["person", "car"], True, 0.3, 10)
    assert det.encoders_used == ["", "", "fake-encoder"] and det.encoder.id == "fake-encoder"
    assert list(det._embeddings) == [("green cross",), ("person", "car")]       # LRU of 2 vocabularies
    for k in range(3):
        svc.detect(img, "photo.jpg", [f"class {k}"], False, 0.3, 10)
    assert sorted(p.name for p in (tmp_path / "json").iterdir()) == [f"detections_{i:06d}.json" for i in (4, 5, 6)]
    for bad, match in (((0.3, 0), "between 1 and"), ((1.5, 10), "between 0 and 1"), ((0.3, "x"), "whole number")):
        with pytest.raises(InputRejected, match=match):
            svc.detect(img, "photo.jpg", ["a"], False, *bad)


# ------------------------------------------------------------------ image exemplars
def test_exemplar_boxes_from_clicks_and_text():
    assert parse_box("10, 20, 50, 60") == (10.0, 20.0, 50.0, 60.0)
    assert parse_box(" [50 60, 10.5,20] ") == (10.5, 20.0, 50.0, 60.0)        # corners in any order
    for text, match in (("", "no box: click two opposite corners"), ("1, 2, 3", "not four numbers"),
                        ("a, b, c, d", "not four numbers"), ("1, 2, nan, 4", "not four numbers")):
        with pytest.raises(InputRejected, match=match):
            parse_box(text)
    assert check_box((0, 0, 40, 30), 40, 30, "a.png") == (0.0, 0.0, 40.0, 30.0)   # the whole image is a box
    for box, match in (((5, 5, 5, 20), r"is empty \(0 x 15 pixels\)"), ((5, 5, 20, 5.5), "is empty"),
                       ((5, 5, 41, 20), r"outside a\.png \(40 x 30 pixels\)"), ((-1, 0, 10, 10), "outside")):
        with pytest.raises(InputRejected, match=match):
            check_box(box, 40, 30, "a.png")
    corners, box = next_corners([], (30, 4))
    assert corners == [(30, 4)] and box is None                                   # first corner
    corners, box = next_corners(corners, (8, 25))
    assert box == (8.0, 4.0, 30.0, 25.0) and format_box(box) == "8, 4, 30, 25"    # the opposite one: a box
    assert next_corners(corners, (1, 2)) == ([(1, 2)], None)                      # a third click starts over
    assert format_box((12.34, 2, 3.0, 4)) == "12.3, 2, 3, 4"
    img = np.zeros((60, 80, 3), np.uint8)
    drawn, cross = marked_image(img, box=(8, 24, 70, 55)), marked_image(img, corner=(20, 15))
    assert drawn.shape == img.shape and (drawn[55, 8:71] == MARK_COLOR).all() and not drawn[40, 40].any()
    assert not img.any()                                                          # drawn on a copy
    assert cross[15, 20].any() and not cross[40, 40].any()


def test_exemplar_set_store_and_query():
    a, b = np.zeros((30, 40, 3), np.uint8), np.full((20, 20, 3), 7, np.uint8)
    store = ImageStore(max_pixels=40 * 30 + 20 * 20)
    ka = store.put(a)
    assert ka == image_digest(a) and store.put(a) == ka and len(store) == 1      # one copy per image
    exs = ExemplarSet(max_exemplars=3)
    exs.add(" Blue  ring ", ka, "a.png", (1, 2, 11, 12), 40, 30)
    exs.add("blue RING", ka, "a.png", (5, 5, 20, 20), 40, 30)                     # the same class: its spelling
    assert exs.rows() == [["Blue ring", "a.png", "1, 2, 11, 12"], ["Blue ring", "a.png", "5, 5, 20, 20"]]
    for args, match in ((("", ka, "a.png", (1, 2, 11, 12)), "no class name"),
                        (("x" * 101, ka, "a.png", (1, 2, 11, 12)), "101 characters long"),
                        (("star", ka, "a.png", (1, 2, 1, 12)), "is empty"),
                        (("star", ka, "a.png", (1, 2, 50, 12)), "outside a.png"),
                        (("blue ring", ka, "a.png", (1, 2, 11, 12)), "already an exemplar")):
        with pytest.raises(InputRejected, match=match):
            exs.add(*args, 40, 30)
    kb = store.put(b)
    exs.add("red star", kb, "b.png", (0, 0, 20, 20), 20, 20)
    with pytest.raises(InputRejected, match="3 exemplars is the most"):
        exs.add("green cross", kb, "b.png", (0, 0, 10, 10), 20, 20)
    assert exs.records()[2] == {"class_name": "red star", "image": "b.png", "box": [0, 0, 20, 20]}

    names, query, sources = exemplar_query(["blue ring", "cat"], exs, store)     # typed spelling wins
    assert names == ["blue ring", "cat"] and list(query) == ["blue ring", "red star"]
    assert [box for _, box in query["blue ring"]] == [[1, 2, 11, 12], [5, 5, 20, 20]]
    assert query["blue ring"][0][0] is a and query["red star"][0][0] is b
    assert sources == {"blue ring": BOTH, "cat": TEXT, "red star": EXEMPLAR}
    assert exemplar_query(["cat"], None, store) == (["cat"], {}, {"cat": TEXT})
    store.put(np.ones((30, 30, 3), np.uint8))                        # over the pixels: the least recent (a) drops
    assert store.get(ka) is None and store.get(kb) is b and len(store) == 2
    with pytest.raises(InputRejected, match=r"'Blue ring' \(a\.png\) is no longer kept by the server"):
        exemplar_query([], exs, store)


def test_service_detects_with_exemplars(tmp_path):
    det = FakeDetector()
    svc = DetectionService(det, Limits(max_exemplars=4), out_dir=tmp_path / "json")
    img, other = np.zeros((20, 30, 3), np.uint8), np.full((10, 10, 3), 3, np.uint8)
    exs = svc.new_exemplars()
    assert exs.max_exemplars == 4 and len(exs) == 0
    svc.add_exemplar(exs, "Red Star", img, "photo.jpg", (2, 3, 12, 13))
    with pytest.raises(InputRejected, match="outside other.png"):
        svc.add_exemplar(exs, "ring", other, "other.png", (0, 0, 11, 5))
    assert len(svc.exemplar_images) == 1                                          # a refused one stores nothing
    svc.add_exemplar(exs, "ring", other, "other.png", (0, 0, 10, 5))
    res = svc.detect(img, "photo.jpg", ["red star", "cat"], False, 0.0, 10, exs)
    classes, query = det.calls[-1]
    assert classes == ["red star", "cat"] and list(query) == ["red star", "ring"]    # mixed under the typed name
    assert query["ring"][0][0] is other and query["red star"][0][1] == [2, 3, 12, 13]
    assert det.exemplars_embedded == [(2, 3, 12, 13), (0, 0, 10, 5)]              # embedded before detecting
    assert res.sources == {"red star": BOTH, "cat": TEXT, "ring": EXEMPLAR}
    assert [(r[0], r[6]) for r in res.rows] == [("red star", BOTH), ("cat", TEXT), ("ring", EXEMPLAR),
                                                 ("red star", BOTH)]
    record = json.loads(Path(res.json_path).read_text())
    assert record["vocabulary"] == ["red star", "cat", "ring"] and record["queries"]["ring"] == EXEMPLAR
    assert record["exemplars"][1] == {"class_name": "ring", "image": "other.png", "box": [0, 0, 10, 5]}
    assert [d["query"] for d in record["detections"]][:3] == [BOTH, TEXT, EXEMPLAR]
    only = svc.detect(img, "photo.jpg", [], False, 0.0, 10, exs)                  # no typed names: exemplars only
    assert det.calls[-1][0] is None and {r[0] for r in only.rows} == {"Red Star", "ring"}
    assert "exemplar embeddings" in timing_text({"reused": True, "exemplars": 0.5})
    with pytest.raises(InputRejected, match="no classes"):
        svc.detect(img, "photo.jpg", [], False, 0.0, 10, svc.new_exemplars())


def test_timing_text_and_host_warning():
    assert "no network pass" in timing_text({"reused": True, "score": 0.01})
    assert timing_text({"stage1": 1.0, "regions": 2.0, "score": 0.5, "embeddings": 0.2}) == \
        "Network pass 3.00 s (stage 1 1.00 s, stage-2 regions 2.00 s); re-scoring 500.0 ms; text embeddings 0.20 s."
    assert loud_host_warning("127.0.0.1", 7860) is None and loud_host_warning("localhost", 1) is None
    warning = loud_host_warning("0.0.0.0", 7860)
    assert "WARNING" in warning and "0.0.0.0:7860" in warning and "no login" in warning


# ------------------------------------------------------------------ the page, without a browser
def test_page_handlers_and_queue(tmp_path):
    pytest.importorskip("gradio", reason="Gradio is missing: run scripts/install.sh (or pip install -e '.[app]')")
    from types import SimpleNamespace

    from unidetector.app.ui import CONCURRENCY_ID, MARKS_ID, SOURCE_IMAGE, SOURCE_OTHER, build_demo, configure_queue

    example = str(_png(tmp_path / "example.png"))
    fake = tmp_path / "fake.jpg"
    fake.write_text("text")
    svc = DetectionService(FakeDetector(), Limits(), out_dir=tmp_path / "json")
    demo = build_demo(svc, VocabularyMenu(["red star", "blue ring"]), [example, str(fake)], "red star")
    configure_queue(demo, queue_size=5)
    ids = {b.elem_id for b in demo.blocks.values() if getattr(b, "elem_id", None)}
    assert ids >= {"upload", "examples", "vocabulary", "classes", "threshold", "max-dets", "detect", "message",
                   "timing", "annotated", "table", "json", "exemplar-source", "exemplar-upload", "exemplar-canvas",
                   "exemplar-box", "exemplar-name", "exemplar-add", "exemplar-clear", "exemplar-message", "exemplars"}
    fns = {f.name: f for f in demo.fns.values()}
    # everything that uses the detector or the service's state runs one at a time; marking boxes never waits
    slots = {f.name: (f.concurrency_limit, f.concurrency_id) for f in demo.fns.values()}
    assert {slots[n] for n in ("request", "rescore", "preview", "pick", "add_exemplar", "clear_exemplars")} == \
        {(1, CONCURRENCY_ID)}
    assert {slots[n] for n in ("show_canvas", "use_exemplar_image", "mark", "show_box")} == {(2, MARKS_ID)}
    assert demo._queue.max_size == 5
    request, rescore, preview = fns["request"].fn, fns["rescore"].fn, fns["preview"].fn
    message, timing, image, rows, json_path = request(example, TYPED, "red star, blue ring", 0.3, 100)
    assert message == "" and timing.startswith("Network pass") and image.shape == (30, 40, 3)
    assert [r[0] for r in rows] == ["red star", "blue ring"] and json_path.endswith(".json")
    message, timing, *_ = rescore(example, "synthetic world (2 classes)", "", 0.0, 100)
    assert "no network pass" in timing
    assert all(v is not None for v in rescore(None, TYPED, "red star", 0.3, 100))   # no image: nothing changes
    for outputs in (request(str(fake), TYPED, "red star", 0.3, 100), preview(str(fake))):
        assert "fake\\.jpg: not an image" in outputs[0] and outputs[2] is None and outputs[3] == []
    assert "no classes" in request(example, TYPED, " ", 0.3, 100)[0]
    assert "refused" in request(str(tmp_path / "json" / "detections_000001.json"), TYPED, "a", 0.3, 100)[0]
    assert preview(example)[1] == "example\\.png: 40x30 pixels; press Detect."

    # image exemplars: two clicks mark a box, a name adds it, detections list its class as from an exemplar
    mark, add, clear = fns["mark"].fn, fns["add_exemplar"].fn, fns["clear_exemplars"].fn
    canvas, corners, box, msg = fns["show_canvas"].fn(SOURCE_IMAGE, example, None)
    assert canvas.shape == (30, 40, 3) and corners == [] and "Click two opposite corners" in msg
    canvas, corners, box, msg = mark(SOURCE_IMAGE, example, None, [], SimpleNamespace(index=[30, 20]))
    assert corners == [(30, 20)] and box == "" and "First corner at (30, 20)" in msg
    canvas, corners, box, msg = mark(SOURCE_IMAGE, example, None, corners, SimpleNamespace(index=[5, 4]))
    assert box == "5, 4, 30, 20" and "type its class name" in msg and canvas[20, 5:31].any()
    assert "is empty" in mark(SOURCE_IMAGE, example, None, [(7, 7)], SimpleNamespace(index=[7, 9]))[3]
    import gradio as gr

    assert mark(SOURCE_IMAGE, example, None, [(7, 7)], SimpleNamespace(index=None)) == (gr.skip(),) * 4  # beside
    assert "outside example" in fns["show_box"].fn(SOURCE_IMAGE, example, None, "0, 0, 41, 30")[3]
    assert "no exemplar image yet" in mark(SOURCE_OTHER, example, None, [], SimpleNamespace(index=[1, 1]))[3]
    assert fns["use_exemplar_image"].fn(example, SOURCE_IMAGE, None)[0] == SOURCE_OTHER   # an exemplar image
    state, rows, msg = add(SOURCE_IMAGE, example, None, box, "", None)
    assert len(state) == 0 and rows == [] and "no class name" in msg
    assert "no box" in add(SOURCE_IMAGE, example, None, "", "shape", state)[2]
    state, rows, msg = add(SOURCE_IMAGE, example, None, box, "my shape", state)
    assert rows == [["my shape", "example.png", "5, 4, 30, 20"]] and "Added an exemplar of my shape" in msg
    state, rows, _ = add(SOURCE_OTHER, None, example, "0, 0, 40, 30", "red star", state)   # another image
    assert len(rows) == 2 and len(svc.exemplar_images) == 1                              # the same pixels
    message, timing, image, rows, json_path = request(example, TYPED, "red star, blue ring", 0.0, 100, state)
    assert message == "" and {(r[0], r[6]) for r in rows} == {("red star", "text + exemplar"), ("blue ring", "text"),
                                                            ("my shape", "exemplar")}
    assert {r[0] for r in request(example, TYPED, "", 0.0, 100, state)[3]} == {"red star", "my shape"}
    state, rows, msg = clear()
    assert len(state) == 0 and rows == [] and "cleared" in msg
    assert {r[0] for r in rescore(example, TYPED, "red star", 0.0, 100, state)[3]} == {"red star"}


# ------------------------------------------------------------------ the command
def test_serve_errors_before_any_work(tmp_path, capsys, monkeypatch):
    from unidetector.cli import main

    missing = tmp_path / "no_experiment"
    assert main(["serve", "--work-dir", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("unidet serve: error: no trained models to serve")
    assert f"unidet experiment --quick --work-dir {missing}" in err and "--proposal-checkpoint" in err
    assert main(["serve", "--host", "0.0.0.0", "--work-dir", str(missing)]) == 2
    err = capsys.readouterr().err
    assert "WARNING: listening on 0.0.0.0:7860" in err and "error: no trained models" in err
    ckpt = tmp_path / "s2.pkl"
    ckpt.write_bytes(b"x")
    assert main(["serve", "--checkpoint", str(ckpt)]) == 2
    assert "--checkpoint needs --proposal-checkpoint" in capsys.readouterr().err
    assert main(["serve", "--checkpoint", str(ckpt), "--proposal-checkpoint", str(tmp_path / "s1.pkl")]) == 2
    assert "s1.pkl: file not found" in capsys.readouterr().err
    for opts, match in ((["--port", "70000"], "at most 65535"), (["--score-thr", "2"], "between 0 and 1"),
                        (["--max-upload-mb", "0"], "--max-upload-mb must be at least")):
        assert main(["serve", "--work-dir", str(missing), *opts]) == 2
        assert match in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)     # the default work dir, work_dirs/experiment, does not exist here
    with pytest.raises(ServeError, match=r"`unidet experiment --quick` \(about 4 minutes"):
        resolve_models()


# ------------------------------------------------------------------ README_zh
def _commands(text: str) -> tuple:
    """``(commands named as `unidet X`, other words after `unidet`)``."""
    from unidetector.cli import _command_modules

    known = {name for name, _ in _command_modules()}
    found = set(re.findall(r"\bunidet ([a-z][a-z0-9-]*)", text))
    return {c for c in found if c in known}, {c for c in found if c not in known}


def test_readme_zh_lists_the_same_commands_as_readme():
    en = (ROOT / "README.md").read_text(encoding="utf-8")
    zh = (ROOT / "README_zh.md").read_text(encoding="utf-8")
    (en_cmds, _), (zh_cmds, zh_unknown) = _commands(en), _commands(zh)
    assert not zh_unknown, f"README_zh.md names commands that do not exist: {sorted(zh_unknown)}"
    assert zh_cmds == en_cmds, (f"README.md and README_zh.md list different unidet commands: only in README.md "
                                f"{sorted(en_cmds - zh_cmds)}, only in README_zh.md {sorted(zh_cmds - en_cmds)}")
    for title in ("快速开始", "主任务", "unidet detect", "unidet serve", "真实数据"):
        assert title in zh, f"README_zh.md lacks the section {title!r}"
    for link in re.findall(r"\]\(((?:docs|README)[^)#]*)\)", zh):
        assert (ROOT / link).exists(), f"README_zh.md links {link}, which does not exist"


# ------------------------------------------------------------------ the real server in a real browser
def _browser_or_skip():
    from importlib.util import find_spec

    if find_spec("gradio") is None:
        pytest.skip("Gradio is missing: run scripts/install.sh (or .venv/bin/pip install -e '.[app]')")
    if find_spec("playwright") is None:
        pytest.skip("Playwright for Python is missing: run scripts/install.sh --reference "
                    "(or .venv/bin/pip install playwright==1.65.2; no `playwright install` needed)")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip("Debian's chromium is missing: run `sudo apt-get install chromium` "
                    "(`make test` installs it when run as root)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_serving(proc, url, log_path, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"unidet serve exited with {proc.returncode}:\n{Path(log_path).read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(1)
    pytest.fail(f"unidet serve did not answer within {timeout} s:\n{Path(log_path).read_text()[-3000:]}")


def _table(page) -> list:
    """The rendered rows of the detections table (class, score, box): Gradio's table is virtual, rows
    are ``[role=row]`` elements of ``[role=gridcell]`` cells (only those in view are rendered)."""
    return page.evaluate("""() => Array.from(document.querySelectorAll('#table [role=row].virtual-row'))
        .map(row => Array.from(row.querySelectorAll('[role=gridcell]')).map(c => c.innerText.trim()))
        .filter(r => r.length >= 6 && r[0])""")


def _threshold_between(scores) -> float:
    """A 2-decimal threshold that keeps the best few of ``scores`` (sorted, highest first) and drops some."""
    import math

    for j in (3, 2, 1, 0):
        if j < len(scores):
            cut = math.floor(scores[j] * 100) / 100
            if cut > 0 and any(s < cut for s in scores):
                return cut
    pytest.fail(f"no threshold between the scores {scores}")


EXEMPLAR_NAME = "my marked shape"
#: A page function: true once the detections table has a row of class NAME whose query is "exemplar".
_TABLE_HAS = """() => Array.from(document.querySelectorAll('#table [role=row].virtual-row')).some(row => {
    const cells = Array.from(row.querySelectorAll('[role=gridcell]')).map(c => c.innerText.trim());
    return cells[0] === 'NAME' && cells[6] === 'exemplar';
})"""


def _field(page, elem_id):
    """The text input of a one-line Gradio Textbox."""
    return page.locator(f"#{elem_id}").locator("input, textarea").first


def _click_pixel(page, selector, x, y):
    """Click the pixel ``(x, y)`` of the image shown by ``selector`` (scaled to fit and centred, as Gradio
    shows images; Gradio maps the click back to image pixels the same way)."""
    page.locator(selector).scroll_into_view_if_needed()
    px, py = page.evaluate("""([sel, x, y]) => {
        const img = document.querySelector(sel), r = img.getBoundingClientRect();
        const s = Math.min(r.width / img.naturalWidth, r.height / img.naturalHeight, 1);
        return [r.left + (r.width - img.naturalWidth * s) / 2 + x * s,
                r.top + (r.height - img.naturalHeight * s) / 2 + y * s];
    }""", [selector, x, y])
    page.mouse.click(px, py)


def _largest_object(work_dir, image_path) -> list:
    """``[x1, y1, x2, y2]`` of the largest annotated object on a test image of the world (pixels)."""
    root = Path(work_dir) / "data" / "synthetic"
    val = json.loads((root / "val_lvis.json").read_text())
    target = Path(image_path).resolve()
    ids = {im["id"] for im in val["images"] if (root / "images" / im["file_name"]).resolve() == target}
    boxes = [a["bbox"] for a in val["annotations"] if a["image_id"] in ids]
    assert boxes, f"{image_path}: no annotated objects"
    x, y, w, h = max(boxes, key=lambda b: b[2] * b[3])
    return [x, y, x + w, y + h]


def test_serve_in_a_real_browser(quick_experiment, tmp_path):
    _browser_or_skip()
    from playwright.sync_api import expect, sync_playwright

    work_dir = Path(quick_experiment[0])
    world = find_world(work_dir)
    image = world.examples[0]
    present = image_classes(work_dir, image)
    assert len(present) >= 2, f"{image}: expected at least 2 annotated classes"
    exemplar_box = _largest_object(work_dir, image)
    world_exemplar = str(world.examples[1])
    first = present
    second = present[:2]
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    log_path = tmp_path / "server.log"
    env = dict(os.environ, UNIDET_CACHE_DIR=str(tmp_path / "cache"), GRADIO_TEMP_DIR=str(tmp_path / "gradio"))
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "unidetector.cli", "serve", "--work-dir", str(work_dir),
                                 "--host", "127.0.0.1", "--port", str(port), "--score-thr", "0.1",
                                 "--max-upload-mb", "1"], stdout=log, stderr=subprocess.STDOUT, env=env,
                                cwd=tmp_path)
    try:
        _wait_until_serving(proc, url, log_path)
        # uploads over --max-upload-mb are refused by the server itself
        import httpx

        big = httpx.post(url + "gradio_api/upload", files={"files": ("big.jpg", b"\xff" * (2 * 2 ** 20))}, timeout=30)
        assert big.status_code == 413, big.text[:200]

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.set_default_timeout(60_000)
                page.goto(url)
                page.locator("#upload input[type=file]").set_input_files(image)
                expect(page.locator("#timing")).to_contain_text("press Detect")
                box = page.locator("#classes textarea")
                box.fill(", ".join(first))
                page.locator("#detect").click()
                # the first pass may compile kernels: minutes on a cold cache
                expect(page.locator("#timing")).to_contain_text("Network pass", timeout=600_000)
                assert "no network pass" not in page.locator("#timing").inner_text()
                rows = _table(page)
                assert rows, "the quick model should find something at score 0.1"
                assert {r[0] for r in rows} <= set(first), rows
                assert all(float(r[1]) >= 0.1 for r in rows)
                assert page.locator("#annotated img").count() == 1
                expect(page.locator("#json")).to_contain_text("detections_")

                # only the classes change: the cached regions are re-scored, no network pass
                box.fill(", ".join(second))
                box.press("Enter")
                expect(page.locator("#timing")).to_contain_text("no network pass", timeout=120_000)
                rows2 = _table(page)
                assert rows2 and {r[0] for r in rows2} <= set(second), rows2
                # only the threshold changes: re-scored too (the table drops the rows under it)
                cut = _threshold_between([float(r[1]) for r in rows2])
                page.locator("#threshold input[type=number]").fill(f"{cut:.2f}")
                page.locator("#threshold input[type=number]").press("Enter")
                page.wait_for_function(f"""() => {{
                    const rows = Array.from(document.querySelectorAll('#table [role=row].virtual-row'));
                    return rows.length > 0 && rows.every(r => parseFloat(r.querySelectorAll('[role=gridcell]')[1]
                        .innerText) >= {cut:.2f});
                }}""", timeout=120_000)
                rows3 = _table(page)
                assert rows3 and "no network pass" in page.locator("#timing").inner_text()
                page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
                if os.environ.get("UNIDET_APP_SCREENSHOT"):
                    shutil.copy(tmp_path / "app.png", os.environ["UNIDET_APP_SCREENSHOT"])

                # an image exemplar: an exemplar image switches the marking to it; back on the image, two
                # clicks mark the box of an annotated object, named as a class the vocabulary lacks
                page.locator("#exemplar-upload input[type=file]").set_input_files(world_exemplar)
                expect(page.locator("#exemplar-message")).to_contain_text(f"a box on {Path(world_exemplar).name}")
                expect(page.locator("#exemplar-source input[type=radio]").nth(1)).to_be_checked()
                page.locator("#exemplar-source label").filter(has_text="the image to detect in").click()
                expect(page.locator("#exemplar-message")).to_contain_text(f"a box on {Path(image).name}")
                page.locator("#threshold input[type=number]").fill("0.10")
                page.locator("#threshold input[type=number]").press("Enter")
                x1, y1, x2, y2 = (int(round(v)) for v in exemplar_box)
                _click_pixel(page, "#exemplar-canvas img", x1, y1)
                expect(page.locator("#exemplar-message")).to_contain_text("First corner")
                _click_pixel(page, "#exemplar-canvas img", x2, y2)
                expect(page.locator("#exemplar-message")).to_contain_text("type its class name")
                marked = [float(v) for v in _field(page, "exemplar-box").input_value().split(",")]
                assert np.allclose(marked, [x1, y1, x2, y2], atol=2), (marked, exemplar_box)
                _field(page, "exemplar-name").fill(EXEMPLAR_NAME)
                page.locator("#exemplar-add").click()
                expect(page.locator("#exemplar-message")).to_contain_text(f"Added an exemplar of {EXEMPLAR_NAME}")
                expect(page.locator("#exemplars")).to_contain_text(EXEMPLAR_NAME)
                # adding it re-scores the image (its regions are cached: the only pass is over the exemplar box)
                page.wait_for_function(_TABLE_HAS.replace("NAME", EXEMPLAR_NAME), timeout=300_000)
                assert "no network pass" in page.locator("#timing").inner_text()
                assert "exemplar embeddings" in page.locator("#timing").inner_text()
                # and Detect uses it too (a new JSON file, the exemplar's class in the table, marked as such)
                before = page.locator("#json").inner_text()
                page.locator("#detect").click()
                page.wait_for_function("""(before) => {
                    const el = document.querySelector('#json');
                    return el && el.innerText.includes('detections_') && el.innerText !== before;
                }""", arg=before, timeout=120_000)
                rows4 = _table(page)
                mine = [r for r in rows4 if r[0] == EXEMPLAR_NAME]
                assert mine and all(r[6] == "exemplar" for r in mine), rows4
                assert {r[6] for r in rows4 if r[0] != EXEMPLAR_NAME} <= {"text"}, rows4
                assert {r[0] for r in rows4} <= set(second) | {EXEMPLAR_NAME}, rows4
                page.screenshot(path=str(tmp_path / "app_exemplar.png"), full_page=True)
                # cleared: the next result has none of its class
                page.locator("#exemplar-clear").click()
                expect(page.locator("#exemplar-message")).to_contain_text("Exemplars cleared")
                page.wait_for_function(f"""() => {{
                    const rows = Array.from(document.querySelectorAll('#table [role=row].virtual-row'));
                    return rows.length > 0 && !rows.some(r => r.innerText.includes({EXEMPLAR_NAME!r}));
                }}""", timeout=120_000)
                assert EXEMPLAR_NAME not in page.locator("#exemplars").inner_text()

                # a text file renamed .jpg: a message, not a traceback
                fake = tmp_path / "holiday.jpg"
                fake.write_text("not a picture at all")
                page.locator("#upload button[aria-label='Clear']").click()
                page.locator("#upload input[type=file]").set_input_files(str(fake))
                expect(page.locator("#message")).to_contain_text("holiday.jpg: not an image")
                page.locator("#detect").click()
                expect(page.locator("#message")).to_contain_text("holiday.jpg: not an image")
                assert "Traceback" not in page.content()
            finally:
                browser.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
    log = log_path.read_text()
    assert "Traceback" not in log, log[-3000:]
    assert default_classes(world, work_dir)  # the page pre-fills classes of the first example
