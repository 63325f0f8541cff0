"""Shared fixtures. Every test that needs the trained quick experiment is marked ``slow`` automatically,
so ``pytest -m "not slow"`` is the fast loop.

``UNIDET_TEST_CUDA=1`` runs the session with ``jt.flags.use_cuda = 1`` (a machine with an NVIDIA GPU, e.g.
``UNIDET_TEST_CUDA=1 pytest tests/test_goldens.py``, what ``scripts/device_check.sh`` does); without a CUDA
device the session stops before collecting anything, so CPU results are never reported as CUDA ones."""
import os

import pytest


def pytest_configure(config):
    if os.environ.get("UNIDET_TEST_CUDA", "0") in ("", "0"):
        return
    import unidetector  # noqa: F401  (runtime bootstrap before jittor)
    import jittor as jt

    if not jt.has_cuda:
        pytest.exit("UNIDET_TEST_CUDA is set, but Jittor found no CUDA device (jt.has_cuda is 0): nothing was tested",
                    returncode=2)
    jt.flags.use_cuda = 1


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "quick_experiment" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def quick_experiment(tmp_path_factory):
    """``unidet experiment --quick`` once per test session: ``(work_dir, report)``.

    The work dir holds the synthetic world (``data/synthetic``), the stage-1 and stage-2 checkpoints
    (``work_dirs/stage1_cln/latest.pkl``, ``work_dirs/stage2_partitioned/latest.pkl``), results and
    the report.
    """
    from unidetector.experiment import Experiment

    work_dir = tmp_path_factory.mktemp("experiment")
    report = Experiment(work_dir, quick=True, seed=0, progress=False).run()
    return work_dir, report
