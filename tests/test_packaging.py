"""A non-editable install runs the main job: build the wheel, install it into a fresh virtual environment
(dependencies taken from this one), and run ``unidet experiment --plan warm`` outside the checkout."""
from __future__ import annotations

import json
import shutil
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


def test_install_script_refuses_python_313_with_the_fix(tmp_path):
    """Jittor 1.3.11 pins numpy < 2, which has no wheels for Python 3.13: scripts/install.sh says so (exit 2) before
    creating the virtual environment, instead of pip failing on a numpy source build. The interpreter is this one
    with ``sys.version_info`` set to 3.13 before each ``-c`` snippet; the script runs in an empty copy of the
    checkout (no ``.venv``) and stops before its Debian checks (nothing is installed)."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "install.sh", tmp_path / "scripts" / "install.sh")
    fake = tmp_path / "python3.13"
    fake.write_text(f"""#!/bin/sh
if [ "$1" = "-c" ]; then exec {sys.executable} -c "import sys; sys.version_info = (3, 13, 0, 'final', 0)
$2"; fi
exec {sys.executable} "$@"
""")
    fake.chmod(0o755)
    out = subprocess.run(["bash", str(tmp_path / "scripts" / "install.sh")], capture_output=True, text=True,
                         env={**os.environ, "PYTHON": str(fake)}, timeout=120)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "is Python 3.13; Jittor 1.3.11 needs 3.9-3.12" in out.stderr
    assert "PYTHON=python3.12 make demo" in out.stderr
    assert not (tmp_path / ".venv").exists()
