"""Open-world detection models built from checkpoint files (what the :class:`~unidetector.api.Detector`,
``unidet detect`` and ``unidet serve`` run): the checkpoint's state dict and meta, its model config (stored
in the meta, parsed as data, or given), the stage-2 config turned into the open-world one (a CLIP head
without a vocabulary of its own, proposal-score fusion), and the model with its weights loaded strictly.
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from ..convert.checkpoints import CLIP_BOX_HEADS
from ..errors import DetectorError

__all__ = ["apply_settings", "build_loaded", "config_for", "open_world_model_config", "read_detector_checkpoint"]


def read_detector_checkpoint(path):
    """``(state_dict, meta)`` of any supported checkpoint file (this project's ``.pkl``, mmdet/mmcv
    ``.pth`` with their meta, converted official weights); ``meta`` is ``{}`` for files without one."""
    from ..convert.checkpoints import read_checkpoint_and_meta

    path = Path(path)
    if not path.is_file():
        raise DetectorError(f"checkpoint not found: {path}")
    sd, meta = read_checkpoint_and_meta(path)
    return {k: np.asarray(v) for k, v in sd.items()}, meta


def config_for(path, meta, config, role: str, cfg_options=None):
    """The model config of a checkpoint: ``config`` (a file or a ``Config``) when given, else the one
    stored in its meta (:func:`~unidetector.convert.checkpoints.stored_config`); ``cfg_options``
    (``{"a.b": value}``) merged in."""
    from ..config import Config, ConfigFileError, load_config
    from ..convert.checkpoints import stored_config

    if config is not None:
        cfg = config if isinstance(config, Config) else load_config(config)
    else:
        cfg = stored_config(meta, path)
        if cfg is None:
            option = "--config" if role != "stage-1" else "--proposal-config"
            raise DetectorError(f"{path}: the checkpoint carries no config (meta['config']); pass the {role} config "
                                f"explicitly ({option} FILE: the config it was trained with, or the official one of "
                                "its kind, see docs/real_data.md 'Official model zoo')")
    if cfg_options:
        cfg = copy.deepcopy(cfg)
        try:
            cfg.merge_from_dict(dict(cfg_options))
        except Exception as e:  # noqa: BLE001 - mmengine's errors for a key path that does not apply
            raise ConfigFileError(f"{path}: config options {dict(cfg_options)}: {type(e).__name__}: {e}") from None
    return cfg


def open_world_model_config(model_cfg, embed_dim: int, beta: float) -> dict:
    """The stage-2 model config with ``BBoxHeadCLIPInference`` without a vocabulary of its own (the
    vocabulary is given at scoring time: ``roi_head.score_regions``), ``with_proposal_score=True`` and no
    ``train_cfg``."""
    model = copy.deepcopy(model_cfg.to_dict() if hasattr(model_cfg, "to_dict") else dict(model_cfg))
    roi_head = model.get("roi_head") or {}
    head = roi_head.get("bbox_head") or {}
    if head.get("type") not in CLIP_BOX_HEADS:
        raise DetectorError(f"stage-2 model: box head {head.get('type')!r} is not a CLIP box head "
                            f"({', '.join(CLIP_BOX_HEADS)}); open-vocabulary detection needs one")
    new_head = dict(type="BBoxHeadCLIPInference", roi_feat_size=head.get("roi_feat_size", 7),
                    in_channels=head.get("in_channels", 2048), reg_class_agnostic=True,
                    zeroshot_path=None, embed_dim=int(embed_dim), beta=float(beta), withcalibration=False)
    for key in ("bbox_coder", "loss_bbox", "attnpool", "reg_decoded_bbox", "with_reg"):
        if head.get(key) is not None:
            new_head[key] = head[key]
    roi_head["bbox_head"] = new_head
    roi_head["with_proposal_score"] = True
    model["roi_head"] = roi_head
    model.pop("train_cfg", None)
    return model


def build_loaded(model_cfg, state_dict, path, embed_dim=None):
    """The model of ``model_cfg`` with the weights of ``state_dict`` (strict), in eval mode; built
    without the box heads' training-time files (``without_data_files``)."""
    from ..convert.state_dict import StateDictError, load_state_dict
    from ..models.builder import build_detector
    from ..models.roi_heads.bbox_heads.bbox_head_clip import without_data_files

    with without_data_files(embed_dim):
        model = build_detector(model_cfg, filename=f"{path} (its config)")
    try:
        load_state_dict(model, state_dict, strict=True)
    except StateDictError as e:
        raise DetectorError(f"{path}: the weights do not fit the model of its config:\n{e.report.format()}") from None
    model.eval()
    return model


def apply_settings(cfg, path, cfg_options=None, max_dets=None):
    """``cfg`` with ``cfg_options`` and ``max_dets`` (``model.test_cfg.rcnn.max_per_img``) applied."""
    options = dict(cfg_options or {})
    if max_dets is not None:
        if int(max_dets) < 1:
            raise DetectorError(f"max_dets must be at least 1 (detections per image), got {max_dets}")
        options["model.test_cfg.rcnn.max_per_img"] = int(max_dets)
    return config_for(path, {}, cfg, "stage-2", options) if options else cfg
