"""Checkpoint files → ``{official key: numpy array}``, key mappings, and Jittor ``.pkl`` output.

Supported inputs: OpenAI CLIP TorchScript archives (``RN50.pt``), PyTorch ``.pth``/``.pt`` state
dicts (zip or legacy), mmdet checkpoints (``{'state_dict': ..., 'meta': ...}``: RegionCLIP
``regionclip_pretrained-cc_rn50_mmdet.pth``, official UniDetector releases), torchvision
ResNet-50, and our own ``.pkl`` files (``jt.save`` of ``{'state_dict', 'meta'}``).
"""
from __future__ import annotations

import pickle
import re
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ..errors import UnidetError
from .torch_reader import find_state_dict, load_torch_file

#: Keys of an OpenAI CLIP state dict that are metadata, not weights.
CLIP_META_KEYS = ("input_resolution", "context_length", "vocab_size", "logit_scale")


#: Box heads of the stage-2 (CLIP RoI classifier) models.
CLIP_BOX_HEADS = ("BBoxHeadCLIP", "BBoxHeadCLIPPartitioned", "BBoxHeadCLIPInference")


class CheckpointFileError(UnidetError, ValueError):
    """A checkpoint file that cannot be read or used; the message names the file."""


def read_pickle(path, what: str = "checkpoint"):
    """The object pickled in ``path``; a truncated or foreign file raises :class:`CheckpointFileError`.

    ``what`` names the file's role in messages (``checkpoint``, ``results file``, ...).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        with open(path, "rb") as f:
            return pickle.load(f)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError,
            KeyError, MemoryError) as e:
        raise CheckpointFileError(f"{path}: not a readable {what} ({path.stat().st_size} bytes; truncated or "
                                  f"not a pickle: {type(e).__name__}: {e})") from None


def read_checkpoint(path) -> "OrderedDict[str, np.ndarray]":
    """The state dict stored in ``path`` (any supported format), arrays as stored (fp16 kept)."""
    path = Path(path)
    if path.suffix == ".pkl":
        obj = read_pickle(path)
        try:
            return find_state_dict(_to_numpy(obj))
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointFileError(f"{path}: no state dict in this file ({e})") from None
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return find_state_dict(load_torch_file(path))
    except (UnidetError, OSError):
        raise
    except Exception as e:  # noqa: BLE001 - a truncated zip or pickle: name the file
        raise CheckpointFileError(f"{path}: not a readable PyTorch checkpoint ({path.stat().st_size} bytes; "
                                  f"{type(e).__name__}: {e})") from None


def checkpoint_stage(state_dict: dict) -> int | None:
    """1 for a proposal network (RPN head), 2 for a CLIP RoI classifier, None when unknown."""
    if any(k.startswith("rpn_head.") for k in state_dict):
        return 1
    if any(k.startswith("roi_head.bbox_head.attnpool.") for k in state_dict):
        return 2
    return None


def config_stage(model_cfg) -> int | None:
    """1 for a proposal-network model config (an ``rpn_head``), 2 for a CLIP RoI classifier (a CLIP box
    head, :data:`CLIP_BOX_HEADS`), None otherwise."""
    get = (lambda d, k: d.get(k) if hasattr(d, "get") else None)
    if get(model_cfg, "rpn_head"):
        return 1
    head = get(get(model_cfg, "roi_head") or {}, "bbox_head") or {}
    return 2 if get(head, "type") in CLIP_BOX_HEADS else None


def checkpoint_kind_message(path, state_dict: dict, expected) -> str | None:
    """Why the checkpoint at ``path`` cannot be the model: ``expected`` is the stage the model needs (1 or
    2) or its model config (:func:`config_stage`). None when the stages agree or either is unknown.
    ``unidet detect``, ``unidet test`` and ``load_from`` give the same message."""
    if not isinstance(expected, int):
        expected = config_stage(expected)
    stage = checkpoint_stage(state_dict)
    if expected is None or stage is None or stage == expected:
        return None
    if stage == 1:
        return (f"{path} is a stage-1 (proposal network) checkpoint (rpn_head weights), but a stage-2 model (CLIP "
                "RoI classifier) is asked for: it makes proposals (`unidet proposals`, `unidet detect "
                "--proposal-checkpoint`); give a stage-2 checkpoint (`unidet detect --checkpoint`, a stage-2 config's "
                "test or load_from)")
    return (f"{path} is a stage-2 (CLIP RoI classifier) checkpoint (roi_head.bbox_head.attnpool weights, no "
            "rpn_head), but a stage-1 model (proposal network) is asked for: give a stage-1 checkpoint "
            "(`unidet detect --proposal-checkpoint`, `unidet proposals`, a stage-1 config's test or load_from)")


def _to_numpy(obj):
    if isinstance(obj, dict):
        return type(obj)((k, _to_numpy(v)) for k, v in obj.items())
    if hasattr(obj, "numpy") and not isinstance(obj, np.ndarray):
        return obj.numpy()
    return obj


def cast_floats(sd: dict, dtype="float32") -> "OrderedDict[str, np.ndarray]":
    """Cast floating-point arrays to ``dtype`` (``None`` keeps them); 0-d arrays become shape (1,)."""
    out = OrderedDict()
    for k, v in sd.items():
        v = np.asarray(v)
        if dtype is not None and v.dtype.kind == "f":
            v = v.astype(dtype)
        out[k] = v.reshape(1) if v.ndim == 0 else v
    return out


def split_openai_clip(sd: dict):
    """OpenAI CLIP (ModifiedResNet) state dict → (detector keys, text-tower keys).

    ``visual.layer4.*`` → ``roi_head.shared_head.layer4.*``; ``visual.attnpool.*`` →
    ``roi_head.bbox_head.attnpool.*``; other ``visual.*`` → ``backbone.*`` (SPEC §7).
    Text keys keep their names (``token_embedding.weight``, ``transformer.resblocks.*``, ...);
    metadata scalars and non-weight tensors (``attn_mask``) are dropped.
    """
    if "visual.layer1.0.conv1.weight" not in sd:
        raise ValueError("not an OpenAI CLIP ResNet checkpoint (no visual.layer1.0.conv1.weight); "
                         "ViT CLIP models are not supported by the detector")
    detector, text = OrderedDict(), OrderedDict()
    for k, v in sd.items():
        if k.startswith("visual."):
            rest = k[len("visual."):]
            if rest.startswith("layer4."):
                detector["roi_head.shared_head." + rest] = v
            elif rest.startswith("attnpool."):
                detector["roi_head.bbox_head." + rest] = v
            else:
                detector["backbone." + rest] = v
        elif k not in CLIP_META_KEYS and not k.endswith("attn_mask"):
            text[k] = v
    return detector, text


def torchvision_resnet_to_mmdet(sd: dict) -> "OrderedDict[str, np.ndarray]":
    """torchvision ResNet keys → stage-1 detector keys ``backbone.*`` (``fc.*`` dropped)."""
    return OrderedDict(("backbone." + k, v) for k, v in sd.items() if not k.startswith("fc."))


def detect_format(sd: dict) -> str:
    """'openai-clip', 'mmdet' (detector keys) or 'torchvision-resnet'."""
    if "visual.layer1.0.conv1.weight" in sd:
        return "openai-clip"
    if any(k.startswith(("backbone.", "roi_head.", "rpn_head.", "neck.")) for k in sd):
        return "mmdet"
    if "conv1.weight" in sd and "layer1.0.conv1.weight" in sd:
        return "torchvision-resnet"
    raise ValueError("unrecognised checkpoint: expected OpenAI CLIP (visual.*), an mmdet detector "
                     "(backbone.*, roi_head.*) or a torchvision ResNet (conv1.*, layer1.*)")


def clip_sizes(sd: dict, prefix: str = "") -> dict:
    """Sizes of the CLIP visual parts found in detector-named keys (for building a reference)."""
    p = prefix
    width = sd[p + "backbone.layer1.0.conv1.weight"].shape[0]
    layers = [len({m.group(1) for k in sd for m in [re.match(rf"{re.escape(p)}{stage}\.(\d+)\.", k)] if m})
              for stage in ("backbone.layer1", "backbone.layer2", "backbone.layer3", "roi_head.shared_head.layer4")]
    sizes = dict(width=width, layers=layers)
    pos = sd.get(p + "roi_head.bbox_head.attnpool.positional_embedding")
    if pos is not None:
        embed = pos.shape[1]
        sizes["attnpool"] = dict(spacial_dim=int(round((pos.shape[0] - 1) ** 0.5)), embed_dim=embed,
                                 num_heads=embed // 64,
                                 output_dim=sd[p + "roi_head.bbox_head.attnpool.c_proj.weight"].shape[0])
    return sizes


def text_sizes(sd: dict) -> dict:
    """Constructor arguments of :class:`unidetector.text.clip_text.CLIPTextEncoder` from its keys."""
    width = sd["ln_final.weight"].shape[0]
    return dict(embed_dim=sd["text_projection"].shape[1], context_length=sd["positional_embedding"].shape[0],
                vocab_size=sd["token_embedding.weight"].shape[0], transformer_width=width,
                transformer_heads=width // 64,
                transformer_layers=len({k.split(".")[2] for k in sd if k.startswith("transformer.resblocks.")}))


def save_checkpoint(path, state_dict: dict, meta: dict | None = None) -> None:
    """Write a Jittor checkpoint (``jt.save`` pickle with ``state_dict`` and ``meta``)."""
    import jittor as jt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    jt.save({"state_dict": OrderedDict((k, np.asarray(v)) for k, v in state_dict.items()), "meta": meta or {}},
            str(path))
