"""Numerical parity with the official UniDetector code, case by case.

Reads the fixture folder from ``UNIDET_GOLDENS_DIR`` (default
``../shared/goldens/visible`` next to the checkout) and runs every case of its
``MANIFEST.json`` through the checker ``tests/goldens/<case>.py``. Any folder in
the same format works: checkers read shapes, sizes and tolerances from the
manifest and the arrays, never from constants.
"""
import importlib
import json
import os
from pathlib import Path

import pytest

from goldens import Golden

ROOT = Path(__file__).resolve().parents[1]
GOLDENS_DIR = Path(os.environ.get("UNIDET_GOLDENS_DIR", ROOT.parent / "shared" / "goldens" / "visible"))
MANIFEST = GOLDENS_DIR / "MANIFEST.json"
CASES = sorted(json.loads(MANIFEST.read_text())["cases"]) if MANIFEST.is_file() else []


def test_goldens_folder_present():
    if not MANIFEST.is_file():
        pytest.skip(f"no golden fixtures at {GOLDENS_DIR} (set UNIDET_GOLDENS_DIR); "
                    "a user checkout without ../shared has none")
    assert CASES, f"{MANIFEST} lists no cases"


@pytest.mark.parametrize("case_name", CASES)
def test_golden_case(case_name):
    try:
        checker = importlib.import_module(f"goldens.{case_name}")
    except ModuleNotFoundError as e:
        if e.name != f"goldens.{case_name}":
            raise
        pytest.skip(f"golden case '{case_name}': no checker yet (tests/goldens/{case_name}.py)")
    checker.check(Golden.open(GOLDENS_DIR, case_name))
