"""Building blocks shared by several models."""
from . import channels_last
from .attention_pool import AttentionPool2d
from .batch_norm import BatchNorm2d, EvalBatchNorm2d, make_norm
from .pooling import BlockAvgPool2d, block_mean

__all__ = ["channels_last", "AttentionPool2d", "BatchNorm2d", "BlockAvgPool2d", "EvalBatchNorm2d", "block_mean",
           "make_norm"]
