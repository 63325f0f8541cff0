"""Learning-rate schedule: mmcv 1.x ``LrUpdaterHook`` (``policy='step'`` and ``'fixed'``).

For a group whose unscheduled lr is ``base`` (``initial_lr`` = optimizer lr × ``lr_mult``), at epoch
``e`` (0-based) and global iteration ``i`` (0-based, iterations done before this one):

* regular lr = ``base · gamma^k`` with ``k`` = number of ``step`` milestones ≤ ``e`` (an int ``step``
  means ``k = e // step``), floored at ``min_lr`` if given; with ``by_epoch=False`` the milestones
  count iterations and are compared with ``i`` (mmcv semantics, for runs of a few epochs);
* warm-up while ``i < warmup_iters``: ``linear`` → ``regular · (1 − (1 − i/warmup_iters)·(1 − warmup_ratio))``,
  ``constant`` → ``regular · warmup_ratio``, ``exp`` → ``regular · warmup_ratio^(1 − i/warmup_iters)``.

The lr is a pure function of ``(epoch, iteration)``: the schedule holds no state beyond its config,
so a resumed run sets exactly the same values.
"""
from __future__ import annotations

from ..errors import UnidetError

SUPPORTED_KEYS = ("policy", "step", "gamma", "min_lr", "warmup", "warmup_iters", "warmup_ratio", "by_epoch")


class ScheduleConfigError(UnidetError, ValueError):
    """``lr_config`` asks for a policy or option this engine does not implement."""


class LrSchedule:
    def __init__(self, policy="step", step=None, gamma=0.1, min_lr=None, warmup=None, warmup_iters=0,
                 warmup_ratio=0.1, by_epoch=True):
        if policy not in ("step", "fixed"):
            raise ScheduleConfigError(f"lr_config.policy={policy!r} is not supported ('step', 'fixed')")
        if warmup not in (None, "linear", "constant", "exp"):
            raise ScheduleConfigError(f"lr_config.warmup={warmup!r}: use None, 'linear', 'constant' or 'exp'")
        if policy == "step" and step is None:
            raise ScheduleConfigError("lr_config.step is required for policy='step'")
        if warmup is not None and not (0 < warmup_ratio <= 1.0):
            raise ScheduleConfigError(f"lr_config.warmup_ratio must be in (0, 1], got {warmup_ratio}")
        self.policy = policy
        self.step = step
        self.gamma = float(gamma)
        self.min_lr = min_lr
        self.warmup = warmup
        self.warmup_iters = int(warmup_iters or 0) if warmup else 0
        self.warmup_ratio = float(warmup_ratio)
        self.by_epoch = bool(by_epoch)

    def regular_factor(self, progress: int) -> float:
        """``gamma^k`` at ``progress`` (the epoch, or the iteration when ``by_epoch=False``)."""
        if self.policy == "fixed":
            return 1.0
        if isinstance(self.step, int):
            k = progress // self.step
        else:
            k = len(self.step)
            for i, s in enumerate(self.step):
                if progress < s:
                    k = i
                    break
        return self.gamma ** k

    def lr(self, base_lr: float, epoch: int, iteration: int) -> float:
        lr = base_lr * self.regular_factor(epoch if self.by_epoch else iteration)
        if self.min_lr is not None:
            lr = max(lr, self.min_lr)
        if self.warmup and iteration < self.warmup_iters:
            t = iteration / self.warmup_iters
            if self.warmup == "linear":
                lr = lr * (1 - (1 - t) * (1 - self.warmup_ratio))
            elif self.warmup == "constant":
                lr = lr * self.warmup_ratio
            else:
                lr = lr * self.warmup_ratio ** (1 - t)
        return lr

    def apply(self, optimizer, epoch: int, iteration: int) -> list:
        """Set every group's ``lr`` from its ``initial_lr``; returns the lrs."""
        lrs = []
        for pg in optimizer.param_groups:
            pg["lr"] = self.lr(pg["initial_lr"], epoch, iteration)
            lrs.append(pg["lr"])
        return lrs

    def state_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("policy", "step", "gamma", "min_lr", "warmup", "warmup_iters",
                                              "warmup_ratio", "by_epoch")}


def build_lr_schedule(cfg: dict | None) -> LrSchedule:
    cfg = dict(cfg or {"policy": "fixed"})
    unknown = sorted(set(cfg) - set(SUPPORTED_KEYS))
    if unknown:
        raise ScheduleConfigError(f"lr_config: unsupported keys {unknown}; supported: {list(SUPPORTED_KEYS)}")
    return LrSchedule(**cfg)
