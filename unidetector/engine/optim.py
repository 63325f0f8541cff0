"""Optimizers: SGD (and AdamW) in PyTorch semantics, mmcv 1.x parameter groups (``paramwise_cfg``), gradient clipping.

* :class:`SGD` is ``jt.optim.SGD`` (checked line by line: ``d = g + wd·w``, ``v = μ·v + (1−dampening)·d``,
  ``w −= lr·v``, Nesterov ``w −= lr·(d + μ·v)``; with the buffer starting at 0 the first step gives
  ``v = d``, exactly PyTorch's ``buf = d_p.clone()``), plus a name-keyed ``state_dict`` (learning rates
  and momentum buffers as numpy) so that checkpoints resume exactly. Its ``backward`` (Jittor's) averages
  gradients over MPI ranks.
* :func:`build_optimizer` reproduces mmcv 1.x ``DefaultOptimizerConstructor`` (v1.3.14):

  - ``custom_keys``: keys are sorted alphabetically, then by length, longest first
    (``sorted(sorted(keys), key=len, reverse=True)``); the **first** key that is a substring of the
    parameter's full name (``'<module path>.<param>'``; a top-level parameter is ``'.<param>'``) sets
    ``lr = base_lr·lr_mult`` and ``weight_decay = base_wd·decay_mult`` (both default 1), and no other
    rule applies to that parameter.
  - otherwise ``bias_lr_mult`` (biases of non-norm layers), ``norm_decay_mult`` (parameters of
    BatchNorm/GroupNorm/LayerNorm/InstanceNorm layers), ``dwconv_decay_mult`` (depth-wise convs),
    ``bias_decay_mult`` (other biases), each default 1.
  - parameters that do not require gradients (``stop_grad``) are left out: they receive no update
    in either framework.
  Groups with equal (lr, weight_decay) are merged (numerically identical; fewer Python loops).
* :func:`clip_grad_norm` = mmcv ``clip_grad_norm_`` (torch): total norm over all gradients of
  parameters that require grad, ``coef = max_norm / (total + 1e-6)``, applied only if ``coef < 1``.
"""
from __future__ import annotations

import numpy as np

import jittor as jt

from ..errors import UnidetError

SUPPORTED_PARAMWISE_KEYS = ("custom_keys", "bias_lr_mult", "bias_decay_mult", "norm_decay_mult",
                            "dwconv_decay_mult", "bypass_duplicate")
NORM_CLASS_MARKERS = ("BatchNorm", "GroupNorm", "LayerNorm", "InstanceNorm")


class OptimizerConfigError(UnidetError, ValueError):
    """The ``optimizer`` config asks for something this engine does not implement."""


class _NamedState:
    """Parameter names and a checkpointable, name-keyed state for Jittor optimizers.

    ``param_groups`` entries carry ``names`` (parameter names, same order as ``params``),
    ``lr`` (current) and ``initial_lr`` (the lr before scheduling: base_lr × lr_mult).
    ``BUFFERS`` maps a state-dict key to the per-group list of per-parameter buffers.
    """

    BUFFERS: dict = {}
    HYPER: tuple = ()

    def _name_groups(self, lr):
        for pg in self.param_groups:
            pg.setdefault("lr", lr)
            pg.setdefault("initial_lr", pg["lr"])
            pg.setdefault("names", [f"param{i}" for i in range(len(pg["params"]))])

    def state_dict(self) -> dict:
        groups, buffers = [], {key: {} for key in self.BUFFERS}
        for pg in self.param_groups:
            groups.append({k: pg[k] for k in ("lr", "initial_lr", "names")}
                          | {k: pg.get(k, getattr(self, k)) for k in self.HYPER})
            for key, field in self.BUFFERS.items():
                for name, v in zip(pg["names"], pg[field]):
                    buffers[key][name] = v.numpy().copy()
        return {"type": type(self).__name__, "param_groups": groups, **buffers, "n_step": self.n_step}

    def load_state_dict(self, state: dict) -> None:
        if state.get("type", "SGD") != type(self).__name__:
            raise ValueError(f"optimizer state is {state.get('type')!r}, the config builds {type(self).__name__!r}")
        groups = state["param_groups"]
        if len(groups) != len(self.param_groups) or any(
                list(a["names"]) != list(b["names"]) for a, b in zip(groups, self.param_groups)):
            raise ValueError("optimizer state does not match the model's parameter groups "
                             f"({len(groups)} saved vs {len(self.param_groups)} now, or different parameters)")
        for saved, pg in zip(groups, self.param_groups):
            for k, v in saved.items():
                if k != "names":
                    pg[k] = v
            for key, field in self.BUFFERS.items():
                for name, v in zip(pg["names"], pg[field]):
                    v.assign(jt.array(np.asarray(state[key][name], dtype=str(v.dtype))))
                    v.stop_grad()
        self.n_step = int(state.get("n_step", self.n_step))

    def grads(self):
        """[(name, param, grad)] of parameters that require grad (after a ``backward``)."""
        out = []
        for pg in self.param_groups:
            if "grads" not in pg:
                continue
            for name, p, g in zip(pg["names"], pg["params"], pg["grads"]):
                if not p.is_stop_grad():
                    out.append((name, p, g))
        return out


class SGD(_NamedState, jt.optim.SGD):
    """``jt.optim.SGD`` (PyTorch semantics, see the module doc) with parameter names and a
    checkpointable state (momentum buffers by parameter name)."""

    BUFFERS = {"momentum_buffer": "values"}
    HYPER = ("momentum", "weight_decay", "dampening", "nesterov")

    def __init__(self, params, lr, momentum=0, weight_decay=0, dampening=0, nesterov=False):
        super().__init__(params, lr, momentum=momentum, weight_decay=weight_decay, dampening=dampening,
                         nesterov=nesterov)
        self._name_groups(lr)


class AdamW(_NamedState, jt.optim.AdamW):
    """``jt.optim.AdamW`` = ``torch.optim.AdamW`` (decoupled decay ``w *= 1 − lr·wd``, bias-corrected
    moments, ``w −= lr/(1−β₁ᵗ) · m / (√v/√(1−β₂ᵗ) + eps)``) with names and a checkpointable state.
    Not used by the official configs; the synthetic world trains from scratch with it."""

    BUFFERS = {"exp_avg": "m", "exp_avg_sq": "values"}
    HYPER = ("eps", "betas", "weight_decay")

    def __init__(self, params, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(params, lr, eps=eps, betas=tuple(betas), weight_decay=weight_decay)
        self._name_groups(lr)


def _is_norm(module) -> bool:
    return any(m in c.__name__ for c in type(module).__mro__ for m in NORM_CLASS_MARKERS)


def _is_dwconv(module) -> bool:
    groups = getattr(module, "groups", 1)
    return "Conv" in type(module).__name__ and groups > 1 and groups == getattr(module, "in_channels", -1)


def paramwise_groups(model, base_lr: float, base_wd: float | None, paramwise_cfg: dict | None = None) -> list:
    """Per-parameter ``{'params', 'names', 'lr', 'weight_decay'}`` groups, mmcv 1.x rules, merged."""
    cfg = dict(paramwise_cfg or {})
    unknown = sorted(set(cfg) - set(SUPPORTED_PARAMWISE_KEYS))
    if unknown:
        raise OptimizerConfigError(f"optimizer.paramwise_cfg: unsupported keys {unknown}; "
                                   f"supported: {list(SUPPORTED_PARAMWISE_KEYS)}")
    custom_keys = dict(cfg.get("custom_keys", {}) or {})
    sorted_keys = sorted(sorted(custom_keys), key=len, reverse=True)
    bias_lr_mult = cfg.get("bias_lr_mult", 1.0)
    bias_decay_mult = cfg.get("bias_decay_mult", 1.0)
    norm_decay_mult = cfg.get("norm_decay_mult", 1.0)
    dwconv_decay_mult = cfg.get("dwconv_decay_mult", 1.0)
    modules = dict(model.named_modules())
    seen = set()
    merged: dict = {}
    for full_name, p in model.named_parameters():
        if p.is_stop_grad():
            continue
        if id(p) in seen:  # the same Var reachable twice (shared weights): one update only
            continue
        seen.add(id(p))
        prefix, _, name = full_name.rpartition(".")
        module = modules.get(prefix, model)
        lr, wd = base_lr, base_wd
        for key in sorted_keys:
            if key in f"{prefix}.{name}":
                lr = base_lr * custom_keys[key].get("lr_mult", 1.0)
                if base_wd is not None:
                    wd = base_wd * custom_keys[key].get("decay_mult", 1.0)
                break
        else:
            is_norm = _is_norm(module)
            if name == "bias" and not is_norm:
                lr = base_lr * bias_lr_mult
            if base_wd is not None:
                if is_norm:
                    wd = base_wd * norm_decay_mult
                elif _is_dwconv(module):
                    wd = base_wd * dwconv_decay_mult
                elif name == "bias":
                    wd = base_wd * bias_decay_mult
        group = merged.setdefault((lr, wd), {"params": [], "names": [], "lr": lr, "initial_lr": lr,
                                             "weight_decay": 0.0 if wd is None else wd})
        group["params"].append(p)
        group["names"].append(full_name)
    if not merged:
        raise OptimizerConfigError("the model has no trainable parameters (all are stop_grad)")
    return list(merged.values())


OPTIMIZERS = {
    "SGD": (SGD, {"momentum": 0.0, "dampening": 0.0, "nesterov": False}),
    "AdamW": (AdamW, {"betas": (0.9, 0.999), "eps": 1e-8}),
}


def build_optimizer(model, cfg: dict):
    """``optimizer=dict(type='SGD', lr, momentum=0, weight_decay=0, dampening=0, nesterov=False,
    paramwise_cfg=...)`` → :class:`SGD`; ``type='AdamW'`` (``lr, betas, eps, weight_decay``, torch's
    default decay 0.01) → :class:`AdamW`. The official configs use SGD."""
    cfg = dict(cfg)
    typ = cfg.pop("type", "SGD")
    if typ not in OPTIMIZERS:
        raise OptimizerConfigError(f"optimizer.type={typ!r} is not supported (supported: {sorted(OPTIMIZERS)})")
    cls, defaults = OPTIMIZERS[typ]
    paramwise_cfg = cfg.pop("paramwise_cfg", None)
    allowed = {"lr", "weight_decay", *defaults}
    unknown = sorted(set(cfg) - allowed)
    if unknown:
        raise OptimizerConfigError(f"optimizer ({typ}): unsupported keys {unknown}; supported: {sorted(allowed)}")
    if "lr" not in cfg:
        raise OptimizerConfigError("optimizer: 'lr' is required")
    lr = float(cfg.pop("lr"))
    wd = cfg.pop("weight_decay", None if typ == "SGD" else 0.01)
    groups = paramwise_groups(model, lr, None if wd is None else float(wd), paramwise_cfg)
    return cls(groups, lr, weight_decay=float(wd or 0.0), **{k: cfg.get(k, v) for k, v in defaults.items()})


def grad_global_norm(optimizer: SGD, norm_type: float = 2.0) -> jt.Var:
    """Total ``norm_type`` norm of all gradients of parameters that require grad (a 1-element Var)."""
    grads = [g for _, _, g in optimizer.grads()]
    if not grads:
        return jt.zeros(1)
    if norm_type == float("inf"):
        return jt.stack([g.abs().max() for g in grads]).max()
    p = float(norm_type)
    total = sum((g.abs() ** p).sum() if p != 2 else (g * g).sum() for g in grads)
    return total ** (1.0 / p)


def clip_grad_norm(optimizer: SGD, max_norm: float, norm_type: float = 2.0) -> float:
    """mmcv/torch ``clip_grad_norm_`` on the optimizer's accumulated gradients; returns the norm
    before clipping. Directions are kept; after clipping the norm is ≤ ``max_norm``."""
    total = float(grad_global_norm(optimizer, norm_type).item())
    coef = float(max_norm) / (total + 1e-6)
    if coef < 1.0:
        for _, _, g in optimizer.grads():
            g.update(g * coef)
    return total
