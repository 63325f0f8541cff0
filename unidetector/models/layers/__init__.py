"""Building blocks shared by several models."""
from . import channels_last
from .attention_pool import AttentionPool2d
from .batch_norm import EvalBatchNorm2d, make_norm

__all__ = ["channels_last", "AttentionPool2d", "EvalBatchNorm2d", "make_norm"]
