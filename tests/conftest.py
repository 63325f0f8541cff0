"""Shared fixtures."""
import pytest


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
