"""RoI heads, RoI extractors, shared heads and box heads."""
