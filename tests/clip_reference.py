"""OpenAI's CLIP code (package ``clip-anytorch``) loaded file by file, so that neither its
``clip/__init__.py`` (which needs torchvision) nor any download runs. Tests only."""
import importlib.util

import pytest


def load_reference(module: str):
    """``clip/<module>.py`` of the installed OpenAI CLIP package, or skip the test."""
    pytest.importorskip("torch", reason="reference tests need PyTorch: pip install -e '.[reference]'")
    spec = importlib.util.find_spec("clip")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("reference tests need OpenAI's CLIP code: pip install --no-deps clip-anytorch==2.6.0")
    path = f"{spec.submodule_search_locations[0]}/{module}.py"
    mspec = importlib.util.spec_from_file_location(f"openai_clip_{module}", path)
    mod = importlib.util.module_from_spec(mspec)
    mspec.loader.exec_module(mod)
    return mod


def detector_keys(visual_state_dict) -> dict:
    """OpenAI CLIP visual-tower keys under the official detector names (RegionCLIP's mapping, written out
    here independently of ``unidetector.convert``): ``layer4.*`` → ``roi_head.shared_head.layer4.*``,
    ``attnpool.*`` → ``roi_head.bbox_head.attnpool.*``, the rest → ``backbone.*``."""
    out = {}
    for k, v in visual_state_dict.items():
        prefix = ("roi_head.shared_head." if k.startswith("layer4.") else
                  "roi_head.bbox_head." if k.startswith("attnpool.") else "backbone.")
        out[prefix + k] = v
    return out
