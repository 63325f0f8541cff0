"""Weights: read PyTorch/TorchScript checkpoints without PyTorch, convert them to Jittor ``.pkl``,
and load state dicts by official parameter name (:func:`load_state_dict`)."""
from .state_dict import LoadReport, StateDictError, load_state_dict, match_state_dict

__all__ = ["LoadReport", "StateDictError", "load_state_dict", "match_state_dict"]
