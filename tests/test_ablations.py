"""``unidet experiment --ablations`` (``unidetector/ablations.py``, ``ablations_report.py``): the recall bootstrap,
the merged label space, claims and verdicts on known cases, and every step of the plan on a tiny world."""
import json

import numpy as np
import pytest
from PIL import Image

from unidetector.ablations import bootstrap_recall, calibrated_run, unified_training_set
from unidetector.ablations_report import (FAILS, HOLDS, INCONCLUSIVE, claim_rows, seed_spread, spread_table, verdict,
                                          write_seed_spread)
from unidetector.evaluation import bootstrap_lvis, proposal_recall_report


def _lvis_gt(n_images=6, per_image=3, seed=0):
    """A small LVIS-format ground truth: 3 categories (r, c, f), exhaustive labels."""
    rng = np.random.default_rng(seed)
    cats = [dict(id=i + 1, name=f"class {i}", frequency=f) for i, f in enumerate("rcf")]
    images, anns = [], []
    for k in range(n_images):
        images.append(dict(id=k + 1, width=200, height=200, file_name=f"{k}.jpg", not_exhaustive_category_ids=[],
                           neg_category_ids=[]))
        for j in range(per_image):
            x, y = rng.uniform(0, 120, size=2)
            w, h = rng.uniform(20, 70, size=2)
            anns.append(dict(id=len(anns) + 1, image_id=k + 1, category_id=int(1 + (k + j) % 3), bbox=[x, y, w, h],
                             area=w * h, iscrowd=0))
    for im in images:
        present = {a["category_id"] for a in anns if a["image_id"] == im["id"]}
        im["neg_category_ids"] = [c["id"] for c in cats if c["id"] not in present]
    return dict(images=images, annotations=anns, categories=cats)


def _perfect(gt, score=1.0):
    return [dict(image_id=a["image_id"], category_id=a["category_id"], bbox=list(a["bbox"]), score=score)
            for a in gt["annotations"]]


def _gt_proposals(gt, jitter=0.0, seed=0):
    """Per image an (n, 5) array of its objects' boxes (xyxy, moved by up to ``jitter`` of their size), score 1."""
    rng = np.random.default_rng(seed)
    out = []
    for im in gt["images"]:
        boxes = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                          for a in gt["annotations"] if a["image_id"] == im["id"]], np.float32).reshape(-1, 4)
        size = np.concatenate([boxes[:, 2:] - boxes[:, :2]] * 2, 1)
        boxes = boxes + rng.uniform(-jitter, jitter, boxes.shape) * size
        out.append(np.concatenate([boxes, np.ones((len(boxes), 1), np.float32)], 1))
    return out


def test_bootstrap_recall_full_set_equals_proposal_recall_and_known_differences():
    gt = _lvis_gt()
    ids = [im["id"] for im in gt["images"]]
    exact, jittered = _gt_proposals(gt), _gt_proposals(gt, jitter=0.15, seed=1)
    empty = [np.zeros((0, 5), np.float32) for _ in ids]
    subsets = {"rare": [1], "other": [2, 3]}
    out = bootstrap_recall(gt, {"exact": exact, "jittered": jittered, "empty": empty},
                           [("empty", "exact"), ("exact", "exact"), ("exact", "jittered")], subsets, n_boot=200, seed=3)
    # the full test set gives proposal_recall_report's numbers
    for name, props in (("exact", exact), ("jittered", jittered)):
        direct = proposal_recall_report(gt, ids, props, proposal_nums=(100, 300), cat_subsets=subsets)
        assert out["runs"][name] == pytest.approx(direct, abs=1e-12)
    assert out["runs"]["exact"]["AR@100"] == 1.0 and out["runs"]["empty"]["rare_AR@300"] == 0.0
    # exact boxes recall everything in every resample; no proposals nothing: the difference is 1 with no spread
    assert out["differences"]["exact - empty"]["rare_AR@100"] == {"value": 1.0, "low": 1.0, "high": 1.0}
    assert out["differences"]["exact - exact"]["AR@100"] == {"value": 0.0, "low": 0.0, "high": 0.0}
    d = out["differences"]["jittered - exact"]["AR@100"]
    assert d["value"] < 0 and d["low"] <= d["value"] <= d["high"] <= 0
    assert out["intervals"]["jittered"]["AR@100"][0] < out["intervals"]["jittered"]["AR@100"][1]
    assert out["n_images"] == len(ids) and out["n_boot"] == 200


def test_verdicts():
    assert verdict(dict(value=0.1, low=0.02, high=0.2)) == HOLDS
    assert verdict(dict(value=-0.1, low=-0.2, high=-0.01)) == FAILS
    assert verdict(dict(value=0.05, low=-0.01, high=0.1)) == INCONCLUSIVE
    assert verdict(dict(value=0.0, low=0.0, high=0.0)) == INCONCLUSIVE
    assert verdict(dict(value=-0.1, low=-0.2, high=-0.01), direction=-1) == HOLDS
    assert verdict(dict(value=float("nan"), low=float("nan"), high=float("nan"))) == "undefined"


def test_claims_from_the_bootstrap_on_a_known_case():
    """Perfect detections vs detections of half the objects, and a run against itself: the claims table reads
    the bootstrap's differences and judges them."""
    gt = _lvis_gt(n_images=8)
    perfect = _perfect(gt)
    half = [d for k, d in enumerate(perfect) if k % 2]
    runs = {"partitioned": perfect, "rpn_proposals": half, "single_b": perfect, "unified": perfect + half,
            calibrated_run("raw_results", 0.6): half, calibrated_run("train_freq", 0.6): perfect}
    pairs = [("rpn_proposals", "partitioned"), ("single_b", "partitioned"), ("unified", "partitioned"),
             ("partitioned", calibrated_run("raw_results", 0.6)), ("partitioned", calibrated_run("train_freq", 0.6))]
    boot = bootstrap_lvis(gt, runs, pairs, n_boot=100, seed=0)
    assert boot["runs"]["partitioned"]["AP"] == pytest.approx(1.0)
    rows = claim_rows(dict(runs={n: {} for n in runs}, bootstrap=boot, calibration=dict(config_gamma=0.6)))
    by = {(r["comparison"], r["metric"]): r for r in rows}
    assert by[("stage 2 on CLN vs on RPN proposals", "AP")]["verdict"] == HOLDS       # perfect beats half
    assert by[("partitioned heads vs one dataset only (b)", "AP")]["verdict"] == INCONCLUSIVE  # identical runs
    cal = [r for r in rows if r["claim"].startswith("3.")]
    assert [r["verdict"] for r in cal] == [FAILS, INCONCLUSIVE] and all(r["metric"] == "APr" for r in cal)
    d = by[("stage 2 on CLN vs on RPN proposals", "AP")]["difference"]
    assert d == boot["differences"]["partitioned - rpn_proposals"]["AP"] and d["low"] > 0


def test_seed_spread_of_the_claims(tmp_path):
    """Per-seed differences, their mean and sample sd, and the count of seeds whose bootstrap verdict holds, from
    claim rows of three seeds (one claim missing in a seed is left out of the spread)."""
    def row(metric, value, low, high):
        return dict(claim="c", comparison="x vs y", metric=metric, paper="higher", verdict=verdict(dict(low=low,
                    high=high)), difference=dict(value=value, low=low, high=high))

    claims = {0: [row("AP", 0.02, 0.01, 0.03), row("APr", 0.1, 0.0, 0.2)],
              1: [row("AP", 0.04, 0.02, 0.06)],
              2: [row("AP", -0.01, -0.02, 0.01)]}
    rows = seed_spread(claims)
    assert [r["metric"] for r in rows] == ["AP"]
    r = rows[0]
    assert r["values"] == {0: 0.02, 1: 0.04, 2: -0.01}
    assert r["mean"] == pytest.approx(np.mean([0.02, 0.04, -0.01]))
    assert r["sd"] == pytest.approx(np.std([0.02, 0.04, -0.01], ddof=1))
    assert r["verdicts"] == {0: HOLDS, 1: HOLDS, 2: INCONCLUSIVE}
    table = spread_table(rows)
    assert table[2].endswith("| +2.0 | +4.0 | -1.0 | +1.7 ± 2.5 | 2 of 3 |")
    reports = {s: dict(mode="quick", ablations=dict(claims=c), timings=dict(total=10.0 + s)) for s, c in claims.items()}
    write_seed_spread(reports, tmp_path, log=lambda *_: None)
    assert json.loads((tmp_path / "spread.json").read_text())["seeds"] == [0, 1, 2]
    assert "2 of 3" in (tmp_path / "spread.md").read_text()


def test_unified_training_set_merges_the_label_spaces(tmp_path):
    from unidetector.data.proposals import load_proposals, save_proposals
    from unidetector.data.synthetic import generate_world
    from unidetector.text.embeddings import load_embeddings

    world = generate_world(str(tmp_path), seed=0, size="tiny")
    sets = list(world["training_sets"])
    n_props = {}
    for k in sets:  # stand-in proposal files (stage 1's), a distinct count per image
        data = json.loads((tmp_path / f"train_{k}.json").read_text())
        props = [np.tile(np.float32([[1, 1, 20, 20, 0.5]]), (1 + i % 3, 1)) for i in range(len(data["images"]))]
        save_proposals(props, str(tmp_path / f"rp_train_{k}.pkl"))
        n_props[k] = [len(p) for p in props]
    info = unified_training_set(tmp_path, world)
    merged = json.loads((tmp_path / "train_unified.json").read_text())
    parts = [json.loads((tmp_path / f"train_{k}.json").read_text()) for k in sets]
    assert [c["id"] for c in merged["categories"]] == sorted(world["vocabularies"]["seen"])
    assert info == dict(images=sum(len(p["images"]) for p in parts), boxes=sum(len(p["annotations"]) for p in parts),
                        classes=len(world["vocabularies"]["seen"]))
    assert len({a["id"] for a in merged["annotations"]}) == len(merged["annotations"])
    assert [len(p) for p in load_proposals(str(tmp_path / "rp_train_unified.pkl"))] == sum(n_props.values(), [])
    emb, test = load_embeddings(tmp_path / "emb_unified.npy"), load_embeddings(tmp_path / "emb_lvis.npy")
    ids = [c["id"] for c in world["classes"]]
    np.testing.assert_array_equal(emb, test[[ids.index(c["id"]) for c in merged["categories"]]])
    cat_info = json.loads((tmp_path / "train_unified_cat_info.json").read_text())
    counts = {c["id"]: c["image_count"] for c in cat_info}
    for c in world["classes"]:  # the merged counts are the world's training image counts
        if c["id"] in counts:
            assert counts[c["id"]] == c["train_image_count"]


def test_ablation_plan_runs_every_variant_on_a_tiny_world(tmp_path):
    """Every step of the plan on the warm plan's world of a few images: every variant trains and is tested, the
    bootstrap covers every run and difference, the report has the claims table and its figures."""
    from unidetector.ablations import GAMMAS, STEPS, Ablations

    logs = []
    report = Ablations(tmp_path, plan="warm", progress=False, log=logs.append, n_boot=20).run()
    on_disk = json.loads((tmp_path / "ablations.json").read_text())
    abl = on_disk["ablations"]
    assert set(STEPS) <= set(on_disk["timings"]) and on_disk["timings"]["total"] > 0
    variants = {"partitioned", "rpn_proposals", "single_b", "unified"}
    calibrated = {calibrated_run(p, g) for p in ("raw_results", "train_freq") for g in GAMMAS}
    assert set(abl["runs"]) == variants | calibrated
    assert all(r["detections"] > 0 for r in abl["runs"].values())
    for v in ("stage1_rpn", "stage2_rpn", "stage2_single", "stage2_unified"):
        assert abl["variants"][v]["iterations"] > 0, v
    # same budget: every variant runs about as many iterations as the model it is compared with (the one-dataset
    # run more epochs over fewer images); the loader may add an iteration per aspect-ratio group
    for v in ("stage1_rpn", "stage2_rpn", "stage2_single", "stage2_unified"):
        info = abl["variants"][v]
        assert abs(info["iterations"] - info["reference_iterations"]) <= max(2, 0.05 * info["reference_iterations"])
    assert abl["variants"]["stage2_single"]["epochs"] > abl["variants"]["stage2_unified"]["epochs"]
    boot = abl["bootstrap"]
    assert set(boot["runs"]) == set(abl["runs"]) and boot["n_boot"] == 20
    assert {"partitioned - rpn_proposals", "partitioned - single_b", "partitioned - unified"} <= set(
        boot["differences"])
    assert all(0.0 <= boot["runs"][n]["AP"] <= 1.0 for n in boot["runs"])
    recall = abl["proposal_recall"]
    assert set(recall["runs"]) == {"CLN", "RPN"} and "novel_AR@100" in recall["differences"]["CLN - RPN"]
    assert recall["runs"]["CLN"]["AR@100"] == pytest.approx(report["proposals"]["AR@100"], abs=1e-9)
    claims = abl["claims"]
    assert {r["claim"][:2] for r in claims} == {"1.", "2.", "3."}
    assert all(r["verdict"] in (HOLDS, FAILS, INCONCLUSIVE, "undefined") for r in claims)
    md = (tmp_path / "ablations.md").read_text()
    assert "## Claims" in md and "| claim | comparison |" in md and md.count("\n| 1. ") >= 4
    for png in ("ablation_proposals.png", "ablation_stage2.png", "ablation_calibration.png"):
        assert f"]({png})" in md
        with Image.open(tmp_path / png) as im:
            assert im.size[0] >= 300 and np.asarray(im.convert("L")).std() > 5
    # --only continues the report on disk: re-scoring and re-reporting keep the earlier steps' sections
    Ablations(tmp_path, plan="warm", progress=False, log=logs.append, n_boot=10).run(only=["bootstrap", "report"])
    again = json.loads((tmp_path / "ablations.json").read_text())
    assert again["ablations"]["bootstrap"]["n_boot"] == 10 and again["ablations"]["variants"] == abl["variants"]
    with pytest.raises(ValueError, match="unknown ablation step"):
        Ablations(tmp_path, plan="warm").run(only=["control"])


def test_cli_only_takes_the_steps_of_the_chosen_plan(tmp_path, capsys):
    from unidetector.cli import main

    assert main(["experiment", "--ablations", "--plan", "warm", "--work-dir", str(tmp_path), "--only",
                 "control"]) == 2
    err = capsys.readouterr().err
    assert "--only control: not a step of the ablation plan" in err and "stage2_unified" in err
    assert main(["experiment", "--work-dir", str(tmp_path), "--only", "stage2_rpn"]) == 2
    assert "not a step of the experiment" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # refused before any work
    assert main(["experiment", "--seeds", "0", "1", "--work-dir", str(tmp_path)]) == 2
    assert "--seeds goes with --ablations" in capsys.readouterr().err
    assert main(["experiment", "--ablations", "--seed", "3", "--seeds", "0", "1", "--work-dir", str(tmp_path)]) == 2
    assert "--seed and --seeds together" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
