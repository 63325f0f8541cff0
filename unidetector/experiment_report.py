"""``report.json`` → ``report.md`` and its matplotlib figures for ``unidet experiment``: AP by frequency (with the
calibration bootstrap's intervals), detections on test images with novel classes, the calibration section."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

RUNS = [("lvis", "raw"), ("lvis_calibrated", "calibrated (prior: raw test results)"),
        ("lvis_calibrated_train_freq", "calibrated (prior: training frequencies)"),
        ("control_shuffled_embeddings", "control: shuffled text embeddings")]
METRICS = ["AP", "AP50", "AP75", "APr", "APc", "APf"]


def _fmt(v) -> str:
    return "–" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{100 * v:.1f}"


def results_table(report: dict) -> str:
    """Markdown table of the LVIS-style metrics (in %) of every test run in ``report``."""
    rows = ["| run | " + " | ".join(METRICS) + " |", "|---|" + "---|" * len(METRICS)]
    for key, name in RUNS:
        if key in report:
            rows.append(f"| {name} | " + " | ".join(_fmt(report[key].get(m)) for m in METRICS) + " |")
    return "\n".join(rows)


def exemplar_section(ex: dict | None) -> list:
    """Markdown lines comparing novel classes given by name (text) and by one image exemplar each."""
    if not ex:
        return []
    rows = ["## Novel classes from one image exemplar (instead of their names)", "",
            f"The {len(ex['novel_classes'])} novel classes ({', '.join(ex['novel_classes'])}) are given by one "
            "exemplar each: a box on an image, embedded through the same backbone, RoIAlign, layer4 and attention "
            "pool as the regions; every other class keeps its text embedding. AP in %.", "",
            "| vocabulary | AP (novel classes) | APr | AP |", "|---|---|---|---|"]
    for key, name in (("text", "text for every class"), ("exemplar_for_novel", "exemplars for the novel classes")):
        m = ex[key]
        rows.append(f"| {name} | {_fmt(m.get('novel_AP'))} | {_fmt(m.get('APr'))} | {_fmt(m.get('AP'))} |")
    return rows + [""]


def recognition_section(rec: dict | None) -> list:
    """Markdown lines of the experiment's ``recognition`` step: top-1 naming of the ground-truth test boxes."""
    if not rec:
        return []
    attrs = rec.get("attributes", [])
    lines = ["## Naming found objects: top-1 on the ground-truth test boxes (%)", "",
             f"Each of the {rec['boxes']} ground-truth test boxes is given as the proposal and named by the nearest "
             "text embedding of the whole test vocabulary: how well a model names an object once it is found "
             "(localisation aside). Attributes: the share of boxes whose predicted class has the right one.", "",
             "| image tower | top-1 | seen classes | novel classes | " + " | ".join(attrs) + " |",
             "|---|---|---|---|" + "---|" * len(attrs)]
    for key, name in (("world_clip", "world-CLIP (before stage 2)"), ("stage2", "stage 2 (trained)")):
        m = rec.get(key)
        if m:
            lines.append(f"| {name} | " + " | ".join(_fmt(m.get(k)) for k in ["top1", "top1_seen", "top1_novel"]
                                                    + attrs) + " |")
    return lines + [""]


def _pct(v, signed: bool = False) -> str:
    if v is None or not np.isfinite(v):
        return "–"
    return f"{100 * v:+.1f}" if signed else f"{100 * v:.1f}"


def _with_interval(v, lo, hi, signed: bool = False) -> str:
    return f"{_pct(v, signed)} [{_pct(lo, signed)}, {_pct(hi, signed)}]"


def run_name(name: str) -> str:
    """The display name of a run key of ``report`` (``"lvis"`` → ``"raw"``); other names unchanged."""
    return dict(RUNS).get(name, name)


def bootstrap_intervals(boot: dict | None) -> dict | None:
    """``{display name: {metric: (low, high)}}`` from a :func:`~unidetector.evaluation.bootstrap_lvis` result."""
    if not boot or not boot.get("intervals"):
        return None
    return {run_name(n): {m: tuple(v) for m, v in iv.items()} for n, iv in boot["intervals"].items()}


def calibration_section(boot: dict | None, cap: dict | None) -> list:
    """Markdown lines: each run's metrics and each difference with its bootstrap interval (``boot``: the dict
    :func:`~unidetector.evaluation.bootstrap_lvis` returns) and the rare-class true positives of ``cap``."""
    if not boot and not cap:
        return []
    lines = ["## Calibration: raw vs calibrated", ""]
    if boot:
        level = f"{100 * boot.get('level', 0.95):g} %"
        metrics = list(next(iter(boot["runs"].values()), {}))
        lines += [f"Paired bootstrap over the {boot['n_images']} test images ({boot['n_boot']} resamples with "
                  "replacement; every run is scored on the same resampled image sets). AP in %, differences in "
                  f"points; brackets: {level} intervals — percentile intervals of the paired differences, and for "
                  "each run its value ± 1.96 bootstrap standard deviations (with one or two test objects per "
                  "class, resampled AP is biased, so a run's percentile interval can miss its own value).", "",
                  "| run | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
        intervals = boot.get("intervals", {})
        for name, vals in boot["runs"].items():
            iv = intervals.get(name, {})
            lines.append(f"| {run_name(name)} | " + " | ".join(
                _with_interval(vals[m], *iv[m]) if m in iv else _pct(vals[m]) for m in metrics) + " |")
        lines += ["", "| difference | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
        verdicts = []
        for key, diff in boot.get("differences", {}).items():
            label = _difference_name(key, boot["runs"])
            lines.append(f"| {label} | " + " | ".join(
                _with_interval(d["value"], d["low"], d["high"], signed=True) for d in diff.values()) + " |")
            if "APr" in diff:
                verdicts.append(f"- {label}: APr {_verdict(diff['APr'], level)}")
        lines += [""] + verdicts + ([""] if verdicts else [])
    lines += cap_section(cap)
    return lines


def _difference_name(key: str, runs: dict) -> str:
    for b in runs:
        for a in runs:
            if key == f"{b} - {a}":
                return f"{run_name(b)} − {run_name(a)}"
    return key


def _verdict(d: dict, level: str) -> str:
    what = (f"{_pct(d['value'], True)} points ({level} interval {_pct(d['low'], True)} to "
            f"{_pct(d['high'], True)})")
    if not np.isfinite(d["low"]) or not np.isfinite(d["high"]):
        return f"{what}: undefined in some resamples"
    if d["low"] > 0:
        return f"{what}: lifted"
    if d["high"] < 0:
        return f"{what}: lowered"
    return f"{what}: no detectable change (the interval contains 0)"


CAP_COLUMNS = {"within_cap": "within the per-image cap", "without_cap": "without the cap",
               "weight_rare_over_frequent": "calibration weight of rare / frequent classes (means)"}


def cap_section(cap: dict | None) -> list:
    """Markdown lines: rare-class true positives per run within the per-image cap of 300 detections and
    without it. ``cap``: ``{run: {"within_cap": n, "without_cap": m, ...}}``, optionally under ``"runs"``, with
    scalar entries (e.g. ``"iou": 0.5``) listed as notes."""
    if not cap:
        return []
    runs = cap.get("runs", {k: v for k, v in cap.items() if isinstance(v, dict)})
    notes = {k: v for k, v in cap.items() if k != "runs" and not isinstance(v, dict)}
    cols = list(dict.fromkeys(k for v in runs.values() for k in v))
    removed = {"within_cap", "without_cap"} <= set(cols)
    lines = ["### Rare-class true positives and the cap of detections per image", "",
             "True positives (IoU ≥ 0.5, LVIS matching) among the detections of rare classes, counted within the "
             "per-image cap of the evaluation and without it.", ""]
    lines += [f"- {k}: {v}" for k, v in notes.items()] + ([""] if notes else [])
    header = [CAP_COLUMNS.get(c, c) for c in cols] + (["removed by the cap"] if removed else [])
    lines += ["| run | " + " | ".join(header) + " |", "|---|" + "---|" * len(header)]
    for name, v in runs.items():
        row = [f"{v[c]:.2f}" if isinstance(v.get(c), float) else str(v.get(c, "–")) for c in cols]
        if removed:
            row.append(str(v["without_cap"] - v["within_cap"]))
        lines.append(f"| {run_name(name)} | " + " | ".join(row) + " |")
    return lines + [""]


def novel_class_ids(world: dict) -> set:
    """Ids of the classes never labelled in training: ``split == "novel"`` in ``world.json``'s classes, and the
    ``"novel"`` vocabulary (ids or names)."""
    by_name = {c["name"]: c["id"] for c in world.get("classes", [])}
    ids = {c["id"] for c in world.get("classes", []) if c.get("split") == "novel"}
    return ids | {by_name.get(v, v) for v in world.get("vocabularies", {}).get("novel", [])}


def detections_grid(world_dir: Path, results_file: Path, out: Path, num: int = 6, score_thr: float = 0.3,
                    max_per_image: int = 15, display_iou: float | None = 0.7) -> int:
    """Draw the raw detections on the first ``num`` test images that contain novel-class objects.

    Boxes with score ≥ ``score_thr``, at most ``max_per_image``; where boxes of several classes cover one object
    (IoU > ``display_iou``) only the highest-scoring one is drawn (``None``: all). Labels: class name and score;
    novel classes marked. Returns the number of images drawn.
    """
    import pickle

    import cv2

    from .data.synthetic import load_world
    from .data.transforms import read_image
    from .visualize import detections_figure

    world_dir = Path(world_dir)
    world = load_world(world_dir)
    gt = json.loads((world_dir / "val_lvis.json").read_text())
    novel = novel_class_ids(world)
    cats = sorted(gt["categories"], key=lambda c: c["id"])
    names = {c["id"]: c["name"] for c in cats}
    with open(results_file, "rb") as f:
        results = pickle.load(f)
    novel_in = {}
    for a in gt["annotations"]:
        if a["category_id"] in novel:
            novel_in.setdefault(a["image_id"], set()).add(a["category_id"])
    order = [i for i, img in enumerate(gt["images"]) if img["id"] in novel_in]
    order += [i for i in range(len(gt["images"])) if gt["images"][i]["id"] not in novel_in]
    tiles = []
    for i in order[:num]:
        img_info = gt["images"][i]
        name = img_info.get("file_name") or img_info["coco_url"].split("/", 3)[-1]
        img = read_image(str(world_dir / "images" / name), channel_order="rgb")
        dets = [(d[:4], float(d[4]), cats[label]["id"]) for label, per_class in enumerate(results[i])
                for d in np.asarray(per_class).reshape(-1, 5) if d[4] >= score_thr]
        dets.sort(key=lambda d: -d[1])
        if display_iou is not None and dets:
            xywh = [[float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])] for b, _, _ in dets]
            keep = np.asarray(cv2.dnn.NMSBoxes(xywh, [s for _, s, _ in dets], score_thr, display_iou)).ravel()
            dets = [dets[k] for k in sorted(int(k) for k in keep)]
        dets = dets[:max_per_image]
        seen_novel = ", ".join(names[c] for c in sorted(novel_in.get(img_info["id"], ())))
        title = f"{Path(name).name}" + (f" (novel: {seen_novel})" if seen_novel else "")
        tiles.append((img, np.array([b for b, _, _ in dets]).reshape(-1, 4),
                      [f"{names[c]} {s:.2f}" for _, s, c in dets], [c in novel for _, _, c in dets],
                      title if len(title) <= 70 else title[:67] + "..."))
    if tiles:
        detections_figure(tiles, out)
    return len(tiles)


def write_report(report: dict, out_dir: Path, world_dir: Path, raw_results: Path, log=print) -> None:
    """``report.md`` and its figures in ``out_dir``; ``raw_results``: the raw test results drawn as detections."""
    from .visualize import ap_by_frequency_figure

    out_dir = Path(out_dir)
    boot = report.get("calibration_bootstrap")
    runs = {name: report[key] for key, name in RUNS if key in report}
    intervals = bootstrap_intervals(boot)
    ap_by_frequency_figure(runs, intervals, out_dir / "ap_by_frequency.png",
                           title="LVIS-style AP on the synthetic test set (r: rare classes, incl. every novel one)"
                           + (f"\nerror bars: {100 * boot.get('level', 0.95):g} % bootstrap intervals over test images"
                              if intervals else ""))
    figures = [("ap_by_frequency.png", "AP by class frequency")]
    raw = Path(raw_results)
    if raw.exists() and detections_grid(world_dir, raw, out_dir / "detections.png"):
        figures.append(("detections.png", "raw detections on test images with novel classes (dashed: novel class; "
                        "one box per object, the highest-scoring)"))
    prop = report.get("proposals", {})
    amp = report.get("settings", {}).get("train_dtype") == "bfloat16"
    lines = [f"# UniDetector on the synthetic open world ({report['mode']}, seed {report['seed']}"
             f"{', --amp: bfloat16 training convolutions' if amp else ''})", "",
             "## Proposals (stage 1, class-agnostic, on the test set)", "",
             "| | AR@100 | AR@300 | AR@1000 |", "|---|---|---|---|"]
    for name, prefix in (("all", ""), ("seen classes", "seen_"), ("novel classes", "novel_")):
        if f"{prefix}AR@100" in prop:
            lines.append(f"| {name} | " + " | ".join(f"{prop[f'{prefix}AR@{k}']:.3f}" for k in (100, 300, 1000)) + " |")
    lines += ["", "## Open-world detection (stage 2, all classes incl. novel ones; AP in %)", "",
              results_table(report), "",
              "APr covers the rare classes, which include every novel class (never labelled in training).", ""]
    lines += recognition_section(report.get("recognition"))
    lines += calibration_section(boot, report.get("calibration_cap"))
    lines += exemplar_section(report.get("exemplars"))
    lines += ["## Timings (s)", "", "| step | seconds |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in report.get("timings", {}).items()]
    lines += [""] + [f"![{alt}]({f})" for f, alt in figures]
    (out_dir / "report.md").write_text("\n".join(lines) + "\n")
    log("\n" + results_table(report))
