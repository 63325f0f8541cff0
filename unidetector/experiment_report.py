"""``report.json`` → ``report.md`` and PNGs for ``unidet experiment``."""
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


def detections_grid(world_dir: Path, results_file: Path, out: Path, num: int = 6, score_thr: float = 0.3) -> int:
    """Draw the top detections of test images with novel classes (novel boxes highlighted)."""
    import pickle

    from .data.transforms import read_image
    from .visualize import class_color, draw_detections, image_grid, save_rgb

    world = json.loads((world_dir / "world.json").read_text())
    gt = json.loads((world_dir / "val_lvis.json").read_text())
    novel = set(world["vocabularies"]["novel"])
    cats = sorted(gt["categories"], key=lambda c: c["id"])
    with open(results_file, "rb") as f:
        results = pickle.load(f)
    with_novel = {a["image_id"] for a in gt["annotations"] if a["category_id"] in novel}
    order = [i for i, img in enumerate(gt["images"]) if img["id"] in with_novel]
    order += [i for i in range(len(gt["images"])) if i not in order]
    tiles = []
    for i in order[:num]:
        img_info = gt["images"][i]
        name = img_info.get("file_name") or img_info["coco_url"].split("/", 3)[-1]
        img = read_image(str(world_dir / "images" / name), channel_order="rgb")
        boxes, texts, colors, hi = [], [], [], []
        for label, dets in enumerate(results[i]):
            for d in np.asarray(dets).reshape(-1, 5):
                if d[4] >= score_thr:
                    if cats[label]["id"] in novel:
                        hi.append(len(boxes))
                    boxes.append(d[:4])
                    texts.append(f"{cats[label]['name']} {d[4]:.2f}" + (" *" if cats[label]["id"] in novel else ""))
                    colors.append(class_color(label))
        tiles.append(draw_detections(img, boxes, texts, colors, highlight=hi))
    save_rgb(out, image_grid(tiles))
    return len(tiles)


def write_report(report: dict, out_dir: Path, world_dir: Path, raw_results: Path, log=print) -> None:
    """``report.md`` and its figures in ``out_dir``; ``raw_results``: the raw test results drawn as detections."""
    from .visualize import bar_chart, save_rgb

    out_dir = Path(out_dir)
    groups = {m: {name: report[key].get(m) for key, name in RUNS if key in report} for m in ("AP", "APr", "APc", "APf")}
    save_rgb(out_dir / "ap_by_frequency.png",
             bar_chart(groups, title="LVIS-style AP on the synthetic test set (r = novel/rare classes)"))
    figures = ["ap_by_frequency.png"]
    raw = Path(raw_results)
    if raw.exists():
        detections_grid(world_dir, raw, out_dir / "detections.png")
        figures.append("detections.png")
    prop = report.get("proposals", {})
    lines = [f"# UniDetector on the synthetic open world ({report['mode']}, seed {report['seed']})", "",
             "## Proposals (stage 1, class-agnostic, on the test set)", "",
             "| | AR@100 | AR@300 | AR@1000 |", "|---|---|---|---|"]
    for name, prefix in (("all", ""), ("seen classes", "seen_"), ("novel classes", "novel_")):
        if f"{prefix}AR@100" in prop:
            lines.append(f"| {name} | " + " | ".join(f"{prop[f'{prefix}AR@{k}']:.3f}" for k in (100, 300, 1000)) + " |")
    lines += ["", "## Open-world detection (stage 2, all classes incl. novel ones; AP in %)", "",
              results_table(report), "",
              "APr covers the rare classes, which include every novel class (never labelled in training).", ""]
    lines += exemplar_section(report.get("exemplars"))
    lines += ["## Timings (s)", "", "| step | seconds |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in report.get("timings", {}).items()]
    lines += [""] + [f"![{f}]({f})" for f in figures]
    (out_dir / "report.md").write_text("\n".join(lines) + "\n")
    log("\n" + results_table(report))
