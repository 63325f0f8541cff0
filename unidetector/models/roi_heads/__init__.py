"""RoI heads, RoI extractors, shared heads and box heads."""
from . import roi_extractors  # noqa: F401  (registers SingleRoIExtractor)
from . import bbox_heads, standard_roi_head  # noqa: F401  (registers the CLIP box heads, StandardRoIHead)
from . import oln_roi_head  # noqa: F401  (registers OlnRoIHead)
from . import region_text_roi_head  # noqa: F401  (registers RegionTextRoIHead, the world-CLIP pretraining)
