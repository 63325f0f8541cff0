"""Load a state dict into a Jittor module by official parameter name, with a report.

``load_state_dict(module, sd)`` is the one place where checkpoint arrays meet Jittor
parameters: official (PyTorch/mmdet) keys map name-for-name onto ``module.state_dict()``.
Values may be numpy arrays, Jittor Vars or anything ``np.asarray`` takes; they are cast to the
parameter's dtype (float16 checkpoints load into float32 models) and size-1 arrays are reshaped
(PyTorch 0-d tensors vs Jittor's shape ``[1]``).

Rules (mmcv ``load_state_dict`` semantics, made explicit):

* ``num_batches_tracked`` has no counterpart in Jittor's BatchNorm: reported as *ignored*.
* The ``zs_weights*`` text-embedding buffers of the CLIP box heads are never copied: they belong
  to the vocabulary of the model (its ``zeroshot_path`` files), not to the checkpoint. A checkpoint
  trained on COCO (``zs_weights``, 81 columns) or COCO + O365 (``zs_weights_0/1``) thus loads fully
  into an LVIS model, and the report lists the checkpoint embeddings that were replaced by the
  model's own (the official code prints a size-mismatch warning here; issues #11/#16). They never
  count as missing, unexpected or mismatched.
* Any other shape mismatch is an error.
* ``strict=True`` additionally makes missing and unexpected keys an error.

Nothing is copied when the load fails, so a module is never left half-loaded.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import UnidetError

#: Checkpoint keys that have no Jittor counterpart and are dropped silently (but reported).
IGNORED_SUFFIXES = ("num_batches_tracked",)
#: Last key components of the text-embedding buffers: always the model's own, never loaded.
EMBEDDING_PREFIXES = ("zs_weights",)


class StateDictError(UnidetError, RuntimeError):
    """The checkpoint does not fit the module; ``.report`` has the details."""

    def __init__(self, message: str, report: "LoadReport"):
        super().__init__(message)
        self.report = report


@dataclass
class LoadReport:
    loaded: list = field(default_factory=list)
    missing: list = field(default_factory=list)        # in the module, not in the checkpoint
    unexpected: list = field(default_factory=list)     # in the checkpoint, not in the module
    ignored: list = field(default_factory=list)        # e.g. num_batches_tracked
    mismatched: list = field(default_factory=list)     # (key, checkpoint shape, module shape): errors
    embeddings_kept: list = field(default_factory=list)   # module zs_weights* keys (model's own vocabulary)
    embeddings_replaced: list = field(default_factory=list)  # (key, shape) checkpoint zs_weights* not loaded

    def errors(self, strict: bool = False) -> list:
        errs = [f"shape mismatch for {k}: checkpoint {tuple(a)} vs module {tuple(b)}" for k, a, b in self.mismatched]
        if strict:
            errs += [f"missing key {k}" for k in self.missing] + [f"unexpected key {k}" for k in self.unexpected]
        return errs

    def format(self, max_keys: int = 20) -> str:
        def keys(ks):
            shown = ", ".join(ks[:max_keys])
            return shown + (f", ... (+{len(ks) - max_keys} more)" if len(ks) > max_keys else "")

        lines = [f"loaded: {len(self.loaded)} keys"]
        for name in ("missing", "unexpected", "ignored"):
            ks = getattr(self, name)
            lines.append(f"{name}: {len(ks)}" + (f" [{keys(ks)}]" if ks else ""))
        lines.append(f"shape mismatches (ERROR): {len(self.mismatched)}")
        lines += [f"  {k}: checkpoint {tuple(a)} vs module {tuple(b)}" for k, a, b in self.mismatched[:max_keys]]
        if self.embeddings_kept or self.embeddings_replaced:
            replaced = ", ".join(f"{k} {tuple(shape)}" for k, shape in self.embeddings_replaced) or "none"
            lines.append(f"text embeddings: kept the model's own {', '.join(self.embeddings_kept) or '(none)'} "
                         f"(from its zeroshot_path files); checkpoint embeddings not loaded: {replaced}. "
                         "This is expected when the vocabulary changes.")
        return "\n".join(lines)

    __str__ = format


def _as_numpy(value) -> np.ndarray:
    if hasattr(value, "numpy"):
        value = value.numpy()
    return np.asarray(value)


def _shape_compatible(src: tuple, dst: tuple) -> bool:
    if tuple(src) == tuple(dst):
        return True
    size = int(np.prod(src)) if len(src) else 1
    return size == 1 and int(np.prod(dst)) == 1   # 0-d tensor vs shape [1]


def match_state_dict(module_sd: dict, state_dict: dict) -> LoadReport:
    """Compare checkpoint keys/shapes with a module's ``state_dict()`` (nothing is copied)."""
    report = LoadReport()
    is_embedding = (lambda k: k.rsplit(".", 1)[-1].startswith(EMBEDDING_PREFIXES))
    report.embeddings_kept = [k for k in module_sd if is_embedding(k)]
    for key, value in state_dict.items():
        if is_embedding(key):
            report.embeddings_replaced.append((key, tuple(np.shape(value))))
            continue
        if key not in module_sd:
            (report.ignored if key.endswith(IGNORED_SUFFIXES) else report.unexpected).append(key)
            continue
        src, dst = tuple(np.shape(value)), tuple(module_sd[key].shape)
        if _shape_compatible(src, dst):
            report.loaded.append(key)
        else:
            report.mismatched.append((key, src, dst))
    report.missing = [k for k in module_sd if k not in state_dict and not is_embedding(k)]
    return report


def load_state_dict(module, state_dict: dict, strict: bool = False, prefix: str = "") -> LoadReport:
    """Copy ``state_dict`` (official key → array) into ``module``'s parameters and buffers.

    Args:
        module: a ``jittor.nn.Module`` whose attribute paths are the official names.
        state_dict: ``{key: array}``; with ``prefix``, only keys starting with it are used,
            with the prefix removed (e.g. ``prefix='backbone.'`` to load a detector
            checkpoint into the bare backbone).
        strict: raise on missing/unexpected keys too (shape mismatches always raise;
            ``zs_weights*`` are never loaded, see the module doc).

    Returns:
        :class:`LoadReport`. Raises :class:`StateDictError` (nothing copied) on errors.
    """
    import jittor as jt

    if prefix:
        state_dict = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    module_sd = module.state_dict()
    report = match_state_dict(module_sd, state_dict)
    errors = report.errors(strict)
    if errors:
        raise StateDictError(f"cannot load the state dict into {type(module).__name__}:\n  "
                             + "\n  ".join(errors[:30]) + f"\n{report.format()}", report)
    for key in report.loaded:
        var = module_sd[key]
        value = _as_numpy(state_dict[key]).astype(str(var.dtype), copy=False).reshape(tuple(var.shape))
        frozen = var.is_stop_grad()
        var.assign(jt.array(value))
        if frozen:
            var.stop_grad()
    return report
