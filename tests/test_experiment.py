"""``unidet experiment --quick``: the whole pipeline on the synthetic world, and its report."""
import json

import numpy as np
import pytest
from PIL import Image

REQUIRED = ["proposals.AR@100", "proposals.seen_AR@100", "proposals.novel_AR@100",
            "lvis.AP", "lvis.APr", "lvis.APc", "lvis.APf",
            "lvis_calibrated.AP", "lvis_calibrated.APr", "lvis_calibrated.APc", "lvis_calibrated.APf",
            "lvis_calibrated_train_freq.AP", "control_shuffled_embeddings.APr"]


def lookup(report, dotted):
    section, metric = dotted.split(".", 1)
    return report[section][metric]


@pytest.mark.slow
def test_quick_experiment_report(quick_experiment):
    work_dir, report = quick_experiment
    on_disk = json.loads((work_dir / "report.json").read_text())
    assert on_disk["mode"] == "quick" and on_disk["timings"]["total"] > 0
    for key in REQUIRED:
        value = lookup(on_disk, key)
        assert isinstance(value, float) and np.isfinite(value) and 0.0 <= value <= 1.0, (key, value)
    for step in ("world", "stage1", "proposals", "stage2", "test_raw", "calibrated", "control", "report"):
        assert step in on_disk["timings"], step
    assert on_disk["settings"]["jittor"].startswith("1.3")
    # the stage-1 proposals find objects, including those of never-labelled classes
    assert on_disk["proposals"]["AR@100"] > 0.2 and on_disk["proposals"]["novel_AR@100"] > 0.1
    # stage 2 detects something on the open-world test set, and needs the text space to do it
    assert on_disk["lvis"]["AP"] > 0.0
    assert on_disk["lvis"]["AP"] > on_disk["control_shuffled_embeddings"]["AP"]
    md = (work_dir / "report.md").read_text()
    assert "| raw |" in md and "AR@100" in md and "control: shuffled text embeddings" in md
    for png in ("ap_by_frequency.png", "detections.png"):
        with Image.open(work_dir / png) as im:
            im.verify()
        with Image.open(work_dir / png) as im:
            assert im.size[0] >= 300 and np.asarray(im).std() > 5  # a real picture, not a blank
    # the files a user continues from
    for f in ("work_dirs/stage1_cln/latest.pkl", "work_dirs/stage2_partitioned/latest.pkl",
              "data/synthetic/rp_val_lvis.pkl", "results/raw_val_lvis.pkl", "data/synthetic/prior_from_raw.npy"):
        assert (work_dir / f).exists(), f
