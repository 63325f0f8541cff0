"""Dense (RPN) heads (registered in ``unidetector.registry.MODELS``)."""
from .oln_rpn_head import OlnRPNHead

__all__ = ["OlnRPNHead"]
