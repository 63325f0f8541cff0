"""Bad input gets one clear line and exit 2: the CLI's error boundary, configs, checkpoints, training data.

Every test runs a real ``unidet`` command (``unidetector.cli.main``) on a tiny model (the engine
tests' ``EngineTinyDet``) and checks the exit code, that the message names the file (or key,
iteration) at fault, and that no traceback is printed.
"""
from __future__ import annotations

import errno
import pickle
from pathlib import Path

import numpy as np
import pytest

import test_engine  # noqa: F401  (registers EngineTinyDet / EngineTinyDataset)
from unidetector.cli import main

TINY = (
    "model = dict(type='EngineTinyDet')\n"
    "data = dict(samples_per_gpu=4, workers_per_gpu=0, train=dict(type='EngineTinyDataset', n=8),\n"
    "            test=dict(type='EngineTinyDataset', n=4))\n"
    "optimizer = dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=1e-4)\n"
    "lr_config = dict(policy='step', step=[1])\n"
    "runner = dict(type='EpochBasedRunner', max_epochs=1)\n"
    "log_config = dict(interval=1, hooks=[dict(type='TextLoggerHook')])\n"
    "seed = 0\n")


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def run_cli(capsys, *argv) -> tuple:
    """``(exit code, stdout, stderr)`` of ``unidet ARGV``; argparse usage errors count as exit codes too."""
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc, err, command, *words):
    assert rc == 2, err
    assert f"unidet {command}: error:" in err, err
    assert "Traceback" not in err, err
    for w in words:
        assert str(w) in err, (w, err)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny config and a checkpoint trained with it (one epoch)."""
    tmp = tmp_path_factory.mktemp("tiny")
    cfg = write(tmp / "tiny.py", TINY)
    wd = tmp / "wd"
    assert main(["train", str(cfg), "--work-dir", str(wd), "--no-progress", "--no-validate"]) == 0
    return cfg, wd / "latest.pkl"


# ----------------------------------------------------------------------------- the boundary
def test_missing_config_one_line_and_debug_shows_traceback(tmp_path, capsys, monkeypatch):
    rc, _, err = run_cli(capsys, "train", tmp_path / "nope.py")
    assert_one_line_error(rc, err, "train", "nope.py")
    with pytest.raises(Exception, match="nope.py"):
        main(["train", str(tmp_path / "nope.py"), "--debug"])
    monkeypatch.setenv("UNIDET_DEBUG", "1")
    with pytest.raises(Exception, match="nope.py"):
        main(["test", str(tmp_path / "nope.py"), "ckpt.pkl", "--out", "x.pkl"])


def test_config_syntax_error_names_file_and_line(tmp_path, capsys):
    cfg = write(tmp_path / "broken.py", "model = dict(\n    type='EngineTinyDet'\nx = 3\n")
    rc, _, err = run_cli(capsys, "train", cfg)
    assert_one_line_error(rc, err, "train", "broken.py:", "syntax error")
    assert "<unknown>" not in err
    base = write(tmp_path / "base_broken.py", "a = [1, 2\n")
    child = write(tmp_path / "child.py", "_base_ = ['base_broken.py']\nb = 1\n")
    rc, _, err = run_cli(capsys, "train", child)
    assert_one_line_error(rc, err, "train", str(base) + ":1")


def test_config_code_error_names_file(tmp_path, capsys):
    cfg = write(tmp_path / "raises.py", "x = undefined_name + 1\n")
    rc, _, err = run_cli(capsys, "test", cfg, "c.pkl", "--out", tmp_path / "r.pkl")
    assert_one_line_error(rc, err, "test", "raises.py", "undefined_name")


def test_cfg_options_without_equals_is_a_usage_error(tmp_path, capsys):
    cfg = write(tmp_path / "tiny.py", TINY)
    rc, _, err = run_cli(capsys, "train", cfg, "--cfg-options", "runner.max_epochs")
    assert rc == 2 and "runner.max_epochs" in err and "'='" in err and "Traceback" not in err


def test_near_miss_top_level_key_did_you_mean(tmp_path, capsys):
    cfg = write(tmp_path / "typo.py", TINY.replace("lr_config", "lr_confg"))
    rc, _, err = run_cli(capsys, "train", cfg, "--work-dir", tmp_path / "wd", "--no-progress")
    assert_one_line_error(rc, err, "train", "typo.py", "'lr_confg'", "did you mean 'lr_config'")
    assert not (tmp_path / "wd" / "latest.pkl").exists()


def test_helper_variables_of_mmdet_configs_stay_allowed():
    from unidetector.config import Config, check_top_level_keys
    from unidetector.engine.runner import READ_TOP

    cfg = Config(dict(model=1, img_norm_cfg=1, train_pipeline=[], test_pipeline=[], data_root="x", dataset_type="C",
                      classes=("a",), lr_config=1, evaluation=1))
    check_top_level_keys(cfg, READ_TOP)  # nothing raised
    with pytest.raises(Exception, match="did you mean 'evaluation'"):
        check_top_level_keys(Config(dict(model=1, evalution=dict(interval=1))), READ_TOP)


# ----------------------------------------------------------------------------- checkpoints
def test_truncated_checkpoint_under_test_and_resume(trained, tmp_path, capsys):
    cfg, ckpt = trained
    bad = tmp_path / "truncated.pkl"
    bad.write_bytes(Path(ckpt).read_bytes()[:200])
    rc, _, err = run_cli(capsys, "test", cfg, bad, "--out", tmp_path / "r.pkl", "--no-progress")
    assert_one_line_error(rc, err, "test", "truncated.pkl", "truncated")
    assert not (tmp_path / "r.pkl").exists()
    rc, _, err = run_cli(capsys, "train", cfg, "--work-dir", tmp_path / "wd", "--resume", bad, "--no-progress")
    assert_one_line_error(rc, err, "train", "truncated.pkl")


def _save(path, state_dict, meta=None):
    with open(path, "wb") as f:
        pickle.dump({"state_dict": state_dict, "meta": meta or {}}, f)
    return path


def test_never_runs_on_weights_that_did_not_load(trained, tmp_path, capsys):
    cfg, ckpt = trained
    sd = pickle.load(open(ckpt, "rb"))["state_dict"]
    out = tmp_path / "r.pkl"
    cases = {
        "empty": ({}, "empty"),
        "prefixed": ({"model." + k: v for k, v in sd.items()}, "'model.' prefix"),
        "no_fc": ({k: v for k, v in sd.items() if not k.startswith("fc.")}, "2 model keys missing", "missing: 2 [fc.weight, fc.bias]"),
        "extra": ({**sd, "head.extra.weight": np.zeros(3, np.float32)}, "1 checkpoint keys not in the model", "head.extra.weight"),
    }
    for name, (state, *words) in cases.items():
        path = _save(tmp_path / f"{name}.pkl", state)
        rc, _, err = run_cli(capsys, "test", cfg, path, "--out", out, "--no-progress")
        assert_one_line_error(rc, err, "test", f"{name}.pkl", *words)
        assert not out.exists(), name
    # load_from in training: the same rule, before any iteration
    rc, _, err = run_cli(capsys, "train", cfg, "--work-dir", tmp_path / "wd", "--no-progress",
                         "--cfg-options", f"load_from={tmp_path / 'no_fc.pkl'}")
    assert_one_line_error(rc, err, "train", "no_fc.pkl", "allow_partial_load=True")
    assert not (tmp_path / "wd" / "latest.pkl").exists()


def test_partial_loading_is_an_explicit_reported_choice(trained, tmp_path, capsys):
    cfg, ckpt = trained
    sd = pickle.load(open(ckpt, "rb"))["state_dict"]
    path = _save(tmp_path / "no_fc.pkl", {k: v for k, v in sd.items() if not k.startswith("fc.")})
    rc, out, err = run_cli(capsys, "test", cfg, path, "--out", tmp_path / "r.pkl", "--no-progress",
                           "--cfg-options", "allow_partial_load=True")
    assert rc == 0, err
    assert "partial load" in out and "missing: 2" in out
    # nothing at all matching stays an error even when partial loading is allowed
    empty = _save(tmp_path / "other.pkl", {"something.else": np.zeros(2, np.float32)})
    rc, _, err = run_cli(capsys, "test", cfg, empty, "--out", tmp_path / "r2.pkl", "--cfg-options",
                         "allow_partial_load=True")
    assert_one_line_error(rc, err, "test", "other.pkl", "refusing to run on random weights")


def test_stage1_checkpoint_for_a_stage2_config_gets_detects_message(tmp_path):
    from test_engine import TinyDet

    from unidetector.convert.checkpoints import checkpoint_kind_message
    from unidetector.engine.runner import WeightsLoadError, load_weights

    stage1 = {"rpn_head.rpn_conv.weight": np.zeros((2, 2, 3, 3), np.float32)}
    path = _save(tmp_path / "s1.pkl", stage1)
    stage2_cfg = dict(type="FastRCNN", roi_head=dict(bbox_head=dict(type="BBoxHeadCLIPPartitioned")))
    with pytest.raises(WeightsLoadError) as e:
        load_weights(TinyDet(), path, model_cfg=stage2_cfg, what="checkpoint")
    assert str(e.value) == f"checkpoint {checkpoint_kind_message(path, stage1, 2)}"
    assert "is a stage-1 (proposal network) checkpoint" in str(e.value)


def test_full_disk_names_the_folder_and_the_last_good_checkpoint(tmp_path, monkeypatch):
    from test_engine import make_trainer

    from unidetector.engine import checkpoint as ckpt_io
    from unidetector.engine.trainer import CheckpointSaveError

    trainer = make_trainer(tmp_path / "wd", max_epochs=1, n=8)
    trainer.train()
    good = (tmp_path / "wd" / "latest.pkl").read_bytes()
    real_dump = pickle.dump

    def full_disk(obj, f, *a, **k):
        real_dump(obj, f, *a, **k)
        raise OSError(errno.ENOSPC, "No space left on device", str(f.name))

    monkeypatch.setattr(ckpt_io.pickle, "dump", full_disk)
    trainer.max_epochs = 2
    with pytest.raises(CheckpointSaveError) as e:
        trainer.train()
    msg = str(e.value)
    assert "No space left on device" in msg and str(tmp_path / "wd") in msg and "epoch_1.pkl" in msg
    monkeypatch.undo()
    assert (tmp_path / "wd" / "latest.pkl").read_bytes() == good
    assert not list((tmp_path / "wd").glob(".*.tmp-*"))


def test_orphan_temp_files_of_a_killed_save_are_removed(tmp_path, capsys):
    from test_engine import make_trainer

    wd = tmp_path / "wd"
    wd.mkdir()
    orphan = wd / ".latest.pkl.tmp-999999999"   # no such process
    orphan.write_bytes(b"partial")
    make_trainer(wd, max_epochs=1, n=8)
    assert not orphan.exists()
    assert "incomplete checkpoint" in capsys.readouterr().out


def test_resume_with_a_changed_lr_says_which_value_wins(trained, tmp_path, capsys):
    cfg, ckpt = trained
    wd = Path(ckpt).parent
    rc, out, err = run_cli(capsys, "train", cfg, "--work-dir", wd, "--resume", "--no-progress", "--no-validate",
                           "--cfg-options", "runner.max_epochs=2", "optimizer.lr=0.5")
    assert rc == 0, err
    assert "0.5" in out and "0.02" in out and "checkpoint's value wins" in out


# ----------------------------------------------------------------------------- training data
def test_empty_training_set_and_zero_iterations_are_errors(tmp_path, capsys):
    cfg = write(tmp_path / "empty.py", TINY.replace("n=8", "n=0"))
    rc, _, err = run_cli(capsys, "train", cfg, "--work-dir", tmp_path / "wd", "--no-progress")
    assert_one_line_error(rc, err, "train", "empty.py", "no usable image")
    cfg = write(tmp_path / "zero.py", TINY.replace("max_epochs=1", "max_epochs=0"))
    rc, _, err = run_cli(capsys, "train", cfg, "--work-dir", tmp_path / "wd2", "--no-progress")
    assert_one_line_error(rc, err, "train", "zero.py", "0 iterations")
    assert not (tmp_path / "wd2" / "latest.pkl").exists()


# ----------------------------------------------------------------------------- other commands
def test_calibrate_bad_inputs_name_the_file(tmp_path, capsys):
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(b"not a pickle at all")
    rc, _, err = run_cli(capsys, "calibrate", junk, "--out", tmp_path / "p.npy")
    assert_one_line_error(rc, err, "calibrate", "junk.pkl")
    props = tmp_path / "props.pkl"
    props.write_bytes(pickle.dumps([np.zeros((3, 5), np.float32)]))
    rc, _, err = run_cli(capsys, "calibrate", props, "--out", tmp_path / "p.npy")
    assert_one_line_error(rc, err, "calibrate", "props.pkl", "not proposals")
    bad_json = write(tmp_path / "cats.json", "{not json")
    rc, _, err = run_cli(capsys, "calibrate", "--from-cat-info", bad_json, "--out", tmp_path / "p.npy")
    assert_one_line_error(rc, err, "calibrate", "cats.json")
    rc, _, err = run_cli(capsys, "calibrate", "--out", tmp_path / "p.npy")
    assert rc == 2 and "RAW_RESULTS" in err


def test_data_commands_name_the_file(tmp_path, capsys):
    bad = write(tmp_path / "ann.json", "[1, 2")
    rc, _, err = run_cli(capsys, "data", "catinfo", "--ann", bad)
    assert_one_line_error(rc, err, "data", "ann.json", "not valid JSON")
    rc, _, err = run_cli(capsys, "data", "subset", "--ann", tmp_path / "missing.json", "--percent", 10)
    assert_one_line_error(rc, err, "data", "missing.json")


def test_data_synth_tiny(tmp_path, capsys):
    rc, _, err = run_cli(capsys, "data", "synth", "--out", tmp_path / "w", "--size", "tiny")
    assert rc == 0, err
    assert list((tmp_path / "w").glob("*.json"))


def test_detect_exemplar_arguments_are_checked_first(tmp_path, capsys):
    img = tmp_path / "a.png"
    img.write_bytes(b"")   # never read: the arguments fail first
    ckpt = tmp_path / "never_read.pkl"
    for spec, words in (("no-equals", "expected NAME=IMAGE"), ("x=missing.png", "image not found: missing.png"),
                        (f"x={img}:1,2,3,oops", "is not four numbers")):
        rc, _, err = run_cli(capsys, "detect", img, "--checkpoint", ckpt, "--exemplar", spec)
        assert_one_line_error(rc, err, "detect", words)
    rc, _, err = run_cli(capsys, "detect", img, "--checkpoint", ckpt)
    assert_one_line_error(rc, err, "detect", "--exemplar NAME=IMAGE")


def test_a_module_constructors_own_check_names_the_config_file_and_key(tmp_path, capsys):
    """A module's constructor refuses a value (here CLIPResLayer: frozen=True with batch statistics): one line with
    the config file and the full key path, exit 2, nothing written; before any data is read."""
    cfg = Path(__file__).resolve().parents[1] / "configs" / "synthetic" / "stage2_partitioned.py"
    rc, _, err = run_cli(capsys, "train", cfg, "--cfg-options", "model.roi_head.shared_head.norm_eval=False",
                         "--work-dir", tmp_path / "wd", "--no-progress")
    assert_one_line_error(rc, err, "train", f"{cfg}: model.roi_head.shared_head: CLIPResLayer: frozen=True needs "
                                             "norm_eval=True")
    assert not (tmp_path / "wd").exists()
