"""Shared fixtures. Every test that needs the trained quick experiment is marked ``slow`` automatically,
so ``pytest -m "not slow"`` is the fast loop."""
import pytest


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
