"""`unidet serve` (the web app) and README_zh.md.

Fast: upload checks, vocabulary menu, the request service on a stand-in detector (filtering, re-scoring
line, bounded caches and files), the command's errors, README_zh lists the same commands as README.md.
Slow (the quick experiment): the real server on 127.0.0.1 and a free port, driven by Playwright in
Debian's headless Chromium (no browser download): upload, type classes, detect, re-score without a
network pass, a text file renamed .jpg, the upload byte limit, a screenshot (``UNIDET_APP_SCREENSHOT=PATH``
also copies it there, e.g. docs/images/app.png).
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
    coco, builtin = menu.names("COCO (80 classes)", "", lim)
    assert len(coco) == 80 and coco[0] == "person" and builtin
    for typed, expected in (("", "no classes"), ("a,b,c,d", "up to 3"), ("a very long class name", "22 characters long; the limit is 14"),
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

    def detect(self, rgb, classes):
        from unidetector.api import Detections

        self.encoders_used.append(self.encoder.id)
        self._embeddings[tuple(classes)] = self.encoder.encode(classes)
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
    assert first.rows[0][2:] == [1.0, 2.0, 10.0, 12.0] and first.annotated[0, 0, 0] == 2
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
    from unidetector.app.ui import CONCURRENCY_ID, build_demo, configure_queue

    example = str(_png(tmp_path / "example.png"))
    fake = tmp_path / "fake.jpg"
    fake.write_text("text")
    svc = DetectionService(FakeDetector(), Limits(), out_dir=tmp_path / "json")
    demo = build_demo(svc, VocabularyMenu(["red star", "blue ring"]), [example, str(fake)], "red star")
    configure_queue(demo, queue_size=5)
    ids = {b.elem_id for b in demo.blocks.values() if getattr(b, "elem_id", None)}
    assert ids >= {"upload", "examples", "vocabulary", "classes", "threshold", "max-dets", "detect", "message",
                   "timing", "annotated", "table", "json"}
    fns = {f.name: f for f in demo.fns.values()}
    assert {(f.concurrency_limit, f.concurrency_id) for f in demo.fns.values()} == {(1, CONCURRENCY_ID)}
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
    (en_cmds, en_unknown), (zh_cmds, zh_unknown) = _commands(en), _commands(zh)
    assert not zh_unknown, f"README_zh.md names commands that do not exist: {sorted(zh_unknown)}"
    assert zh_cmds == en_cmds, (f"README.md and README_zh.md list different unidet commands: only in README.md "
                                f"{sorted(en_cmds - zh_cmds)}, only in README_zh.md {sorted(zh_cmds - en_cmds)}")
    for title in ("快速开始", "主任务", "unidet detect", "unidet serve", "真实数据"):
        assert title in zh, f"README_zh.md lacks the section {title!r}"
    for link in re.findall(r"\]\(((?:docs|README)[^)#]*)\)", zh):
        assert (ROOT / link).exists(), f"README_zh.md links {link}, which does not exist"


# ------------------------------------------------------------------ the real server in a real browser
def _browser_or_skip():
    try:
        import gradio  # noqa: F401
    except ImportError:
        pytest.skip("Gradio is missing: run scripts/install.sh (or .venv/bin/pip install -e '.[app]')")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
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


def test_serve_in_a_real_browser(quick_experiment, tmp_path):
    _browser_or_skip()
    from playwright.sync_api import expect, sync_playwright

    work_dir = Path(quick_experiment[0])
    world = find_world(work_dir)
    image = world.examples[0]
    present = image_classes(work_dir, image)
    assert len(present) >= 2, f"{image}: expected at least 2 annotated classes"
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
