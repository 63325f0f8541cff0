"""The paper's three claims measured on the synthetic open world (``unidet experiment --ablations``).

UniDetector rests on three findings; each is tested here against an alternative trained with the same data,
iterations and seed, on one world, one world-CLIP and shared proposals (the steps of
:class:`~unidetector.experiment.Experiment` are reused as they are):

1. **proposals**: the class-agnostic CLN (stage 1 as in the experiment) vs classification-based proposals
   (``configs/synthetic/ablations/stage1_rpn.py``: mmdet's RPN and a fg/bg box head without localisation
   quality; every unlabelled object is background). AR@100/300 of the test set's seen and never-labelled (novel)
   classes, and the open-world AP of the same stage 2 trained and tested on each proposal set;
2. **stage 2**: the partitioned heads over every training set (the experiment's stage 2) vs one training set only
   (the largest, trained for the same number of iterations) vs one unified label space (every set merged into one
   vocabulary, so an unlabelled object is background for every class): AP, APr, APc, APf;
3. **calibration**: the partitioned model's raw scores vs calibrated ones, the prior from the raw test results
   (official, transductive) or from the training frequencies, γ swept over :data:`GAMMAS`: re-scoring of the
   same regions, no new network pass.

Every difference gets a paired 95 % bootstrap interval over test images
(:func:`~unidetector.evaluation.bootstrap_lvis` for AP, :func:`bootstrap_recall` for AR); a claim's verdict is
"holds" when the interval lies on the paper's side of 0, "does not hold" when it lies on the other, and
"inconclusive" when it contains 0. Nothing is tuned against these results: every variant uses the experiment's
recipe. Steps (:data:`STEPS`, each ``Ablations.step_<name>``; ``--only`` runs some of them and keeps what
``ablations.json`` already holds from the others):

``world world_clip stage1 proposals``  the experiment's (one world, one world-CLIP, the CLN and its proposals);
``unified_data``    the merged training set (``train_unified.json``, its cat-info, ``emb_unified.npy``: rows of
                    the test embeddings, ``rp_train_unified.pkl``: the CLN proposals in the merged image order);
``stage1_rpn proposals_rpn``  the classification-based stage 1 and its proposals (``rp_rpn_*.pkl``);
``stage2``          the experiment's partitioned stage 2 (the reference of claims 1-3);
``stage2_rpn stage2_single stage2_unified``  the stage-2 variants (``work_dirs/ablations/<variant>``);
``test``            one network pass over the test set per stage-2 model; the partitioned model's regions are
                    re-scored for every calibration; detections in ``results/ablations/<run>.json``;
``bootstrap``       the intervals (numpy only);
``report``          ``ablations.json``, ``ablations.md`` and figures (:mod:`unidetector.ablations_report`).

World-dependent values (training sets, vocabulary sizes, class groups, files) come from ``world.json``.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from .experiment import NEEDS, PRODUCES, RESULTS, STAGE1_DIR, STAGE2_DIR, WORLD, Experiment, _schedule

__all__ = ["Ablations", "STEPS", "bootstrap_recall", "recall_hits", "unified_training_set", "calibrated_run",
           "percentile_interval"]

STEPS = ("world", "world_clip", "stage1", "proposals", "unified_data", "stage1_rpn", "proposals_rpn", "stage2",
         "stage2_rpn", "stage2_single", "stage2_unified", "test", "bootstrap", "report")
ABLATIONS_DIR = Path("work_dirs/ablations")
ABLATION_RESULTS = RESULTS / "ablations"
RPN_PREFIX = "rp_rpn_"   # proposal files of the classification-based stage 1, beside the CLN's rp_*.pkl
UNIFIED = "unified"      # the merged training set's key: train_unified.json, emb_unified.npy, ...
REFERENCE = "partitioned"  # the experiment's stage 2 (CLN proposals, partitioned heads, raw scores)
GAMMAS = (0.3, 0.6, 1.0)   # calibration exponents swept (the configs' γ is added if missing)
PROPOSAL_NUMS = (100, 300)
# resamples of the bootstrap, and the wall time on 2 cores with a warm compile cache and the world-CLIP cached
# (quick: measured 4.8-5.1 min; full: 25.4-32.2 min), to which a world-CLIP not cached yet adds its epochs
ABLATION_PLANS = {"quick": dict(n_boot=1000, estimate_min=5), "full": dict(n_boot=1000, estimate_min=30),
                  "warm": dict(n_boot=50, estimate_min=1)}


def percentile_interval(x: np.ndarray, level: float = 0.95) -> list:
    """``[low, high]`` percentile interval of the finite values of ``x`` (NaN, NaN when none)."""
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    if not x.size:
        return [float("nan")] * 2
    return [float(v) for v in np.percentile(x, [100 * (1 - level) / 2, 100 * (1 + level) / 2])]


def recall_hits(data: dict, img_ids, proposals, cat_ids=None, proposal_nums=PROPOSAL_NUMS, iou_thrs=None):
    """Per image the objects recalled: ``hits (N, K, T)`` for ``K`` proposal budgets and ``T`` IoU thresholds
    (mmdet ``eval_recalls`` matching, image by image) and ``n_gt (N,)``, for the objects of ``cat_ids`` (all:
    None). ``hits.sum(0) / n_gt.sum()`` averaged over ``T`` is ``proposal_recall_report``'s AR@k."""
    from .evaluation.recall import eval_recalls, gt_boxes_from_coco

    gts = gt_boxes_from_coco(data, img_ids, cat_ids)
    n_gt = np.array([len(g) for g in gts], np.float64)
    hits = np.stack([eval_recalls([g], [p], proposal_nums, iou_thrs) * len(g) for g, p in zip(gts, proposals)])
    return hits, n_gt


def bootstrap_recall(data: dict, runs: dict, pairs, subsets: dict | None = None, proposal_nums=PROPOSAL_NUMS,
                     n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """Paired percentile bootstrap over images of proposal AR@k, as :func:`~unidetector.evaluation.bootstrap_lvis`
    for AP (same resamples for a given ``seed`` and image count, same output layout).

    ``data``: COCO/LVIS dict; ``runs``: ``{name: proposals}`` (per image of ``data['images']``, in that order, an
    ``(n, 5)`` array); ``pairs``: ``[(a, b)]`` for ``b - a``; ``subsets``: ``{group: category ids}`` adds the
    metrics ``<group>_AR@k``. AR of a resample = mean over IoU thresholds of (weighted hits) / (weighted objects).
    """
    from .evaluation.bootstrap import resample_counts

    img_ids = [im["id"] for im in data["images"]]
    counts = np.vstack([np.ones((1, len(img_ids))), resample_counts(len(img_ids), n_boot, seed)]).astype(np.float64)
    groups = [("", None)] + sorted((subsets or {}).items())
    per_run = {}
    for name, props in runs.items():
        values = {}
        for group, cats in groups:
            hits, n_gt = recall_hits(data, img_ids, props, cats, proposal_nums)
            with np.errstate(invalid="ignore", divide="ignore"):
                ar = np.einsum("bn,nkt->bkt", counts, hits).mean(axis=2) / (counts @ n_gt)[:, None]
            for k, n in enumerate(sorted(proposal_nums)):
                values[f"{group + '_' if group else ''}AR@{n}"] = ar[:, k]
        per_run[name] = values
    out = {"n_boot": int(n_boot), "n_images": len(img_ids), "level": level, "seed": seed,
           "runs": {n: {k: float(v[0]) for k, v in vals.items()} for n, vals in per_run.items()},
           "intervals": {n: {k: percentile_interval(v[1:], level) for k, v in vals.items()}
                         for n, vals in per_run.items()},
           "differences": {}}
    for a, b in pairs:
        out["differences"][f"{b} - {a}"] = {
            k: dict(zip(("value", "low", "high"), [float(v[0])] + percentile_interval(v[1:], level)))
            for k, v in ((k, per_run[b][k] - per_run[a][k]) for k in per_run[b])}
    return out


def unified_training_set(world_dir, world: dict, key: str = UNIFIED) -> dict:
    """Merge the world's training sets into one label space; writes ``train_<key>.json`` (their images and labelled
    boxes, categories = the union of their vocabularies), ``train_<key>_cat_info.json``, ``emb_<key>.npy`` (the
    rows of the test embeddings, which cover every class in category-id order) and ``rp_train_<key>.pkl`` (the
    sets' proposals, concatenated in the merged image order). Returns ``{images, boxes, classes}``."""
    from .data.ann_tools import category_info
    from .data.proposals import load_proposals, save_proposals
    from .text.embeddings import load_embeddings, save_embeddings

    world_dir, files = Path(world_dir), world["files"]
    images, anns, cats, proposals = [], [], {}, []
    for k in world["training_sets"]:
        data = json.loads((world_dir / files[f"train_{k}"]).read_text())
        images += data["images"]
        anns += [dict(a, id=len(anns) + j + 1) for j, a in enumerate(data["annotations"])]
        cats.update({c["id"]: c for c in data["categories"]})
        proposals += load_proposals(str(world_dir / f"rp_{files[f'train_{k}'][:-len('.json')]}.pkl"))
    if len({im["id"] for im in images}) != len(images):
        raise ValueError("unified_training_set: the training sets share image ids; they cannot be merged")
    merged = dict(info=dict(description=f"synthetic open world, training sets {', '.join(world['training_sets'])} "
                                        "merged into one label space"),
                  images=images, annotations=anns, categories=[cats[c] for c in sorted(cats)])
    (world_dir / f"train_{key}.json").write_text(json.dumps(merged))
    (world_dir / f"train_{key}_cat_info.json").write_text(json.dumps(category_info(merged)))
    test_ids = [c["id"] for c in world["classes"]]  # = the rows of emb_lvis.npy (category-id order)
    rows = [test_ids.index(c) for c in sorted(cats)]
    save_embeddings(world_dir / f"emb_{key}.npy", load_embeddings(world_dir / files["emb_lvis"])[rows])
    save_proposals(proposals, str(world_dir / f"rp_train_{key}.pkl"))
    return dict(images=len(images), boxes=len(anns), classes=len(cats))


class Ablations(Experiment):
    """The ablation plan (module doc). ``plan``/``quick`` as :class:`Experiment` (the stage schedules are the
    experiment's); ``n_boot`` overrides the plan's bootstrap resamples."""

    steps, command, kind = STEPS, "unidet experiment --ablations", "ablation"
    report_file, markdown_file = "ablations.json", "ablations.md"
    produces = {**{k: v for k, v in PRODUCES.items() if k in STEPS}, "unified_data": WORLD / f"rp_train_{UNIFIED}.pkl",
                "stage1_rpn": ABLATIONS_DIR / "stage1_rpn" / "latest.pkl",
                "proposals_rpn": WORLD / f"{RPN_PREFIX}val_lvis.pkl",
                **{v: ABLATIONS_DIR / v / "latest.pkl" for v in ("stage2_rpn", "stage2_single", "stage2_unified")},
                "test": ABLATION_RESULTS / f"{REFERENCE}.json"}
    needs = {**{k: v for k, v in NEEDS.items() if k in STEPS}, "unified_data": ("world", "proposals"),
             "stage1_rpn": ("world",), "proposals_rpn": ("world", "stage1_rpn"),
             "stage2_rpn": ("world", "world_clip", "proposals_rpn"),
             "stage2_single": ("world", "world_clip", "proposals"),
             "stage2_unified": ("world", "world_clip", "proposals", "unified_data"),
             "test": ("world", "proposals", "proposals_rpn", "stage2", "stage2_rpn", "stage2_single", "stage2_unified"),
             "bootstrap": ("world", "proposals", "proposals_rpn", "test"), "report": ("test",)}

    def __init__(self, work_dir, quick: bool = False, seed: int = 0, progress: bool = True, log=print,
                 plan: str | None = None, n_boot: int | None = None, amp: bool = False):
        super().__init__(work_dir, quick=quick, seed=seed, progress=progress, log=log, plan=plan, amp=amp)
        self.ablation_plan = dict(ABLATION_PLANS[self.mode])
        if n_boot is not None:
            self.ablation_plan["n_boot"] = int(n_boot)
        self.report["ablations"] = {"plan": self.ablation_plan, "variants": {}, "runs": {}}

    @property
    def ablations(self) -> dict:
        return self.report["ablations"]

    # -- world-dependent choices ------------------------------------------------------------------
    def training_sets(self) -> list:
        return list(self.world_meta()["training_sets"])

    def largest_set(self) -> str:
        """The training set with the largest vocabulary (the first on ties)."""
        vocab = self.world_meta()["vocabularies"]
        return max(self.training_sets(), key=lambda k: len(vocab[k]))

    def class_groups(self) -> dict:
        """Category ids of the test set's class groups for recall: ``seen`` (labelled in some training set) and
        ``novel`` (never labelled), as ``world.json``'s vocabularies."""
        vocab = self.world_meta()["vocabularies"]
        return {"seen": list(vocab["seen"]), "novel": list(vocab["novel"])}

    def variants(self) -> dict:
        """``{run name: spec}`` of the stage-2 models: checkpoint, test proposals, what differs."""
        single = f"single_{self.largest_set()}"
        val = self.world_meta()["files"]["val_lvis"][:-len(".json")]
        cln, rpn = self.world / f"rp_{val}.pkl", self.world / f"{RPN_PREFIX}{val}.pkl"
        return {
            REFERENCE: dict(checkpoint=self.path(STAGE2_DIR / "latest.pkl"), test_proposals=cln, proposals="CLN",
                            training="partitioned heads over " + ", ".join(self.training_sets())),
            "rpn_proposals": dict(checkpoint=self.path(ABLATIONS_DIR / "stage2_rpn" / "latest.pkl"),
                                  test_proposals=rpn, proposals="RPN (classification)",
                                  training="partitioned heads over " + ", ".join(self.training_sets())),
            single: dict(checkpoint=self.path(ABLATIONS_DIR / "stage2_single" / "latest.pkl"), test_proposals=cln,
                         proposals="CLN", training=f"training set {self.largest_set()} only"),
            UNIFIED: dict(checkpoint=self.path(ABLATIONS_DIR / "stage2_unified" / "latest.pkl"), test_proposals=cln,
                          proposals="CLN", training="one label space: " + " ∪ ".join(self.training_sets())),
        }

    # -- stage 1: classification-based proposals ----------------------------------------------------
    def step_unified_data(self):
        self.ablations["unified_data"] = unified_training_set(self.world, self.world_meta())

    def step_stage1_rpn(self):
        from .engine.runner import train_from_config

        cfg = self.stage_config("ablations/stage1_rpn.py", self.plan["stage1"])
        train_from_config(cfg, work_dir=str(self.path(ABLATIONS_DIR / "stage1_rpn")), seed=self.seed, validate=False,
                          progress=self.progress)
        self.ablations["variants"]["stage1_rpn"] = dict(
            epochs=self.plan["stage1"]["epochs"], iterations=self.trained_iterations(ABLATIONS_DIR / "stage1_rpn"),
            reference_iterations=self.trained_iterations(STAGE1_DIR))

    def step_proposals_rpn(self):
        """Proposals of the classification-based stage 1 for every training set and the test set."""
        self.dump_proposals("ablations/stage1_rpn.py", ABLATIONS_DIR / "stage1_rpn", RPN_PREFIX)

    # -- stage 2 variants -------------------------------------------------------------------------
    def trained_iterations(self, work_dir) -> int:
        """The iterations a training in ``work_dir`` (relative to the work dir) has run (its ``latest.pkl``)."""
        from .engine.checkpoint import load_checkpoint_file

        return int(load_checkpoint_file(self.path(Path(work_dir) / "latest.pkl"))["meta"]["iter"])

    def _iters_per_epoch(self, cfg, keys) -> int:
        """``ceil(images / samples_per_gpu)`` over the training sets ``keys`` (the loader may add one per aspect
        group: the iterations actually run are recorded from the checkpoints)."""
        files = self.world_meta()["files"]
        n = sum(len(json.loads((self.world / files.get(f"train_{k}", f"train_{k}.json")).read_text())["images"])
                for k in keys)
        return -(-n // int(cfg.data.get("samples_per_gpu", 2)))

    def stage2_variant_config(self, name: str, keys, proposal_prefix: str = "rp_"):
        """A stage-2 training config: ``name`` (under ``configs/synthetic``) with the plan's overrides, trained on
        the sets ``keys`` (``dataset_id`` in that order, files ``train_<k>.json``, ``<prefix>train_<k>.pkl``,
        ``emb_<k>.npy``, ``train_<k>_cat_info.json``) for about as many iterations as the partitioned stage 2
        (``epochs × iterations per epoch`` of the plan over every training set); returns ``(cfg, epochs)``."""
        stage = self.plan["stage2"]
        cfg = self.config(name, stage.get("options"))
        budget = stage["epochs"] * self._iters_per_epoch(cfg, self.training_sets())
        per_epoch = self._iters_per_epoch(cfg, keys)
        epochs = max(1, round(budget / per_epoch))
        files = self.world_meta()["files"]  # the world's sets by their names there; the merged set's by the pattern

        def file(kind, k, pattern):
            return str(self.world / files.get(kind.format(k), pattern.format(k)))

        template = dict(cfg.data.train.datasets[0])
        entries = [dict(template, ann_file=file("train_{}", k, "train_{}.json"), dataset_id=i,
                        proposal_file=str(self.world / f"{proposal_prefix}train_{k}.pkl")) for i, k in enumerate(keys)]
        embeddings = [file("emb_{}", k, "emb_{}.npy") for k in keys]
        rows = [int(np.load(e, mmap_mode="r").shape[0]) for e in embeddings]
        cfg.merge_from_dict({"data.train.datasets": entries,
                             "model.roi_head.bbox_head.zeroshot_path": embeddings,
                             "model.roi_head.bbox_head.cat_freq_path": [
                                 file("train_{}_cat_info", k, "train_{}_cat_info.json") for k in keys],
                             "model.roi_head.bbox_head.num_classes": max(rows),
                             **_schedule(epochs, per_epoch, stage.get("lr_steps", (2 / 3, 11 / 12)))})
        return cfg, epochs

    def _train_stage2(self, variant: str, name: str, keys, proposal_prefix: str = "rp_"):
        from .engine.runner import train_from_config

        cfg, epochs = self.stage2_variant_config(name, keys, proposal_prefix)
        train_from_config(cfg, work_dir=str(self.path(ABLATIONS_DIR / variant)), seed=self.seed, validate=False,
                          progress=self.progress)
        self.ablations["variants"][variant] = dict(sets=list(keys), epochs=epochs,
                                                   iterations=self.trained_iterations(ABLATIONS_DIR / variant),
                                                   reference_iterations=self.trained_iterations(STAGE2_DIR))

    def step_stage2_rpn(self):
        self._train_stage2("stage2_rpn", "ablations/stage2_rpn_proposals.py", self.training_sets(), RPN_PREFIX)

    def step_stage2_single(self):
        self._train_stage2("stage2_single", "ablations/stage2_single_dataset.py", [self.largest_set()])

    def step_stage2_unified(self):
        self._train_stage2("stage2_unified", "ablations/stage2_unified.py", [UNIFIED])

    # -- test: one network pass per model, re-scored for calibration --------------------------------
    def _save_run(self, name: str, results, dataset, **meta) -> None:
        from .evaluation.results import results_to_coco_json

        dets = results_to_coco_json(results, dataset.img_ids, dataset.cat_ids)
        path = self.path(ABLATION_RESULTS / f"{name}.json")
        path.write_text(json.dumps(dets))
        self.ablations["runs"][name] = dict(meta, detections=len(dets), file=str(path.relative_to(self.work_dir)))

    def step_test(self):
        from .calibration import DEFAULT_SMOOTHING, calibration_weights, class_counts_from_cat_info
        from .calibration import class_counts_from_results, save_prior
        from .engine.inference import vocabulary_results

        out = self.path(ABLATION_RESULTS)
        out.mkdir(parents=True, exist_ok=True)
        emb = self.test_embeddings()
        self.ablations["runs"] = {}
        for name, spec in self.variants().items():
            t = time.time()
            state = self.test_regions(spec["checkpoint"], spec["test_proposals"])
            raw = vocabulary_results(state["model"], state["regions"], emb)
            meta = dict(proposals=spec["proposals"], training=spec["training"])
            self._save_run(name, raw, state["dataset"], calibration=None, **meta)
            if name == REFERENCE:  # claim 3: the same regions, re-scored
                cats = json.loads((self.world / self.world_meta()["files"]["val_lvis"]).read_text())["categories"]
                (out / "val_lvis_train_cat_info.json").write_text(json.dumps(cats))
                priors = {"raw_results": class_counts_from_results(raw),
                          "train_freq": class_counts_from_cat_info(out / "val_lvis_train_cat_info.json")}
                gammas = sorted(set(GAMMAS) | {state["gamma"]})
                self.ablations["calibration"] = dict(gammas=gammas, config_gamma=state["gamma"],
                                                     smoothing=DEFAULT_SMOOTHING, priors={})
                for prior_name, counts in priors.items():
                    prior = counts + DEFAULT_SMOOTHING
                    self.ablations["calibration"]["priors"][prior_name] = save_prior(out / f"prior_{prior_name}.npy",
                                                                                     prior)
                    for g in gammas:
                        res = vocabulary_results(state["model"], state["regions"], emb, calibration_weights(prior, g))
                        self._save_run(calibrated_run(prior_name, g), res, state["dataset"],
                                       calibration=dict(prior=prior_name, gamma=g), **meta)
            self.ablations["runs"][name]["test_seconds"] = round(time.time() - t, 1)
            del state

    # -- intervals and report ---------------------------------------------------------------------
    def ap_pairs(self) -> list:
        """``(a, b)`` pairs for ``b - a``: the reference minus each stage-2 variant, each calibration minus raw."""
        runs = self.ablations["runs"]
        pairs = [(name, REFERENCE) for name in self.variants() if name != REFERENCE]
        return pairs + [(REFERENCE, name) for name, r in runs.items() if r.get("calibration")]

    def step_bootstrap(self):
        from .data.proposals import load_proposals
        from .evaluation.bootstrap import bootstrap_lvis

        files, n_boot = self.world_meta()["files"], self.ablation_plan["n_boot"]
        gt_path = self.world / files["val_lvis"]
        runs = {name: json.loads(self.path(r["file"]).read_text()) for name, r in self.ablations["runs"].items()}
        self.ablations["bootstrap"] = bootstrap_lvis(str(gt_path), runs, self.ap_pairs(), n_boot=n_boot, seed=self.seed)
        val = files["val_lvis"][:-len(".json")]
        proposals = {"CLN": load_proposals(str(self.world / f"rp_{val}.pkl")),
                     "RPN": load_proposals(str(self.world / f"{RPN_PREFIX}{val}.pkl"))}
        self.ablations["proposal_recall"] = bootstrap_recall(json.loads(gt_path.read_text()), proposals,
                                                             [("RPN", "CLN")], self.class_groups(), n_boot=n_boot,
                                                             seed=self.seed)

    def step_report(self):
        from .ablations_report import write_ablation_report

        self.report["settings"] = {"plan": self.plan, "ablation_plan": self.ablation_plan}
        try:
            import jittor as jt

            self.report["settings"]["jittor"] = jt.__version__
        except ImportError:  # pragma: no cover
            pass
        write_ablation_report(self.report, self.work_dir, log=self.log)

    # -- driver (Experiment.run) --------------------------------------------------------------------
    def estimate_min(self) -> float:
        return self.ablation_plan["estimate_min"]

    def continue_report(self, out: Path) -> None:
        super().continue_report(out)
        self.report["ablations"]["plan"] = self.ablation_plan  # this run's (n_boot may differ)


def calibrated_run(prior: str, gamma: float) -> str:
    """The run name of the reference model calibrated with ``prior`` at ``gamma`` (``calibrated_raw_results_g0.6``)."""
    return f"calibrated_{prior}_g{gamma:g}"
