"""From an mmdet 2.x config to a running :class:`~unidetector.engine.trainer.Trainer` or a test run.

Config fields read (mmdet 2.x ``tools/train.py`` / ``tools/test.py`` semantics):
``model``, ``data=dict(samples_per_gpu, workers_per_gpu, train, val, test)``, ``optimizer``,
``optimizer_config=dict(grad_clip=dict(max_norm, norm_type))``, ``lr_config``, ``runner=dict(type=
'EpochBasedRunner', max_epochs)`` (or legacy ``total_epochs``), ``checkpoint_config=dict(interval,
max_keep_ckpts, iter_interval)`` (``iter_interval`` is ours: refresh ``latest.pkl`` every N
iterations), ``log_config=dict(interval, hooks=[TextLoggerHook])``, ``evaluation=dict(interval, metric,
...)``, ``fp16=dict(loss_scale)``, ``load_from``, ``resume_from``, ``work_dir``, ``seed``. Other
top-level names (``data_root``, ``img_norm_cfg``, pipelines, class lists, ``dist_params``,
``log_level``, ``workflow=[('train', 1)]``, ...) are ordinary config variables. Settings this engine
does not implement raise :class:`EngineConfigError` listing them all.

``samples_per_gpu`` is per process: under ``mpirun -np N`` the global batch is ``N·samples_per_gpu``
(mmdet semantics); Jittor splits every global batch across the ranks.
"""
from __future__ import annotations

import os
import os.path as osp

from ..errors import UnidetError, UsageError

SECTION_KEYS = {
    "data": {"samples_per_gpu", "workers_per_gpu", "train", "val", "test"},
    "optimizer_config": {"grad_clip", "type"},
    "runner": {"type", "max_epochs"},
    "checkpoint_config": {"interval", "max_keep_ckpts", "iter_interval", "by_epoch", "save_optimizer"},
    "log_config": {"interval", "hooks"},
    "evaluation": {"interval", "metric", "classwise", "proposal_nums", "iou_thrs", "start", "by_epoch"},
    "fp16": {"loss_scale"},
}
UNSUPPORTED_TOP = ("momentum_config", "custom_imports", "auto_scale_lr")
#: Top-level keys this engine (or the tools around it) reads; a near-miss of one of these that the config
#: does not set is refused (``lr_confg``). Helper variables (pipelines, ``img_norm_cfg``, ...) stay allowed.
READ_TOP = ("model", "train_cfg", "test_cfg", "data", "optimizer", "optimizer_config", "lr_config", "runner",
            "total_epochs", "checkpoint_config", "log_config", "evaluation", "fp16", "load_from", "resume_from",
            "work_dir", "seed", "workflow", "dist_params", "log_level", "custom_hooks", "jittor_config",
            "allow_partial_load", "text_encoder", "test_pipeline", "train_pipeline", *UNSUPPORTED_TOP)


class EngineConfigError(UnidetError, ValueError):
    """The config asks for engine features that are not implemented (all problems listed)."""


def check_config(cfg, for_training=True) -> None:
    """Refuse settings this engine does not implement (all listed) and near-miss keys (``lr_confg``)."""
    from ..config import check_top_level_keys

    check_top_level_keys(cfg, READ_TOP)
    problems = []
    for key in UNSUPPORTED_TOP:
        if cfg.get(key):
            problems.append(f"{key} (not supported)")
    if cfg.get("custom_hooks"):
        problems.append("custom_hooks (not supported; remove them)")
    workflow = cfg.get("workflow")
    if workflow and [tuple(w) for w in workflow] != [("train", 1)]:
        problems.append(f"workflow={workflow} (only [('train', 1)]; validation is 'evaluation')")
    for section, allowed in SECTION_KEYS.items():
        value = cfg.get(section)
        if value is None:
            continue
        unknown = sorted(set(value) - allowed)
        if unknown:
            problems.append(f"{section}: {', '.join(unknown)} (supported: {', '.join(sorted(allowed))})")
    if for_training:
        runner = cfg.get("runner") or {}
        if runner.get("type", "EpochBasedRunner") != "EpochBasedRunner":
            problems.append(f"runner.type={runner.get('type')!r} (only 'EpochBasedRunner')")
        oc = cfg.get("optimizer_config") or {}
        if oc.get("type") not in (None, "OptimizerHook"):
            problems.append(f"optimizer_config.type={oc.get('type')!r} (use fp16=dict(loss_scale=...) or --amp, "
                            "--accumulate-steps for accumulation)")
        cc = cfg.get("checkpoint_config") or {}
        if cc.get("by_epoch") is False:
            problems.append("checkpoint_config.by_epoch=False (use iter_interval=N for iteration checkpoints)")
        if cc.get("save_optimizer") is False:
            problems.append("checkpoint_config.save_optimizer=False (checkpoints always hold the optimizer)")
        for hook in (cfg.get("log_config") or {}).get("hooks", []) or []:
            if hook.get("type") != "TextLoggerHook":
                problems.append(f"log_config.hooks: {hook.get('type')} (only TextLoggerHook; "
                                "log.jsonl + `unidet plot-log` replace the others)")
        ev = cfg.get("evaluation") or {}
        if ev.get("by_epoch") is False:
            problems.append("evaluation.by_epoch=False (evaluation runs after epochs)")
        if "optimizer" not in cfg:
            problems.append("optimizer (missing)")
    if "model" not in cfg:
        problems.append("model (missing)")
    if problems:
        src = getattr(cfg, "filename", None) or "<config>"
        raise EngineConfigError(f"{src}: unsupported or missing settings:\n  - " + "\n  - ".join(problems))


def build_model(cfg):
    """The model of a whole config: ``cfg.model`` (``build_detector``) with the old top-level ``train_cfg`` /
    ``test_cfg`` handed to it as mmdet 2.x does (an error where the model section has its own); errors name the
    config file and the key path."""
    from ..models.builder import build_detector

    return build_detector(cfg.model, cfg.get("train_cfg"), cfg.get("test_cfg"), filename=getattr(cfg, "filename", None))


def build_dataset(data_cfg, key_path, test_mode=False, filename: str | None = None):
    """A dataset of the config section ``data_cfg`` at ``key_path`` (a list: their concatenation); errors name
    ``filename`` (the config file) and the key path."""
    import unidetector.data  # noqa: F401  (registers the datasets)

    from ..registry import DATASETS, build

    if isinstance(data_cfg, (list, tuple)):
        data_cfg = {"type": "ConcatDataset", "datasets": [dict(d) for d in data_cfg]}
    else:
        data_cfg = dict(data_cfg)
        if test_mode:
            data_cfg.setdefault("test_mode", True)
    return build(data_cfg, DATASETS, key_path=key_path, filename=filename)


class TrainingSetError(UnidetError, ValueError):
    """Training data that would train nothing (no usable image, 0 iterations)."""


def annotation_files(data_cfg) -> list:
    """The ``ann_file`` entries of a dataset config (lists, ``ConcatDataset`` and wrappers included)."""
    if isinstance(data_cfg, (list, tuple)):
        return [f for d in data_cfg for f in annotation_files(d)]
    if not hasattr(data_cfg, "get"):
        return []
    files = [str(data_cfg["ann_file"])] if data_cfg.get("ann_file") else []
    for key in ("datasets", "dataset"):
        if data_cfg.get(key) is not None:
            files += annotation_files(data_cfg[key])
    return files


class WeightsLoadError(UnidetError, ValueError):
    """Weights that did not load into the model (nothing runs on them); the message names the file."""


def load_weights(model, path, log=print, allow_partial=False, what="load_from", model_cfg=None):
    """Load a checkpoint's weights into ``model`` by official names and print the load report.

    Strict by default: every model key must be in the checkpoint and every checkpoint key in the model
    (the vocabulary buffers ``zs_weights*`` and ``num_batches_tracked`` excepted), so nothing runs on
    weights that did not load. ``allow_partial=True`` (config ``allow_partial_load=True``, e.g. a
    RegionCLIP initialisation without box regression) loads the keys that match and reports the rest;
    a checkpoint of which nothing loads is refused either way. With ``model_cfg``, a stage-1 checkpoint
    for a stage-2 model (and the reverse) gets the message of ``unidet detect``.
    """
    from ..convert.checkpoints import checkpoint_kind_message, read_checkpoint
    from ..convert.state_dict import StateDictError, load_state_dict, match_state_dict

    state_dict = read_checkpoint(path)
    if not state_dict:
        raise WeightsLoadError(f"{what} {path}: the checkpoint holds no weights (empty state dict)")
    mismatch = checkpoint_kind_message(path, state_dict, model_cfg) if model_cfg is not None else None
    if mismatch:
        raise WeightsLoadError(f"{what} {mismatch}")
    report = match_state_dict(model.state_dict(), state_dict)
    hint = _prefix_hint(report)
    if not report.loaded:
        raise WeightsLoadError(f"{what} {path}: none of the model's {len(report.missing)} keys is in the checkpoint "
                               f"({len(state_dict)} keys{hint}); refusing to run on random weights")
    strict = not allow_partial
    try:
        report = load_state_dict(model, state_dict, strict=strict)
    except StateDictError as e:
        advice = ("; to load the matching keys anyway (e.g. an initialisation), add "
                  "--cfg-options allow_partial_load=True" if strict and not report.mismatched else "")
        counts = (f"{len(report.missing)} model keys missing from the checkpoint, {len(report.unexpected)} "
                  f"checkpoint keys not in the model, {len(report.mismatched)} shape mismatches")
        raise WeightsLoadError(f"{what} {path}: the weights do not fit the model ({counts}){hint}{advice}\n"
                               f"{e.report.format()}") from None
    partial = f" (partial load: allow_partial_load=True; {len(report.missing)} model keys keep their " \
              "initialisation)" if report.missing or report.unexpected else ""
    log(f"{what} {path}{partial}:\n{report.format()}")
    return report


def _prefix_hint(report) -> str:
    """``"; its keys carry a 'model.' prefix ..."`` when stripping one prefix would make them match."""
    if not report.unexpected or not report.missing:
        return ""
    prefix = report.unexpected[0].split(".", 1)[0] + "."
    if all(k.startswith(prefix) for k in report.unexpected) and \
            sum(k[len(prefix):] in set(report.missing) for k in report.unexpected) >= len(report.unexpected) // 2:
        return f"; its keys carry a {prefix!r} prefix the model does not have"
    return ""


def train_from_config(cfg, work_dir=None, resume=None, accumulate_steps=1, amp=False, seed=None,
                      validate=True, progress=True):
    """Build everything from ``cfg`` and train. ``resume``: a path, ``'auto'`` (= ``work_dir/latest.pkl``)
    or None (then ``cfg.resume_from``). Returns the trainer."""
    import jittor as jt

    from ..data.checks import check_dataset
    from ..data.loader import DetectionLoader
    from .jittor_config import apply_jittor_config
    from ..runtime import seed_everything
    from .optim import build_optimizer
    from .schedule import build_lr_schedule
    from .trainer import Trainer, dist_info

    check_config(cfg, for_training=True)
    apply_jittor_config(cfg)
    rank, world = dist_info()
    work_dir = work_dir or cfg.get("work_dir") or osp.join("work_dirs", osp.splitext(osp.basename(
        getattr(cfg, "filename", None) or "config"))[0])
    cfg.work_dir = work_dir
    seed = int(seed if seed is not None else (cfg.get("seed") if cfg.get("seed") is not None else 0))
    cfg.seed = seed
    seed_everything(seed)  # model init identical on every rank (Jittor also broadcasts on the first step)

    model = build_model(cfg)
    jt.sync_all()  # Jittor draws the random init lazily: do it now, right after seeding
    log = print if rank == 0 else (lambda *_: None)
    dataset = build_dataset(cfg.data.train, "data.train", filename=getattr(cfg, "filename", None))
    if len(dataset) == 0:
        raise TrainingSetError(f"{getattr(cfg, 'filename', '<config>')}: data.train has no usable image "
                               f"(annotation file(s): {', '.join(annotation_files(cfg.data.train)) or '?'})")
    check_dataset(dataset, "data.train", progress=progress, log=log, model=model)
    spg = int(cfg.data.get("samples_per_gpu", 2))
    loader = DetectionLoader(dataset, batch_size=spg * world, shuffle=True,
                             num_workers=int(cfg.data.get("workers_per_gpu", 0)), seed=seed)
    optimizer = build_optimizer(model, cfg.optimizer)
    schedule = build_lr_schedule(cfg.get("lr_config"))
    runner = cfg.get("runner") or {}
    max_epochs = runner.get("max_epochs", cfg.get("total_epochs", 12))
    oc = cfg.get("optimizer_config") or {}
    cc = cfg.get("checkpoint_config") or {}
    fp16 = cfg.get("fp16")
    evaluate_fn, eval_interval = None, 1
    ev = dict(cfg.get("evaluation") or {})
    if validate and ev and cfg.data.get("val"):
        eval_interval = int(ev.pop("interval", 1))
        ev.pop("start", None), ev.pop("by_epoch", None)
        # checked now, not after an epoch
        val_set = build_dataset(cfg.data.val, "data.val", test_mode=True, filename=getattr(cfg, "filename", None))
        check_dataset(val_set, "data.val", progress=progress, log=log, model=model)

        def evaluate_fn(m, _ev=ev, val_set=val_set):
            from .inference import inference

            results = inference(m, val_set, samples_per_gpu=1, workers_per_gpu=0, progress=progress)
            return val_set.evaluate(results, **_ev)

    meta = {}
    if getattr(dataset, "CLASSES", None) is not None:
        meta["CLASSES"] = list(dataset.CLASSES)
    if cfg.get("text_encoder"):  # what made the zeroshot_path embeddings: `unidet detect` encodes new names with it
        meta["text_encoder"] = str(cfg.text_encoder)
    trainer = Trainer(model, loader, optimizer, schedule, work_dir, max_epochs,
                      grad_clip=oc.get("grad_clip"), accumulate_steps=accumulate_steps,
                      amp=bool(amp or fp16), loss_scale=(fp16 or {}).get("loss_scale", "dynamic"), seed=seed,
                      checkpoint_interval=cc.get("interval", 1), checkpoint_iter_interval=cc.get("iter_interval", 0),
                      max_keep_ckpts=cc.get("max_keep_ckpts", -1),
                      log_interval=(cfg.get("log_config") or {}).get("interval", 50),
                      config_text=cfg.pretty_text, evaluate_fn=evaluate_fn, eval_interval=eval_interval,
                      progress=progress, meta=meta)
    if trainer.steps_per_epoch * max_epochs <= trainer.iter and not (resume or cfg.get("resume_from")):
        raise TrainingSetError(f"{getattr(cfg, 'filename', '<config>')}: the schedule has 0 iterations "
                               f"({max_epochs} epochs x {trainer.steps_per_epoch} iterations of {len(dataset)} "
                               f"images); nothing would be trained")
    if rank == 0:
        os.makedirs(work_dir, exist_ok=True)
        cfg.dump(osp.join(work_dir, osp.basename(getattr(cfg, "filename", None) or "config.py")))
    resume = resume or cfg.get("resume_from")
    if resume == "auto":
        resume = osp.join(work_dir, "latest.pkl")
        if not osp.exists(resume):
            raise FileNotFoundError(f"--resume without a path: {resume} does not exist (nothing to resume)")
    if resume:
        trainer.resume(resume)
    elif cfg.get("load_from"):
        load_weights(model, cfg.load_from, log=trainer._print, allow_partial=bool(cfg.get("allow_partial_load")),
                     model_cfg=cfg.model)
    elif hasattr(model, "init_weights"):
        model.init_weights()  # e.g. the ImageNet backbone of stage 1 (backbone.init_cfg), as mmdet's train.py
    jt.sync_all()
    return trainer.train()


def test_from_config(cfg, checkpoint, out=None, eval_metrics=None, format_only=False, json_out=None,
                     eval_options=None, progress=True):
    """mmdet ``tools/test.py``: results of ``data.test`` (dumped to ``out``), json, evaluation (rank 0)."""
    from ..data.checks import check_dataset
    from .jittor_config import apply_jittor_config
    from .inference import dump_results, format_results_json, inference
    from .trainer import dist_info

    check_config(cfg, for_training=False)
    apply_jittor_config(cfg)
    rank, _ = dist_info()
    if format_only and not json_out:
        raise UsageError("--format-only needs --json-out FILE")
    if not (out or eval_metrics or format_only):
        raise UsageError("nothing to do: give at least one of --out, --eval, --format-only")
    model = build_model(cfg)
    load_weights(model, checkpoint, log=print if rank == 0 else (lambda *_: None),
                 allow_partial=bool(cfg.get("allow_partial_load")), what="checkpoint", model_cfg=cfg.model)
    test_cfg = cfg.data.test
    spg = 1
    if isinstance(test_cfg, dict) and "samples_per_gpu" in test_cfg:
        test_cfg = dict(test_cfg)
        spg = int(test_cfg.pop("samples_per_gpu"))
    dataset = build_dataset(test_cfg, "data.test", test_mode=True, filename=getattr(cfg, "filename", None))
    check_dataset(dataset, "data.test", progress=progress, log=print if rank == 0 else (lambda *_: None),
                  model=model)
    results = inference(model, dataset, samples_per_gpu=spg,
                        workers_per_gpu=int(cfg.data.get("workers_per_gpu", 0)), progress=progress)
    if rank != 0:
        return None
    metrics = {}
    if out:
        dump_results(results, out)
        print(f"results of {len(results)} images written to {out}")
    if json_out:
        n = format_results_json(dataset, results, json_out)
        print(f"{n} detections written to {json_out}")
    if eval_metrics and not format_only:
        metrics = dataset.evaluate(results, metric=eval_metrics, **(eval_options or {}))
        for k, v in metrics.items():
            print(f"{k}: {v}")
    return metrics
