"""A non-editable install runs the main job: build the wheel, install it into a fresh virtual environment
(dependencies taken from this one), and run ``unidet experiment --plan warm`` outside the checkout."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd, **kw):
    result = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    assert result.returncode == 0, f"{cmd}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.mark.slow
def test_wheel_installs_and_runs_the_experiment(tmp_path):
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp_path / "dist",
          ROOT])
    wheel = next((tmp_path / "dist").glob("jittor_unidetector-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for shipped in ("unidetector/configs/synthetic/stage1_cln.py", "unidetector/configs/_base_/clip_fast_rcnn_r50_c4.py",
                    "unidetector/text/bpe_simple_vocab_16e6.txt.gz"):
        assert shipped in names

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv])
    py = venv / "bin" / "python"
    site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    # dependencies (jittor, mmengine, ...) from this environment; a .pth entry is not a site dir, so this
    # environment's editable install of the checkout stays invisible there
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel])

    work = tmp_path / "run"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": ""}
    where = _run([py, "-c", "import unidetector; print(unidetector.__file__)"], cwd=work, env=env).stdout.strip()
    assert Path(where).is_relative_to(site), where
    _run([venv / "bin" / "unidet", "experiment", "--plan", "warm", "--work-dir", work / "exp", "--no-progress"],
         cwd=work, env=env, timeout=1500)
    report = json.loads((work / "exp" / "report.json").read_text())
    assert report["mode"] == "warm" and "lvis" in report and (work / "exp" / "report.md").is_file()
    assert not (work / "data").exists() and not (work / "work_dirs").exists()   # nothing outside its work dir
