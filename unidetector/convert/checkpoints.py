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
    return read_checkpoint_and_meta(path)[0]


def read_checkpoint_and_meta(path) -> tuple:
    """``(state_dict, meta)`` of ``path`` (any supported format): the arrays as stored (fp16 kept) and
    the checkpoint's ``meta`` as plain values (:func:`plain_meta`; ``{}`` for files without one, e.g.
    OpenAI's ``RN50.pt``). mmdet/mmcv checkpoints keep ``meta['config']`` (the config text) and
    ``meta['CLASSES']`` there; this project's ``.pkl`` files too."""
    path = Path(path)
    if path.suffix == ".pkl":
        obj = read_pickle(path)
        try:
            sd = find_state_dict(_to_numpy(obj))
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointFileError(f"{path}: no state dict in this file ({e})") from None
        return sd, plain_meta(obj.get("meta") if isinstance(obj, dict) else None)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        obj = load_torch_file(path)
        sd = find_state_dict(obj)
    except (UnidetError, OSError):
        raise
    except Exception as e:  # noqa: BLE001 - a truncated zip or pickle: name the file
        raise CheckpointFileError(f"{path}: not a readable PyTorch checkpoint ({path.stat().st_size} bytes; "
                                  f"{type(e).__name__}: {e})") from None
    return sd, plain_meta(obj.get("meta") if isinstance(obj, dict) else None)


def plain_meta(meta) -> dict:
    """The entries of a checkpoint ``meta`` that are plain data (str, numbers, bools, None and lists or
    dicts of them; tuples become lists, e.g. mmdet's ``CLASSES``). Anything else (objects of mmcv or
    other libraries, read as inert stubs) is dropped, so the meta can be saved again without them."""
    def plain(v):
        if v is None or isinstance(v, (str, bool, int, float)):
            return True, v
        if isinstance(v, (list, tuple)):
            items = [plain(x) for x in v]
            return all(ok for ok, _ in items), [x for _, x in items]
        if isinstance(v, dict):
            items = {k: plain(x) for k, x in v.items()}
            return all(isinstance(k, str) and ok for k, (ok, _) in items.items()), \
                {k: x for k, (_, x) in items.items()}
        return False, None

    out = {}
    for key, value in (meta.items() if isinstance(meta, dict) else ()):
        ok, value = plain(value)
        if ok and isinstance(key, str):
            out[key] = value
    return out


class StoredConfigError(CheckpointFileError):
    """The config text stored in a checkpoint's meta cannot be read as plain data."""


_CONFIG_CALLS = {"dict": dict, "list": list, "tuple": tuple, "set": set, "range": range, "float": float, "int": int}


def _literal(node, where: str):
    """The value of a config expression made of literals, ``dict(...)``/``list``/``tuple``/``range``/
    ``float``/``int`` calls and ``+``/``-`` on numbers; anything else raises :class:`StoredConfigError`."""
    import ast

    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        items = [_literal(e, where) for e in node.elts]
        return {ast.List: list, ast.Tuple: tuple, ast.Set: set}[type(node)](items)
    if isinstance(node, ast.Dict) and None not in node.keys:
        return {_literal(k, where): _literal(v, where) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _literal(node.operand, where)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _CONFIG_CALLS \
            and all(k.arg is not None for k in node.keywords):
        args = [_literal(a, where) for a in node.args]
        kwargs = {k.arg: _literal(k.value, where) for k in node.keywords}
        return _CONFIG_CALLS[node.func.id](*args, **kwargs)
    raise StoredConfigError(f"{where}, line {getattr(node, 'lineno', '?')}: not plain data "
                            f"({ast.unparse(node)[:60]!r}); pass the config file explicitly (--config FILE)")


def config_from_text(text: str, where: str):
    """An mmengine ``Config`` from config text as mmdet/mmcv store it in checkpoints (``cfg.pretty_text``:
    ``name = value`` lines of plain data). The text is parsed, never executed: a checkpoint from the
    internet runs no code here, as with :func:`load_torch_file`. ``where`` names the source in errors."""
    import ast

    from mmengine.config import Config

    try:
        tree = ast.parse(text, filename=where)
    except SyntaxError as e:
        raise StoredConfigError(f"{where}, line {e.lineno}: the stored config text is not valid Python ({e.msg}); "
                                "pass the config file explicitly (--config FILE)") from None
    values = {}
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # a docstring
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            raise StoredConfigError(f"{where}, line {node.lineno}: not a 'name = value' line; pass the config "
                                    "file explicitly (--config FILE)")
        values[node.targets[0].id] = _literal(node.value, where)
    try:
        return Config(values)
    except Exception as e:  # noqa: BLE001 - mmengine refuses some names/values: say which file
        raise StoredConfigError(f"{where}: the stored config does not make a config ({type(e).__name__}: {e}); "
                                "pass the config file explicitly (--config FILE)") from None


def stored_config(meta: dict, path):
    """The config stored in a checkpoint's ``meta['config']`` (:func:`config_from_text`), None without one."""
    text = (meta or {}).get("config")
    if not isinstance(text, str) or not text.strip():
        return None
    return config_from_text(text, f"{path} (meta['config'])")


#: What each checkpoint kind is, in messages (:func:`checkpoint_kind`, :func:`config_kind`).
KIND_NAMES = {
    "stage1": "a stage-1 (proposal network) checkpoint",
    "stage2": "a stage-2 (CLIP RoI classifier) checkpoint",
    "end2end": "an end-to-end checkpoint (CLIP C4 backbone + RPNHead + CLIP RoI head)",
    "clip_init": "a CLIP backbone initialisation (CLIP / RegionCLIP visual weights)",
    "backbone": "a backbone initialisation",
}
#: What each kind of model is, in messages.
MODEL_NAMES = {"stage1": "a stage-1 model (proposal network)", "stage2": "a stage-2 model (CLIP RoI classifier)",
               "end2end": "an end-to-end model (RPNHead + CLIP RoI head)"}
#: Why a checkpoint of each kind is what it is (the keys that say so).
KIND_EVIDENCE = {
    "stage1": "rpn_head weights, no roi_head.bbox_head.attnpool",
    "stage2": "roi_head.bbox_head.attnpool and fc_reg (or text-embedding zs_weights) weights, no rpn_head",
    "end2end": "rpn_head and roi_head.bbox_head.attnpool weights",
    "clip_init": "roi_head.bbox_head.attnpool weights but neither a box regression roi_head.bbox_head.fc_reg nor "
                 "text embeddings zs_weights, no rpn_head",
    "backbone": "only backbone.* weights",
}
#: Where a checkpoint of each kind is used.
KIND_USE = {
    "stage1": "it makes proposals (`unidet proposals`, `unidet detect --proposal-checkpoint`, a stage-1 config's "
              "test or load_from)",
    "stage2": "it classifies given proposals (`unidet detect --checkpoint` with --proposal-checkpoint or "
              "--proposals, a stage-2 config's test or load_from)",
    "end2end": "it detects on its own (`unidet detect --checkpoint`: proposals from its own RPN; `unidet test` "
               "with its end-to-end config, e.g. the official clip_end2end_faster_rcnn_r50_c4_1x_lvis_v0.5.py)",
    "clip_init": "it initialises stage-2 or end-to-end training (load_from=FILE allow_partial_load=True), it is "
                 "not a trained detector",
    "backbone": "it initialises a backbone for training (e.g. the torchvision ResNet-50 of stage 1), it is not a "
                "trained detector",
}


def checkpoint_kind(state_dict: dict) -> str | None:
    """``'stage1'`` (proposal network: an RPN head, no CLIP attention pool), ``'end2end'`` (RPN head and a
    CLIP RoI head), ``'stage2'`` (CLIP RoI head with box regression or with its text embeddings — a head
    trained here with ``with_reg=False`` has no ``fc_reg`` — no RPN), ``'clip_init'`` (CLIP visual weights:
    attention pool, neither ``fc_reg`` nor ``zs_weights``), ``'backbone'`` (only ``backbone.*``), None otherwise."""
    keys = list(state_dict)
    rpn = any(k.startswith("rpn_head.") for k in keys)
    clip_head = any(k.startswith("roi_head.bbox_head.attnpool.") for k in keys)
    if rpn:
        return "end2end" if clip_head else "stage1"
    if clip_head:
        trained = ("roi_head.bbox_head.fc_reg.", "roi_head.bbox_head.zs_weights")
        return "stage2" if any(k.startswith(trained) for k in keys) else "clip_init"
    if keys and all(k.startswith("backbone.") for k in keys):
        return "backbone"
    return None


def region_embed_dim(state_dict: dict) -> int | None:
    """The text-embedding dimension ``D`` of detector weights (``fc_reg`` input, attention-pool output), None
    without a CLIP RoI head."""
    for key, axis in (("roi_head.bbox_head.fc_reg.weight", 1), ("roi_head.bbox_head.attnpool.c_proj.weight", 0)):
        if key in state_dict:
            return int(state_dict[key].shape[axis])
    return None


def config_kind(model_cfg) -> str | None:
    """``'stage1'`` (an ``rpn_head``, no CLIP box head), ``'end2end'`` (an ``rpn_head`` and a CLIP box head,
    :data:`CLIP_BOX_HEADS`), ``'stage2'`` (a CLIP box head, no RPN), None otherwise."""
    get = (lambda d, k: d.get(k) if hasattr(d, "get") else None)
    head = get(get(model_cfg, "roi_head") or {}, "bbox_head") or {}
    clip_head = get(head, "type") in CLIP_BOX_HEADS
    if get(model_cfg, "rpn_head"):
        return "end2end" if clip_head else "stage1"
    return "stage2" if clip_head else None


def checkpoint_stage(state_dict: dict) -> int | None:
    """1 for a proposal network (RPN head, no CLIP RoI head), 2 for a CLIP RoI classifier without RPN
    (trained, or a CLIP initialisation), None otherwise (end-to-end checkpoints included:
    :func:`checkpoint_kind` tells them apart)."""
    return {"stage1": 1, "stage2": 2, "clip_init": 2}.get(checkpoint_kind(state_dict))


def config_stage(model_cfg) -> int | None:
    """1 for a proposal-network model config (an ``rpn_head``, no CLIP box head), 2 for a CLIP RoI
    classifier without RPN (a CLIP box head, :data:`CLIP_BOX_HEADS`), None otherwise (end-to-end
    configs included: :func:`config_kind`)."""
    return {"stage1": 1, "stage2": 2}.get(config_kind(model_cfg))


def describe_checkpoint(path, state_dict: dict) -> str:
    """``'<path> is <kind> (<evidence>): <use>'``; ``''`` when the kind is unknown."""
    kind = checkpoint_kind(state_dict)
    if kind is None:
        return ""
    return f"{path} is {KIND_NAMES[kind]} ({KIND_EVIDENCE[kind]}): {KIND_USE[kind]}"


def checkpoint_kind_message(path, state_dict: dict, expected) -> str | None:
    """Why the checkpoint at ``path`` cannot be the model: ``expected`` is the kind of model asked for
    (1 / ``'stage1'``, 2 / ``'stage2'``, ``'end2end'``) or its model config (:func:`config_kind`). None
    when the kinds agree or either is unknown; initialisations fit the models they initialise
    (``load_from``: ``backbone`` any, ``clip_init`` stage-2 and end-to-end ones). ``unidet detect``,
    ``unidet test`` and ``load_from`` give the same message."""
    if isinstance(expected, int):
        expected = {1: "stage1", 2: "stage2"}.get(expected)
    elif not isinstance(expected, str) and expected is not None:
        expected = config_kind(expected)
    kind = checkpoint_kind(state_dict)
    if kind == "clip_init" and expected == "stage1":
        kind = "stage2"  # CLIP weights for a ResNet + FPN proposal network: the stage-2 message says where they go
    if expected is None or kind is None or kind == expected or kind in ("clip_init", "backbone"):
        return None
    if kind == "stage1" and expected == "stage2":  # the most common mix-up: say exactly where it goes
        return (f"{path} is a stage-1 (proposal network) checkpoint (rpn_head weights), but a stage-2 model (CLIP "
                "RoI classifier) is asked for: it makes proposals (`unidet proposals`, `unidet detect "
                "--proposal-checkpoint`); give a stage-2 checkpoint (`unidet detect --checkpoint`, a stage-2 config's "
                "test or load_from)")
    if kind == "stage2" and expected == "stage1":
        return (f"{path} is a stage-2 (CLIP RoI classifier) checkpoint (roi_head.bbox_head.attnpool weights, no "
                "rpn_head), but a stage-1 model (proposal network) is asked for: give a stage-1 checkpoint "
                "(`unidet detect --proposal-checkpoint`, `unidet proposals`, a stage-1 config's test or load_from)")
    return (f"{path} is {KIND_NAMES[kind]} ({KIND_EVIDENCE[kind]}), but {MODEL_NAMES[expected]} is asked for: "
            f"{KIND_USE[kind]}")


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
