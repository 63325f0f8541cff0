"""Training and testing engine: SGD / AdamW + mmcv parameter groups, mmcv lr schedule, the training loop
(accumulation, clipping, AMP loss scaling, atomic checkpoints, exact resume, MPI data parallel),
inference over datasets, and config-driven entry points used by ``unidet train`` / ``unidet test``."""
from .checkpoint import atomic_save, load_checkpoint_file
from .optim import SGD, AdamW, build_optimizer, clip_grad_norm, paramwise_groups
from .schedule import LrSchedule, build_lr_schedule
from .trainer import NonFiniteLossError, Trainer, parse_losses

__all__ = ["SGD", "AdamW", "build_optimizer", "clip_grad_norm", "paramwise_groups", "LrSchedule", "build_lr_schedule",
           "Trainer", "NonFiniteLossError", "parse_losses", "atomic_save", "load_checkpoint_file"]
