"""The report's matplotlib figures (``visualize.py``, ``plot_log.py``, ``experiment_report.py``): files written,
round axis ticks, legends clear of the data, novel classes marked; ``write_report`` on a small synthetic report and
a tiny fake world. No Jittor."""
import json
import pickle

import cv2
import numpy as np
import pytest
from PIL import Image

from unidetector.evaluation import bootstrap_lvis, results_to_coco_json
from unidetector.experiment_report import RUNS, write_report
from unidetector.plot_log import LogFileError, log_figure, plot_log, read_log
from unidetector.visualize import NOVEL_LEGEND, ap_by_frequency_figure, detections_figure

PATTERNS, COLOURS, SHAPES = ("striped", "dotted", "plain"), ("red", "blue", "green"), ("star", "circle", "cross")
RGB = {"red": (220, 40, 40), "blue": (40, 60, 220), "green": (40, 170, 60)}


def assert_round_ticks(ticks, lo, hi):
    """Ticks inside [lo, hi] are evenly spaced by 1, 2, 2.5 or 5 × 10^k and multiples of that step."""
    t = np.array([v for v in ticks if lo - 1e-9 <= v <= hi + 1e-9])
    assert len(t) >= 3, t
    step = np.diff(t)
    assert np.allclose(step, step[0]), t
    mantissa = step[0] / 10 ** np.floor(np.log10(step[0]))
    assert any(np.isclose(mantissa, m) for m in (1, 2, 2.5, 5)), t
    assert np.allclose(t / step[0], np.round(t / step[0])), t


def extents(fig, artists):
    renderer = fig.canvas.get_renderer()
    return [a.get_window_extent(renderer) for a in artists]


def overlaps(a, b) -> bool:
    return min(a.x1, b.x1) > max(a.x0, b.x0) and min(a.y1, b.y1) > max(a.y0, b.y0)


def legend_of(fig):
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    assert len(legends) == 1
    return legends[0]


RUN_VALUES = {"raw": dict(AP=0.243, APr=0.121, APc=0.25, APf=0.31),
              "calibrated (prior: raw test results)": dict(AP=0.251, APr=0.16, APc=0.248, APf=0.305),
              "calibrated (prior: training frequencies)": dict(AP=0.249, APr=0.15, APc=0.246, APf=0.309),
              "control: shuffled text embeddings": dict(AP=0.02, APr=0.011, APc=0.02, APf=0.03)}


def test_ap_by_frequency_bars_intervals_round_ticks_and_legend_clear(tmp_path):
    intervals = {k: {m: (v * 0.8, v * 1.15) for m, v in d.items()} for k, d in list(RUN_VALUES.items())[:3]}
    fig = ap_by_frequency_figure(RUN_VALUES, intervals, tmp_path / "ap.png")
    with Image.open(tmp_path / "ap.png") as im:
        assert im.format == "PNG" and im.size[0] >= 800
    ax = fig.axes[0]
    fig.canvas.draw()
    lo, hi = ax.get_ylim()
    assert lo == 0 and hi >= 100 * 0.31 * 1.15 and hi in ax.get_yticks()  # data fits, the axis ends on a tick
    assert_round_ticks(ax.get_yticks(), lo, hi)
    bars = [p for p in ax.patches]
    assert len(bars) == 16 and max(b.get_height() for b in bars) == pytest.approx(31.0)
    caps = [c for c in ax.containers if type(c).__name__ == "ErrorbarContainer"]
    assert len(caps) == 3  # one per run with intervals, none for the control
    top = max(seg[1][1] for c in caps for seg in c.lines[2][0].get_segments())
    assert top == pytest.approx(100 * 0.31 * 1.15)
    legend = legend_of(fig)
    assert [t.get_text() for t in legend.get_texts()] == list(RUN_VALUES)
    box = extents(fig, [legend])[0]
    assert not any(overlaps(box, b) for b in extents(fig, bars + list(ax.texts)))
    assert not overlaps(box, ax.get_window_extent(fig.canvas.get_renderer()))  # outside the axes
    assert fig.bbox.contains(box.x0, box.y0) and fig.bbox.contains(box.x1, box.y1)  # not cut off


def test_ap_by_frequency_without_intervals_skips_missing_values(tmp_path):
    runs = {"raw": dict(AP=0.0123, APr=float("nan"), APc=0.004, APf=-1.0)}  # -1: LVIS's "no category"
    fig = ap_by_frequency_figure(runs, None, tmp_path / "ap.png")
    ax = fig.axes[0]
    assert len(ax.patches) == 2 and not [c for c in ax.containers if type(c).__name__ == "ErrorbarContainer"]
    fig.canvas.draw()
    assert_round_ticks(ax.get_yticks(), *ax.get_ylim())


def test_detections_figure_marks_novel_classes_with_readable_labels(tmp_path):
    rng = np.random.default_rng(0)
    tiles = []
    for k in range(4):
        img = np.full((448, 448, 3), 235, np.uint8)
        boxes = [[40 + 60 * j, 200, 90 + 60 * j, 250] for j in range(4)]  # a row: labels wider than the boxes
        labels = [f"striped red star {rng.uniform(0.3, 1):.2f}", "dotted blue circle 0.81", "plain green cross",
                  "dotted blue circle 0.40"]
        tiles.append((img, np.array(boxes, float), labels, [True, False, False, False], f"image {k}"))
    fig = detections_figure(tiles, tmp_path / "det.png", cols=3)
    with Image.open(tmp_path / "det.png") as im:
        assert im.size[0] >= 1200
    image_axes = [ax for ax in fig.axes if ax.images]
    assert len(image_axes) == 4
    ax = image_axes[0]
    rects = ax.patches
    assert len(rects) == 4 and rects[0].get_linestyle() != rects[1].get_linestyle()  # novel: dashed
    texts = [t for t in ax.texts]
    assert sorted(t.get_text() for t in texts) == sorted(tiles[0][2])
    novel_text = next(t for t in texts if t.get_text().startswith("striped"))
    assert novel_text.get_fontstyle() == "italic" and texts[1].get_fontstyle() == "normal"
    assert all(t.get_fontsize() >= 8 and t.get_bbox_patch().get_facecolor()[3] > 0.5 for t in texts)
    # one colour per class: both "dotted blue circle" boxes share it, the others differ
    colours = [tuple(r.get_edgecolor()) for r in rects]
    assert colours[1] == colours[3] and len({colours[0], colours[1], colours[2]}) == 3
    boxes = extents(fig, texts)
    assert not any(overlaps(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:])  # labels don't cover labels
    legend = legend_of(fig)
    assert NOVEL_LEGEND in [t.get_text() for t in legend.get_texts()]
    box = extents(fig, [legend])[0]
    assert not any(overlaps(box, a) for a in extents(fig, image_axes))
    assert fig.bbox.contains(box.x0, box.y0) and fig.bbox.contains(box.x1, box.y1)
    with pytest.raises(ValueError, match="no images"):
        detections_figure([], tmp_path / "none.png")


def write_log(path, n=120, with_val=True):
    rng = np.random.default_rng(0)
    with open(path, "w") as f:
        for i in range(1, n + 1):
            f.write(json.dumps(dict(mode="train", epoch=1 + i // 50, iter=i % 50, global_iter=i,
                                    lr=0.02 * min(1, i / 20), loss=2 * np.exp(-i / 40) + 0.2 * rng.random(),
                                    loss_cls=np.exp(-i / 30), loss_scale=512.0, acc=0.5)) + "\n")
            if with_val and i % 50 == 0:
                f.write(json.dumps(dict(mode="val", epoch=i // 50, AP=0.1)) + "\n")


def test_plot_log_panels_share_x_with_round_ticks(tmp_path):
    write_log(tmp_path / "log.jsonl")
    keys = plot_log(tmp_path / "log.jsonl", tmp_path / "curves.png")
    assert keys == ["loss", "loss_cls", "lr"]
    with Image.open(tmp_path / "curves.png") as im:
        assert im.format == "PNG" and im.size == (900, 3 * 260 + 30)
    fig = log_figure(read_log(tmp_path / "log.jsonl"), keys)
    fig.canvas.draw()
    axes = fig.axes
    assert [ax.get_ylabel() for ax in axes] == keys and axes[-1].get_xlabel() == "iteration"
    assert all(ax.get_shared_x_axes().joined(axes[0], ax) for ax in axes)
    assert_round_ticks(axes[-1].get_xticks(), *axes[-1].get_xlim())
    assert all(float(t).is_integer() for t in axes[-1].get_xticks())
    for ax in axes:
        assert_round_ticks(ax.get_yticks(), *ax.get_ylim())
    legend = legend_of(fig)  # raw and moving average of the noisy curves, above the panels
    assert [t.get_text() for t in legend.get_texts()] == ["per logged iteration", "moving average"]
    box = extents(fig, [legend])[0]
    assert not any(overlaps(box, a) for a in extents(fig, axes)) and fig.bbox.contains(box.x1, box.y1)
    assert plot_log(tmp_path / "log.jsonl", tmp_path / "lr.png", keys=["lr", "nope"]) == ["lr"]


def test_plot_log_errors(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"mode": "train", "loss": 1}\nnot json\n')
    with pytest.raises(LogFileError, match=r"bad.jsonl:2: not a JSON line"):
        plot_log(tmp_path / "bad.jsonl", tmp_path / "x.png")
    (tmp_path / "val.jsonl").write_text('{"mode": "val", "AP": 0.1}\n')
    with pytest.raises(LogFileError, match="no training records"):
        plot_log(tmp_path / "val.jsonl", tmp_path / "x.png")
    write_log(tmp_path / "log.jsonl", n=5)
    with pytest.raises(LogFileError, match="none of the requested keys"):
        plot_log(tmp_path / "log.jsonl", tmp_path / "x.png", keys=["loss_bbox"])


def test_plot_log_command(tmp_path, capsys):
    from unidetector.cli import main

    write_log(tmp_path / "log.jsonl", n=8, with_val=False)  # few points: no moving average, no legend
    assert main(["plot-log", str(tmp_path / "log.jsonl"), "--out", str(tmp_path / "c.png"), "--keys", "loss"]) == 0
    assert "c.png: loss" in capsys.readouterr().out
    with Image.open(tmp_path / "c.png") as im:
        assert np.asarray(im.convert("L")).std() > 5


def fake_world(root, n_images=6, seed=0):
    """world.json, val_lvis.json, images/ and raw mmdet-style results of a tiny world of 27 classes named
    "<pattern> <colour> <shape>", 5 of them novel."""
    rng = np.random.default_rng(seed)
    names = [f"{p} {c} {s}" for p in PATTERNS for c in COLOURS for s in SHAPES]
    novel = [1, 5, 11, 19, 26]
    classes = [dict(id=k + 1, name=n, split="novel" if k + 1 in novel else "seen-ab", frequency="rcf"[k % 3])
               for k, n in enumerate(names)]
    for c in classes:
        c["frequency"] = "r" if c["id"] in novel else c["frequency"]
    (root / "images").mkdir(parents=True)
    images, anns, results = [], [], []
    for i in range(n_images):
        img = np.full((448, 448, 3), 225, np.uint8)
        cats = rng.choice(len(names), size=4, replace=False) + 1
        if i % 2 == 0:
            cats[0] = novel[i % len(novel)]
        per_class = [np.zeros((0, 5), np.float32) for _ in names]
        for j, c in enumerate(cats):
            x, y, w = 20 + 105 * j, float(rng.uniform(20, 300)), float(rng.uniform(50, 90))
            colour = RGB[names[c - 1].split()[1]]
            cv2.rectangle(img, (int(x), int(y)), (int(x + w), int(y + w)), colour, -1)
            anns.append(dict(id=len(anns) + 1, image_id=i + 1, category_id=int(c), bbox=[x, y, w, w], area=w * w,
                             iscrowd=0))
            per_class[c - 1] = np.vstack([per_class[c - 1], [[x + 1, y, x + w, y + w - 1, rng.uniform(0.4, 0.95)]]])
            other = int(rng.integers(len(names)))  # a second class on the same object
            per_class[other] = np.vstack([per_class[other], [[x, y + 2, x + w, y + w, rng.uniform(0.3, 0.9)]]])
        per_class[3] = np.vstack([per_class[3], [[5, 5, 60, 40, 0.1]]])  # below the drawing threshold
        cv2.imwrite(str(root / "images" / f"{i:04d}.png"), img[:, :, ::-1])
        present = {int(c) for c in cats}
        images.append(dict(id=i + 1, file_name=f"{i:04d}.png", width=448, height=448,
                           neg_category_ids=[c["id"] for c in classes if c["id"] not in present][:10],
                           not_exhaustive_category_ids=[]))
        results.append([r.astype(np.float32) for r in per_class])
    gt = dict(images=images, annotations=anns, categories=[
        dict(id=c["id"], name=c["name"], frequency=c["frequency"]) for c in classes])
    (root / "world.json").write_text(json.dumps(dict(classes=classes, vocabularies=dict(novel=novel))))
    (root / "val_lvis.json").write_text(json.dumps(gt))
    with open(root / "raw.pkl", "wb") as f:
        pickle.dump(results, f)
    return gt, results


def test_write_report_with_calibration_bootstrap_and_cap(tmp_path):
    world = tmp_path / "world"
    gt, results = fake_world(world)
    img_ids, cat_ids = [im["id"] for im in gt["images"]], [c["id"] for c in gt["categories"]]
    raw = results_to_coco_json(results, img_ids, cat_ids)
    rng = np.random.default_rng(1)
    calibrated = [dict(d, score=d["score"] * rng.uniform(0.5, 1.5)) for d in raw]  # re-ranked within classes
    boot = bootstrap_lvis(gt, {"lvis": raw, "lvis_calibrated": calibrated}, [("lvis", "lvis_calibrated")], n_boot=30)
    report = dict(mode="full", seed=0, proposals={"AR@100": 0.7, "AR@300": 0.75, "AR@1000": 0.8},
                  lvis=dict(boot["runs"]["lvis"], AP50=0.5, AP75=0.3),
                  lvis_calibrated=dict(boot["runs"]["lvis_calibrated"]),
                  control_shuffled_embeddings=dict(AP=0.01, APr=0.0, APc=0.02, APf=0.01),
                  calibration_bootstrap=boot,
                  calibration_cap={"iou": 0.5, "runs": {"lvis": dict(within_cap=7, without_cap=12),
                                                        "lvis_calibrated": dict(within_cap=10, without_cap=12)}},
                  timings=dict(world=1.0, total=2.0))
    out = tmp_path / "out"
    out.mkdir()
    logged = []
    write_report(report, out, world, world / "raw.pkl", log=logged.append)
    md = (out / "report.md").read_text()
    assert "## Calibration: raw vs calibrated" in md and "30 resamples" in md and "6 test images" in md
    lo, hi = boot["intervals"]["lvis"]["APr"]
    assert f"| raw | {100 * boot['runs']['lvis']['AP']:.1f} [" in md and f"[{100 * lo:.1f}, {100 * hi:.1f}]" in md
    d = boot["differences"]["lvis_calibrated - lvis"]["AP"]
    assert f"| calibrated (prior: raw test results) − raw | {100 * d['value']:+.1f} [{100 * d['low']:+.1f}, " in md
    assert "- calibrated (prior: raw test results) − raw: APr " in md and d["low"] < d["high"]
    assert "| calibrated (prior: raw test results) | 10 | 12 | 2 |" in md and "- iou: 0.5" in md
    assert "![AP by class frequency](ap_by_frequency.png)" in md and "(detections.png)" in md
    assert "| raw |" in logged[0]
    for png in ("ap_by_frequency.png", "detections.png"):
        with Image.open(out / png) as im:
            assert im.size[0] >= 800 and np.asarray(im.convert("L")).std() > 5


def test_detections_grid_draws_novel_images_one_box_per_object(tmp_path):
    from unidetector.experiment_report import detections_grid

    gt, results = fake_world(tmp_path)
    seen = {}

    def spy(tiles, out, cols=3):
        seen["tiles"] = tiles
        return detections_figure(tiles, out, cols)

    import unidetector.visualize as vis
    real, vis.detections_figure = vis.detections_figure, spy
    try:
        assert detections_grid(tmp_path, tmp_path / "raw.pkl", tmp_path / "d.png", num=3) == 3
    finally:
        vis.detections_figure = real
    tiles = seen["tiles"]
    novel_names = {c["name"] for c in json.loads((tmp_path / "world.json").read_text())["classes"]
                   if c["split"] == "novel"}
    novel_ids = {c["id"] for c in json.loads((tmp_path / "world.json").read_text())["classes"]
                 if c["split"] == "novel"}
    with_novel = [im for im in gt["images"]
                  if any(a["image_id"] == im["id"] and a["category_id"] in novel_ids for a in gt["annotations"])]
    assert len(with_novel) < len(gt["images"])
    for (img, boxes, labels, novel, title), info in zip(tiles, with_novel[:3], strict=True):
        assert img.shape == (448, 448, 3) and title.startswith(info["file_name"]) and "(novel: " in title
        n_objects = sum(a["image_id"] == info["id"] for a in gt["annotations"])
        assert len(boxes) == len(labels) == len(novel) == n_objects  # duplicates on an object and 0.1 dropped
        assert all(float(lab.rsplit(" ", 1)[1]) >= 0.3 for lab in labels)
        assert novel == [lab.rsplit(" ", 1)[0] in novel_names for lab in labels] and any(novel)


def test_report_runs_are_named_like_the_results_table():
    assert dict(RUNS)["lvis"] == "raw" and "lvis_calibrated_train_freq" in dict(RUNS)
