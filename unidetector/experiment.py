"""The whole UniDetector pipeline on the synthetic open world (``unidet experiment``).

Steps (each through the same code paths as real data: configs, ``train``, ``proposals``, ``test``,
``calibrate``):

1. ``world``      generate the synthetic world and its text embeddings (``unidet data synth``);
2. ``stage1``     train the class-agnostic CLN on training sets A + B;
3. ``proposals``  dump proposals for A, B and the test set; AR@100/300/1000 for seen vs novel classes;
4. ``stage2``     train the partitioned CLIP RoI classifier on A and B, each with its own vocabulary;
5. ``test_raw``   open-world test on the LVIS-style set with the full vocabulary (raw scores);
6. ``calibrated`` the same with the class prior from the raw results (official, transductive) and
                  with a prior from the training-set frequencies;
7. ``control``    the raw test with the test vocabulary's embeddings shuffled across classes: zero-shot
                  transfer must collapse without a meaningful text space;
8. ``report``     ``report.json``, ``report.md`` and PNGs (AP per frequency, detections on test images).

Everything runs with the work dir as current directory, so the synthetic configs' relative paths
(``data/synthetic/...``, ``work_dirs/...``) land inside it.
"""
from __future__ import annotations

import json
import os
import platform
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "synthetic"
WORLD = Path("data/synthetic")

# Per stage: epochs and extra config overrides (``{"a.b": value}``, as ``--cfg-options``).
PLANS = {
    "quick": dict(size="small", estimate_min=8, stage1=dict(epochs=1, options={}), stage2=dict(epochs=2, options={})),
    "full": dict(size="small", estimate_min=20, stage1=dict(epochs=6, options={}), stage2=dict(epochs=4, options={})),
}


def _schedule(epochs: int, iters_per_epoch: int) -> dict:
    """``epochs`` with lr steps at 2/3 and 11/12 of the iterations (the official 8 and 11 of 12 epochs),
    counted in iterations so that runs of one or two epochs decay too."""
    total = epochs * iters_per_epoch
    return {"runner.max_epochs": epochs, "lr_config.by_epoch": False,
            "lr_config.step": [max(1, round(total * 2 / 3)), max(1, round(total * 11 / 12))]}


@contextmanager
def _cwd(path: Path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


class Experiment:
    """Run the steps in order, timing each; ``report`` accumulates what ``report.json`` holds."""

    def __init__(self, work_dir, quick: bool = False, seed: int = 0, progress: bool = True, log=print):
        self.work_dir = Path(work_dir).resolve()
        self.mode = "quick" if quick else "full"
        self.plan = PLANS[self.mode]
        self.seed, self.progress, self.log = seed, progress, log
        self.report = {"mode": self.mode, "seed": seed, "timings": {}}
        self.steps = [("world", self.make_world), ("stage1", self.train_stage1), ("proposals", self.dump_proposals),
                      ("stage2", self.train_stage2), ("test_raw", self.test_raw),
                      ("calibrated", self.test_calibrated), ("control", self.test_shuffled_embeddings),
                      ("report", self.write_report)]

    # -- helpers ----------------------------------------------------------------------------------
    def config(self, name: str, options: dict | None = None):
        """A synthetic config with ``{"a.b.c": value}`` overrides (as ``--cfg-options``)."""
        from .config import load_config

        cfg = load_config(CONFIGS / name, options)
        cfg.seed = self.seed
        return cfg

    def stage_config(self, name: str, stage: dict):
        """The training config of one stage with the plan's schedule and overrides."""
        stats = self.world_meta()["stats"]
        cfg = self.config(name, stage.get("options"))
        n_images = stats["train_a_images"] + stats["train_b_images"]
        iters = -(-n_images // int(cfg.data.get("samples_per_gpu", 2)))
        cfg.merge_from_dict(_schedule(stage["epochs"], iters))
        return cfg

    def world_meta(self) -> dict:
        return json.loads((WORLD / "world.json").read_text())

    # -- steps ------------------------------------------------------------------------------------
    def make_world(self):
        from .data.synthetic import generate_world

        world = generate_world(str(WORLD), seed=self.seed, size=self.plan["size"])
        self.report["world"] = {"size": self.plan["size"], **world["stats"],
                                "classes": len(world["classes"]),
                                "novel_classes": [c["name"] for c in world["classes"] if c["split"] == "novel"]}

    def train_stage1(self):
        from .engine.runner import train_from_config

        cfg = self.stage_config("stage1_cln.py", self.plan["stage1"])
        train_from_config(cfg, work_dir="work_dirs/stage1_cln", seed=self.seed, validate=False,
                          progress=self.progress)

    def dump_proposals(self):
        from .engine.proposals import generate_proposals

        cfg = self.config("stage1_cln.py", self.plan["stage1"].get("options"))
        world = self.world_meta()
        subsets = {"seen": world["vocabularies"]["seen"], "novel": world["vocabularies"]["novel"]}
        runs = [("train_a.json", "rp_train_a.pkl", None), ("train_b.json", "rp_train_b.pkl", None),
                ("val_lvis.json", "rp_val_lvis.pkl", subsets)]
        for ann, out, cats in runs:
            recall = generate_proposals(cfg, "work_dirs/stage1_cln/latest.pkl", str(WORLD / ann), str(WORLD / "images"),
                                        str(WORLD / out), cat_subsets=cats, progress=self.progress, log=self.log)
            if cats:
                self.report["proposals"] = recall

    def train_stage2(self):
        from .engine.runner import train_from_config

        cfg = self.stage_config("stage2_partitioned.py", self.plan["stage2"])
        train_from_config(cfg, work_dir="work_dirs/stage2_partitioned", seed=self.seed, validate=False,
                          progress=self.progress)

    def _test(self, options: dict | None = None, out=None) -> dict:
        from .engine.runner import test_from_config

        cfg = self.config("stage2_lvis_inference.py", options)
        metrics = test_from_config(cfg, "work_dirs/stage2_partitioned/latest.pkl", out=out, eval_metrics=["bbox"],
                                   progress=self.progress)
        return {k.replace("bbox_", ""): float(v) for k, v in metrics.items()}

    def test_raw(self):
        os.makedirs("results", exist_ok=True)
        self.report["lvis"] = self._test(out="results/raw_val_lvis.pkl")

    def test_calibrated(self):
        from .calibration import DEFAULT_SMOOTHING, class_counts_from_cat_info, class_counts_from_results, save_prior

        def calibrated(prior_file):
            return {"model.roi_head.bbox_head.withcalibration": True, "model.roi_head.bbox_head.resultfile": prior_file}

        raw_prior = save_prior(WORLD / "prior_from_raw.npy",
                               class_counts_from_results("results/raw_val_lvis.pkl") + DEFAULT_SMOOTHING)
        self.report["lvis_calibrated"] = self._test(calibrated(raw_prior), out="results/calibrated_val_lvis.pkl")
        # the test json carries each category's training image_count (0 for novel classes)
        cats = json.loads((WORLD / "val_lvis.json").read_text())["categories"]
        (WORLD / "val_lvis_train_cat_info.json").write_text(json.dumps(cats))
        freq_prior = save_prior(WORLD / "prior_from_train_freq.npy",
                                class_counts_from_cat_info(WORLD / "val_lvis_train_cat_info.json") + DEFAULT_SMOOTHING)
        self.report["lvis_calibrated_train_freq"] = self._test(calibrated(freq_prior))
        self.report["calibration"] = {"gamma": 0.6, "beta": 0.3, "smoothing": DEFAULT_SMOOTHING,
                                      "prior_from_raw": str(raw_prior), "prior_from_train_freq": str(freq_prior)}

    def test_shuffled_embeddings(self):
        emb = np.load(WORLD / "emb_lvis.npy")
        perm = np.random.default_rng(self.seed + 1).permutation(len(emb))
        while len(emb) > 1 and (perm == np.arange(len(emb))).any():  # a derangement: every class moves
            perm = np.random.default_rng(int(perm[0]) + len(emb)).permutation(len(emb))
        np.save(WORLD / "emb_lvis_shuffled.npy", emb[perm])
        self.report["control_shuffled_embeddings"] = self._test(
            {"model.roi_head.bbox_head.zeroshot_path": str(WORLD / "emb_lvis_shuffled.npy")})

    def write_report(self):
        from .experiment_report import write_report

        self.report["settings"] = {"plan": self.plan, "python": platform.python_version(),
                                   "machine": platform.machine(), "threads": os.environ.get("OMP_NUM_THREADS")}
        try:
            import jittor as jt

            self.report["settings"]["jittor"] = jt.__version__
        except ImportError:  # pragma: no cover
            pass
        write_report(self.report, Path("."), WORLD, log=self.log)

    # -- driver -----------------------------------------------------------------------------------
    def run(self, only=None) -> dict:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        n = len(self.steps)
        self.log(f"unidet experiment ({self.mode}, seed {self.seed}) in {self.work_dir}; "
                 f"estimated ~{self.plan['estimate_min']} min on a 2-core CPU with a warm compile cache")
        t_all = time.time()
        with _cwd(self.work_dir):
            for i, (name, step) in enumerate(self.steps, 1):
                if only and name not in only:
                    continue
                self.log(f"\n[{i}/{n}] {name}  (elapsed {time.time() - t_all:.0f} s)")
                t = time.time()
                step()
                self.report["timings"][name] = round(time.time() - t, 1)
                (Path("report.json")).write_text(json.dumps(self.report, indent=2))
        self.report["timings"]["total"] = round(time.time() - t_all, 1)
        (self.work_dir / "report.json").write_text(json.dumps(self.report, indent=2))
        self.log(f"\ndone in {self.report['timings']['total']:.0f} s: {self.work_dir / 'report.md'}")
        return self.report
