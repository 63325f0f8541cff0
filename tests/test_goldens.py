"""Numerical parity with the official UniDetector code, case by case.

Reads the fixture folder from ``UNIDET_GOLDENS_DIR`` (default
``../shared/goldens/visible`` next to the checkout) and runs every case of its
``MANIFEST.json`` through the checker ``tests/goldens/<case>.py``. Any folder in
the same format works: checkers read shapes, sizes and tolerances from the
manifest and the arrays, never from constants. A case listed in the manifest
without a checker FAILS (it is a claim nobody checks), it is never skipped.
"""
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from goldens import Golden

ROOT = Path(__file__).resolve().parents[1]
GOLDENS_DIR = Path(os.environ.get("UNIDET_GOLDENS_DIR", ROOT.parent / "shared" / "goldens" / "visible"))
MANIFEST = GOLDENS_DIR / "MANIFEST.json"
CASES = sorted(json.loads(MANIFEST.read_text())["cases"]) if MANIFEST.is_file() else []


def load_checker(case_name):
    """The checker module ``goldens.<case_name>``; ``pytest.fail`` (never skip) when there is none."""
    try:
        return importlib.import_module(f"goldens.{case_name}")
    except ModuleNotFoundError as e:
        if e.name != f"goldens.{case_name}":
            raise
    pytest.fail(f"golden case '{case_name}' of {MANIFEST} has no checker (tests/goldens/{case_name}.py): "
                "every listed case must be checked", pytrace=False)


def test_goldens_folder_present():
    if not MANIFEST.is_file():
        pytest.skip(f"no golden fixtures at {GOLDENS_DIR} (set UNIDET_GOLDENS_DIR); "
                    "a user checkout without ../shared has none")
    assert CASES, f"{MANIFEST} lists no cases"


@pytest.mark.parametrize("case_name", CASES)
def test_golden_case(case_name):
    checker = load_checker(case_name)
    g = Golden.open(GOLDENS_DIR, case_name)
    try:
        checker.check(g)
    finally:  # the measured max errors, shown with `pytest -rP` (and on failure)
        print(g.report())


def test_case_without_checker_fails(tmp_path):
    """A fixture folder whose manifest lists a case with no checker: the harness reports a failure."""
    if os.environ.get("UNIDET_GOLDENS_SELFTEST"):
        pytest.skip("inner run of the harness self-test")
    case = "zz_case_without_checker"
    assert not (ROOT / "tests" / "goldens" / f"{case}.py").exists()
    (tmp_path / "MANIFEST.json").write_text(json.dumps({"cases": {case: {"file": f"{case}.npz"}}}))
    env = dict(os.environ, UNIDET_GOLDENS_DIR=str(tmp_path), UNIDET_GOLDENS_SELFTEST="1")
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA",
                          f"{Path(__file__)}::test_golden_case"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    out = run.stdout + run.stderr
    assert run.returncode == 1, f"harness exit code {run.returncode}, expected 1 (a failed test):\n{out}"
    assert f"FAILED tests/test_goldens.py::test_golden_case[{case}]" in out, out
    assert f"'{case}'" in out and "has no checker" in out, out
    assert "1 failed" in out and "skipped" not in out, out
