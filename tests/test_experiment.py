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
    for step in ("world", "world_clip", "stage1", "proposals", "stage2", "test_raw", "recognition", "calibrated",
                 "control", "report"):
        assert step in on_disk["timings"], step
    assert on_disk["settings"]["jittor"].startswith("1.3")
    # the world-CLIP learnt to name regions over the whole vocabulary (320 classes: chance is 0.3 %; the last
    # logged batch of its training regions, jittered and occluded, measured 53 % after its 6 epochs, seed 0)
    wc = on_disk["world_clip"]
    assert wc["classes"] == 320 and (wc["cached"] or wc["final_region_text_accuracy"] > 30)
    # ... and names the test set's ground-truth boxes (chance 0.3 %; development world seed 7: world-CLIP 58 %,
    # stage 2 46 %; quick seed 0: 64 % and 46 %, novel 58 %): the world-CLIP tower alone, stage 2 whole
    rec = on_disk["recognition"]
    assert rec["boxes"] == on_disk["world"]["val_boxes"]
    assert rec["world_clip"]["top1"] >= 0.4 and rec["world_clip"]["colour"] >= 0.9, rec
    assert rec["stage2"]["top1"] >= 0.35 and rec["stage2"]["top1_novel"] > 0.3, rec
    # the stage-1 proposals find objects, including those of never-labelled classes (measured 0.52 / novel 0.39)
    assert on_disk["proposals"]["AR@100"] >= 0.45 and on_disk["proposals"]["novel_AR@100"] >= 0.35
    # stage 2 detects on the open-world test set at the bar, AP >= 20 % (measured AP 22.6 %, APr 22.8 %, seed
    # 0, 2026-12-01), and needs the text space to do it: the shuffled-embedding control (mean of several
    # permutations) loses it (measured AP 0.3 %, APr 0.2 %; the bar: control APr <= raw APr / 5)
    assert on_disk["lvis"]["AP"] >= 0.20 and on_disk["lvis"]["APr"] >= 0.15
    control = on_disk["control_shuffled_embeddings"]
    assert len(control["permutations"]) >= 3 and len(control["per_permutation"]["APr"]) == len(control["permutations"])
    assert on_disk["lvis"]["AP"] > 5 * control["AP"]
    assert control["APr"] <= on_disk["lvis"]["APr"] / 5
    # calibration: each calibrated run against raw with a paired bootstrap interval, and the rare-class true
    # positives the 300-detection cap keeps
    boot = on_disk["calibration_bootstrap"]
    assert boot["n_images"] == on_disk["world"]["val_images"] and boot["n_boot"] >= 200
    for diff in ("lvis_calibrated - lvis", "lvis_calibrated_train_freq - lvis"):
        d = boot["differences"][diff]["APr"]
        assert d["low"] <= d["value"] <= d["high"], (diff, d)
    assert boot["runs"]["lvis"]["AP"] == pytest.approx(on_disk["lvis"]["AP"], abs=1e-9)
    cap = on_disk["calibration_cap"]["runs"]
    assert all(0 < c["within_cap"] <= c["without_cap"] for c in cap.values()), cap
    md = (work_dir / "report.md").read_text()
    assert "| raw |" in md and "AR@100" in md and "control: shuffled text embeddings" in md
    assert "| world-CLIP (before stage 2) |" in md and "| stage 2 (trained) |" in md
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


def test_warm_plan_runs_every_step_on_a_tiny_world(tmp_path, monkeypatch):
    """``unidet doctor --warm`` compiles the quick run's kernels by running every step on a world of a few
    images: the same configs and overrides as the quick plan, so the same fused graphs. The world-CLIP is
    trained (empty cache), exported as an image tower, loaded by stage 2 through ``load_from`` and cached."""
    import pickle

    from unidetector.engine.world_clip import IMAGE_TOWER
    from unidetector.experiment import PLANS, Experiment

    monkeypatch.setenv("UNIDET_CACHE_DIR", str(tmp_path / "cache"))
    warm, quick = PLANS["warm"], PLANS["quick"]
    assert warm["stage1"]["options"] == quick["stage1"]["options"]
    assert warm["stage2"]["options"] == quick["stage2"]["options"]
    report = Experiment(tmp_path, plan="warm", progress=False, log=lambda *_: None).run()
    wc = report["world_clip"]
    assert wc["cached"] is False and (tmp_path / "cache" / "world_clip" / f"{wc['cache_key']}.pkl").is_file()
    tower = pickle.load(open(tmp_path / "work_dirs/world_clip/world_clip.pkl", "rb"))["state_dict"]
    assert tower and all(k.startswith(IMAGE_TOWER) for k in tower)
    assert any(k.startswith("roi_head.bbox_head.attnpool.") for k in tower)
    assert not any("fc_reg" in k or "zs_weights" in k for k in tower)
    # stage 2 started from it (load_from) and kept its frozen C4 backbone and layer4: the same weights after training
    stage2 = pickle.load(open(tmp_path / "work_dirs/stage2_partitioned/latest.pkl", "rb"))["state_dict"]
    frozen = [k for k in tower if k.startswith(("backbone.", "roi_head.shared_head."))
              and not k.endswith("num_batches_tracked")]
    assert any(k.startswith("roi_head.shared_head.") for k in frozen)
    assert all(np.array_equal(np.asarray(stage2[k]), np.asarray(tower[k])) for k in frozen)
    assert any(not np.array_equal(np.asarray(stage2[k]), np.asarray(tower[k])) for k in tower
               if k.startswith("roi_head.bbox_head.attnpool."))   # the attention pool was fine-tuned
    # a second run of the step takes the cached tower
    again = Experiment(tmp_path, plan="warm", progress=False, log=lambda *_: None)
    again.run(only=["world_clip"])
    assert again.report["world_clip"]["cached"] is True and again.report["world_clip"]["cache_key"] == wc["cache_key"]
    # --only continued the run's report: the other steps' results are still there, on disk too
    assert again.report["lvis"] == report["lvis"] and again.report["timings"]["stage2"] == report["timings"]["stage2"]
    assert json.loads((tmp_path / "report.json").read_text())["lvis"] == report["lvis"]
    # ... and a new experiment of the same world does not draw the web scenes at all
    fresh = Experiment(tmp_path / "second", plan="warm", progress=False, log=lambda *_: None)
    fresh.run(only=["world", "world_clip"])
    assert fresh.report["world_clip"]["cached"] is True and fresh.report["world_clip"]["cache_key"] == wc["cache_key"]
    assert fresh.report["world_clip"]["web_boxes"] == wc["web_boxes"] > 0
    assert (tmp_path / "data/synthetic/web.json").is_file() and not (fresh.world / "web.json").exists()
    assert report["mode"] == "warm" and report["world"]["train_a_images"] == 8
    assert set(report["timings"]) >= {"world", "world_clip", "stage1", "proposals", "stage2", "test_raw",
                                      "recognition", "calibrated", "control", "exemplars"}
    # the recognition step names every ground-truth test box with both image towers (values are fractions)
    rec = report["recognition"]
    assert rec["boxes"] == report["world"]["val_boxes"] > 0 and rec["attributes"] == ["colour", "pattern", "shape"]
    for tower in ("world_clip", "stage2"):
        assert all(0.0 <= rec[tower][k] <= 1.0 for k in ("top1", "colour", "pattern", "shape")), rec[tower]
    assert "## Naming found objects" in (tmp_path / "report.md").read_text()
    ex = report["exemplars"]
    assert len(ex["novel_classes"]) == len(report["world"]["novel_classes"]) > 0
    assert {"AP", "APr", "novel_AP"} <= set(ex["text"]) and {"AP", "APr", "novel_AP"} <= set(ex["exemplar_for_novel"])
    assert "one image exemplar" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "report.md").exists() and (tmp_path / "work_dirs/stage2_partitioned/latest.pkl").exists()
    with pytest.raises(ValueError, match="unknown experiment plan 'huge'"):
        Experiment(tmp_path, plan="huge")


def test_world_clip_cache_key():
    """The key changes with what the world-CLIP's weights depend on (world version, seed, web set, recipe,
    epochs, bfloat16 training convolutions) and not with where the files are."""
    from mmengine import Config

    from unidetector.engine.world_clip import cache_key

    world = {"version": 3, "seed": 0, "embed_dim": 1024, "stats": {"web_images": 4000, "web_boxes": 4000}}
    cfg = Config(dict(model=dict(type="FastRCNN", roi_head=dict(temperature=0.01)), optimizer=dict(lr=0.002),
                      data=dict(samples_per_gpu=64, train=dict(ann_file="/a/data/synthetic/web.json"), test=dict(x=1)),
                      lr_config=dict(step=[1, 2]), runner=dict(max_epochs=6)))
    key = cache_key(world, cfg, 6)
    assert key == cache_key(dict(world), Config(cfg.to_dict()), 6)
    # known before the web scenes are drawn (a cached world-CLIP never needs them)
    assert key == cache_key(dict(world, stats={"web_images": 4000}), cfg, 6)
    moved = Config(cfg.to_dict())
    moved.data.train.ann_file = "/elsewhere/data/synthetic/web.json"
    moved.data.test = dict(x=2)   # the test set does not change the pretraining
    assert cache_key(world, moved, 6) == key
    changed = [cache_key(dict(world, seed=1), cfg, 6), cache_key(dict(world, version=4), cfg, 6),
               cache_key(dict(world, stats={"web_images": 8, "web_boxes": 8}), cfg, 6), cache_key(world, cfg, 5)]
    lr = Config(cfg.to_dict())
    lr.optimizer.lr = 0.003
    changed.append(cache_key(world, lr, 6))
    from unidetector.models.layers import channels_last
    from unidetector.ops import onednn

    with channels_last.training_dtype("bfloat16"):  # mixed-precision training convolutions, where they exist
        if onednn.bf16_supported():
            changed.append(cache_key(world, cfg, 6))
        else:
            assert cache_key(world, cfg, 6) == key  # float32 all the same
    assert len(set(changed + [key])) == len(changed) + 1

def test_experiment_amp_runs_every_step_with_bfloat16_training_convolutions(tmp_path):
    """``unidet experiment --amp``: each step runs with channels_last.train_dtype() bfloat16 where the processor has
    it (float32 elsewhere), recorded in the report's settings; without it float32, and the process-wide setting is
    float32 again afterwards; a wrong UNIDET_TRAIN_DTYPE is a usage error before any step."""
    from unidetector.experiment import Experiment
    from unidetector.models.layers import channels_last
    from unidetector.ops import onednn

    seen = []

    class Probe(Experiment):
        def step_stage1_probe(self):  # a training step's name
            seen.append(channels_last.train_dtype())

    reports = {}
    for amp in (True, False):
        job = Probe(tmp_path / str(amp), amp=amp, log=lambda *_: None)
        job.work_dir.mkdir(parents=True)
        job.run_steps(["stage1_probe"], None, job.work_dir / "report.json", 0.0)
        reports[amp] = json.loads((job.work_dir / "report.json").read_text())
    want = "bfloat16" if onednn.bf16_supported() else "float32"
    assert seen == [want, "float32"]
    assert reports[True]["settings"]["train_dtype"] == want and reports[False]["settings"]["train_dtype"] == "float32"
    assert channels_last.TRAIN_DTYPE == "float32"
    # --only re-training the --amp run's step in float32: the report says the run is mixed (where bf16 ran at all)
    again = Probe(tmp_path / "True", log=lambda *_: None)
    again.continue_report(again.work_dir / "report.json")
    again.run_steps(["stage1_probe"], ["stage1_probe"], again.work_dir / "report.json", 0.0)
    assert again.report["settings"]["train_dtype"] == ("mixed" if want == "bfloat16" else "float32")
    from unidetector.errors import UsageError

    seen.clear()
    with channels_last.training_dtype("fp16"), pytest.raises(UsageError, match="UNIDET_TRAIN_DTYPE .*got 'fp16'"):
        Probe(tmp_path / "bad", log=lambda *_: None).run_steps(["stage1_probe"], None, tmp_path / "bad.json", 0.0)
    assert seen == []  # refused before the step


def test_only_names_what_earlier_steps_must_leave_and_continues_the_report(tmp_path):
    """``--only``: a step whose inputs are missing stops before anything runs, naming the files, the steps that make
    them and a command that runs them; a report already in the work dir is continued (its other entries kept), and
    one of another plan or seed is refused."""
    from unidetector.errors import UsageError
    from unidetector.experiment import Experiment

    work = tmp_path / "e"
    job = Experiment(work, quick=True, log=lambda *_: None)
    with pytest.raises(UsageError) as e:
        job.run(only=["test_raw"])
    msg = str(e.value)
    for part in ("world.json (made by step world)", "rp_val_lvis.pkl (made by step proposals)",
                 "latest.pkl (made by step stage2)",
                 f"--plan quick --seed 0 --work-dir {work} --only world world_clip stage1 proposals stage2 test_raw"):
        assert part in msg, (part, msg)
    assert not work.exists()
    job.check_earlier_steps(["world", "world_clip"])  # world_clip's input is made by a chosen step before it
    from unidetector.ablations import STEPS as ABLATION_STEPS, Ablations

    ablations = Ablations(work, quick=True, log=lambda *_: None)
    assert set(ablations.needs) | {"world"} == set(ABLATION_STEPS) and set(ablations.produces) <= set(ABLATION_STEPS)
    with pytest.raises(UsageError, match=r"partitioned\.json \(made by step test\).*--ablations --plan quick"):
        ablations.run(only=["report"])  # (it wrote an empty ablations.md)
    assert not work.exists()

    work.mkdir()
    report = {"mode": "quick", "seed": 0, "timings": {"world": 1.0, "total": 9.0}, "lvis": {"AP": 0.2},
              "settings": {"train_dtype": "float32"}}
    (work / "report.json").write_text(json.dumps(report))
    job = Experiment(work, quick=True, log=lambda *_: None)
    job.continue_report(work / "report.json")
    assert job.report["lvis"] == {"AP": 0.2} and job.report["timings"] == report["timings"]
    for other in (dict(quick=False), dict(quick=True, seed=1)):
        with pytest.raises(UsageError, match="would mix two runs"):
            Experiment(work, log=lambda *_: None, **other).continue_report(work / "report.json")
    (work / "report.json").write_text("{not json")
    with pytest.raises(UsageError, match="not a readable experiment report"):
        Experiment(work, quick=True, log=lambda *_: None).continue_report(work / "report.json")
