"""Test pipelines of a config for images given decoded (``unidet detect``, ``unidet serve``, the API)."""
from __future__ import annotations

import copy

from ..errors import DetectorError

__all__ = ["IMAGE_LOADERS", "image_pipeline", "test_pipeline"]

IMAGE_LOADERS = ("LoadImageFromFile", "LoadImageFromWebcam")


def test_pipeline(cfg) -> list:
    """The ``data.test`` (or ``test_pipeline``) pipeline of ``cfg``, copied."""
    data = cfg.get("data") or {}
    test = data.get("test")
    if isinstance(test, (list, tuple)):
        test = test[0] if test else None
    pipeline = (test or {}).get("pipeline") or cfg.get("test_pipeline")
    if not pipeline:
        raise DetectorError("the config has no test pipeline (data.test.pipeline or test_pipeline)")
    return [dict(copy.deepcopy(t)) for t in pipeline]


def _walk(pipeline):
    for t in pipeline:
        yield t
        if isinstance(t.get("transforms"), (list, tuple)):
            yield from _walk(t["transforms"])


def image_pipeline(pipeline: list, num_proposals: int | None = None) -> list:
    """The test pipeline without its image loader (images are given decoded); with ``num_proposals``,
    proposals with their score are loaded (top ``num_proposals``) and collected."""
    out = [copy.deepcopy(t) for t in pipeline if t.get("type") not in IMAGE_LOADERS]
    if num_proposals is None:
        return out
    out = [t for t in out if t.get("type") != "LoadProposals"]
    out.insert(0, dict(type="LoadProposals", num_max_proposals=int(num_proposals), load_score=True))
    collects = [t for t in _walk(out) if t.get("type") == "Collect"]
    if not collects:
        raise DetectorError("the stage-2 test pipeline has no Collect step")
    for t in collects:
        if "proposals" not in t["keys"]:
            t["keys"] = list(t["keys"]) + ["proposals"]
    return out
