"""Weights: read PyTorch/TorchScript checkpoints without PyTorch, convert them to Jittor ``.pkl``,
and load state dicts by official parameter name (:func:`load_state_dict`)."""
from .checkpoints import (cast_floats, detect_format, read_checkpoint, save_checkpoint, split_openai_clip,
                          torchvision_resnet_to_mmdet)
from .state_dict import LoadReport, StateDictError, load_state_dict, match_state_dict
from .torch_reader import find_state_dict, load_torch_file

__all__ = ["LoadReport", "StateDictError", "cast_floats", "detect_format", "find_state_dict", "load_state_dict",
           "load_torch_file", "match_state_dict", "read_checkpoint", "save_checkpoint", "split_openai_clip",
           "torchvision_resnet_to_mmdet"]
