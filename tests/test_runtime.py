"""The Jittor bootstrap: CPU path without CUDA, oneDNN link or loud fallback."""
import json
import os
import subprocess
import sys
import sysconfig
import warnings
from pathlib import Path

import pytest

from unidetector import runtime


def test_no_cuda_device_selects_cpu_path(monkeypatch, tmp_path):
    monkeypatch.setattr(runtime, "cuda_device_count", lambda: 0)
    env, state = {}, {}
    runtime.bootstrap(env=env, state=state, onednn_dir=tmp_path / "dnnl")
    assert env["nvcc_path"] == ""
    assert state["cuda_devices"] == 0
    assert "nvcc_path" in state["env_set"]


def test_cuda_device_keeps_nvcc_and_sets_offline_flags(monkeypatch, tmp_path):
    monkeypatch.setattr(runtime, "cuda_device_count", lambda: 1)
    env, state = {}, {}
    runtime.bootstrap(env=env, state=state, onednn_dir=tmp_path / "dnnl")
    assert "nvcc_path" not in env
    assert env["use_cutt"] == env["use_cutlass"] == env["use_nccl"] == "0"


def test_user_settings_win(monkeypatch, tmp_path):
    monkeypatch.setattr(runtime, "cuda_device_count", lambda: 0)
    env, state = {"nvcc_path": "/opt/cuda/bin/nvcc", "log_silent": "0"}, {}
    runtime.bootstrap(env=env, state=state, onednn_dir=tmp_path / "dnnl")
    assert env["nvcc_path"] == "/opt/cuda/bin/nvcc" and env["log_silent"] == "0"


@pytest.mark.parametrize("python, preset, expected", [((3, 11), None, None), ((3, 12), None, "0"),
                                                     ((3, 13), None, "0"), ((3, 12), "4", "4")])
def test_python_312_compiles_kernels_serially(monkeypatch, tmp_path, python, preset, expected):
    """Jittor 1.3.11's parallel op compiler segfaults on Python 3.12 (address 0x10 in a compile thread, e.g. on a
    fused ``logical_not(isnan(x))``); the bootstrap turns it off there unless the user set it."""
    monkeypatch.setattr(runtime, "cuda_device_count", lambda: 0)
    env, state = ({} if preset is None else {"use_parallel_op_compiler": preset}), {}
    runtime.bootstrap(env=env, state=state, onednn_dir=tmp_path / "dnnl", python=python)
    assert env.get("use_parallel_op_compiler") == expected
    assert ("use_parallel_op_compiler" in state.get("env_set", {})) == (preset is None and expected is not None)


def test_python_config_for_a_virtual_environment_without_one(tmp_path):
    """A venv of a pyenv / conda / self-built Python has no python3.X-config where Jittor looks: the base
    interpreter's is used, else (headers installed) a stand-in answering from sysconfig; one that Jittor finds
    itself is left to it; no headers: None (Jittor's own error names python3.X-dev)."""
    version = (3, 99)  # no such file in /usr/bin or /usr/local/bin
    venv, base, include, cache = tmp_path / "venv" / "bin", tmp_path / "base", tmp_path / "include", tmp_path / "c"
    venv.mkdir(parents=True)
    (base / "bin").mkdir(parents=True)
    include.mkdir()
    executable = str(venv / "python3.99")

    def config():
        return runtime.python_config(executable, str(base), version, include=str(include), cache=cache)

    assert config() is None  # no headers: nothing to answer with
    (include / "Python.h").write_text("")
    stand_in = config()
    assert stand_in is not None and stand_in.parent == cache / "python_config" and os.access(stand_in, os.X_OK)
    out = subprocess.run([str(stand_in), "--includes"], capture_output=True, text=True, check=True).stdout.split()
    assert out == [f"-I{include}"]
    suffix = subprocess.run([str(stand_in), "--extension-suffix"], capture_output=True, text=True).stdout.strip()
    assert suffix == sysconfig.get_config_var("EXT_SUFFIX")
    assert config() == stand_in  # the same file again
    (base / "bin" / "python3.99-config").write_text("#!/bin/sh\n")
    assert config() == base / "bin" / "python3.99-config"
    (venv / "python3.99-config").write_text("#!/bin/sh\n")
    assert config() is None


def test_canonical_interpreter_names_the_versioned_link_of_the_same_interpreter(tmp_path):
    real = tmp_path / "base" / "python-real"
    real.parent.mkdir()
    real.write_text("")
    venv = tmp_path / "venv" / "bin"
    venv.mkdir(parents=True)
    versioned = venv / f"python{sys.version_info.major}.{sys.version_info.minor}"
    versioned.symlink_to(real)
    (venv / "python3").symlink_to(versioned.name)
    (venv / "python").symlink_to("python3")
    assert runtime.canonical_interpreter(str(venv / "python")) == str(versioned)
    assert runtime.canonical_interpreter(str(venv / "python3")) == str(versioned)
    assert runtime.canonical_interpreter(str(versioned)) == str(versioned)
    # a different interpreter of that name is not ours to substitute
    other = tmp_path / "other" / "bin"
    other.mkdir(parents=True)
    (other / "python3").symlink_to(real)
    (other / versioned.name).write_text("")
    assert runtime.canonical_interpreter(str(other / "python3")) == str(other / "python3")


def test_every_launcher_gives_jittor_one_python_path():
    """Jittor keys its kernel cache by the interpreter path: ``python`` and ``python3`` of one venv must
    look the same to it, or each recompiles every kernel."""
    code = "import unidetector, jittor; print(jittor.flags.python_path)"
    bindir = Path(sys.executable).parent
    seen = set()
    for name in ("python", "python3"):
        if (bindir / name).exists():
            out = subprocess.run([str(bindir / name), "-c", code], capture_output=True, text=True, timeout=300)
            assert out.returncode == 0, out.stderr[-2000:]
            seen.add(out.stdout.strip().splitlines()[-1])
    assert len(seen) == 1, seen


@pytest.mark.skipif(not (runtime.DEBIAN_DNNL_INCLUDE / "dnnl.h").exists(),
                    reason="Debian libdnnl-dev is not installed (the README install provides it)")
def test_onednn_link_is_created(tmp_path):
    target = tmp_path / "mkl" / "dnnl_lnx_2.2.0_cpu_gomp"
    assert runtime.link_debian_onednn(target)
    assert (target / "include" / "dnnl.h").exists()
    assert (target / "lib" / "libmkldnn.so").resolve().name.startswith("libdnnl.so")
    assert runtime.link_debian_onednn(target)  # idempotent


def test_missing_onednn_falls_back_with_one_loud_warning(monkeypatch, tmp_path):
    monkeypatch.setattr(runtime, "DEBIAN_DNNL_INCLUDE", tmp_path / "nowhere")
    monkeypatch.setattr(runtime, "cuda_device_count", lambda: 0)
    env, state = {}, {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runtime.bootstrap(env=env, state=state, onednn_dir=tmp_path / "dnnl")
        runtime.bootstrap(env=env, state=state, onednn_dir=tmp_path / "dnnl")  # second call: no new warning
    assert env["use_mkl"] == "0" and state["onednn"] is False
    msgs = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(msgs) == 1 and "libdnnl-dev" in msgs[0] and "100x slower" in msgs[0]


def test_doctor_json_reports_onednn():
    out = subprocess.run([sys.executable, "-m", "unidetector.cli", "doctor", "--json"],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["jittor_version"].startswith("1.3")
    assert isinstance(report["onednn"], bool)
    from unidetector.ops import onednn

    assert (report["bfloat16"] is not None) == (report["onednn"] and onednn.bf16_supported())
    if (runtime.DEBIAN_DNNL_INCLUDE / "dnnl.h").exists():
        assert report["onednn"] is True, report
    else:
        assert report["onednn"] is False and any("libdnnl-dev" in f for f in report["fixes"])


def test_cuda_test_session_refuses_a_machine_without_cuda():
    """``UNIDET_TEST_CUDA=1`` (scripts/device_check.sh on a GPU machine): without a CUDA device the pytest session
    stops at once with exit code 2 and says why, so CPU results are never reported as CUDA ones."""
    import jittor as jt

    if jt.has_cuda:
        pytest.skip("a CUDA device is present: the session would run on it")
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_goldens.py"],
                         cwd=root, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "UNIDET_TEST_CUDA": "1"})
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-2000:]
    assert "UNIDET_TEST_CUDA is set, but Jittor found no CUDA device" in out.stdout + out.stderr
    assert " passed" not in out.stdout
