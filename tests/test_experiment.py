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
    # the stage-1 proposals find objects, including those of never-labelled classes (issue goal: AR@100 >= 0.5;
    # measured 0.56 / novel 0.58 on the development machine)
    assert on_disk["proposals"]["AR@100"] >= 0.5 and on_disk["proposals"]["novel_AR@100"] >= 0.4
    # stage 2 detects on the open-world test set, and needs the text space to do it: the shuffled-embedding
    # control (mean of several permutations) loses most of it (measured: AP 8.1 % vs 1.1 %, APr 8.5 % vs 1.6 %;
    # the bar for APr is 3x)
    control = on_disk["control_shuffled_embeddings"]
    assert len(control["permutations"]) >= 3 and len(control["per_permutation"]["APr"]) == len(control["permutations"])
    assert on_disk["lvis"]["AP"] > 3 * control["AP"]
    assert on_disk["lvis"]["APr"] >= 3 * control["APr"]
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


def test_derangement_has_no_fixed_point():
    from unidetector.experiment import derangement

    perm = derangement(48, 1)
    assert sorted(perm) == list(range(48)) and not (perm == np.arange(48)).any()


def test_warm_plan_runs_every_step_on_a_tiny_world(tmp_path):
    """``unidet doctor --warm`` compiles the quick run's kernels by running every step on a world of a few
    images: the same configs and overrides as the quick plan, so the same fused graphs."""
    from unidetector.experiment import PLANS, Experiment

    warm, quick = PLANS["warm"], PLANS["quick"]
    assert warm["stage1"]["options"] == quick["stage1"]["options"]
    assert warm["stage2"]["options"] == quick["stage2"]["options"]
    report = Experiment(tmp_path, plan="warm", progress=False, log=lambda *_: None).run()
    assert report["mode"] == "warm" and report["world"]["train_a_images"] == 8
    assert set(report["timings"]) >= {"world", "stage1", "proposals", "stage2", "test_raw", "calibrated", "control",
                                      "exemplars"}
    ex = report["exemplars"]
    assert len(ex["novel_classes"]) == len(report["world"]["novel_classes"]) > 0
    assert {"AP", "APr", "novel_AP"} <= set(ex["text"]) and {"AP", "APr", "novel_AP"} <= set(ex["exemplar_for_novel"])
    assert "one image exemplar" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "report.md").exists() and (tmp_path / "work_dirs/stage2_partitioned/latest.pkl").exists()
    with pytest.raises(ValueError, match="unknown experiment plan 'huge'"):
        Experiment(tmp_path, plan="huge")
