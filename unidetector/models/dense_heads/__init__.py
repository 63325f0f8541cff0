"""Dense (RPN) heads (registered in ``unidetector.registry.MODELS``)."""
from .oln_rpn_head import OlnRPNHead

__all__ = ["OlnRPNHead"]
from .rpn_head import RPNHead  # noqa: E402

__all__ += ["RPNHead"]
