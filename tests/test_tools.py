"""The seed-compatible wrappers in tools/ translate their flags into `unidet` commands."""
import importlib
import subprocess
import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parent.parent / "tools"
sys.path.insert(0, str(TOOLS))


def tr(name, argv):
    return importlib.import_module(name).translate(argv)


def test_train_wrappers():
    argv = ["--config", "c.py", "--work-dir", "w", "--epochs", "3", "--batch-size", "4", "--accumulate-steps", "2",
            "--resume", "--seed", "7"]
    expect = ["train", "c.py", "--work-dir", "w", "--resume", "--accumulate-steps", "2", "--seed", "7",
              "--cfg-options", "runner.max_epochs=3", "data.samples_per_gpu=4"]
    assert tr("jittor_train", argv) == expect
    assert tr("jittor_train", ["--config", "c.py", "--resume", "x.pkl"]) == ["train", "c.py", "--resume", "x.pkl"]


def test_test_and_passthrough_wrappers():
    assert tr("jittor_test", ["--config", "c.py", "--checkpoint", "k.pkl", "--out", "r.pkl", "--eval", "bbox"]) == \
        ["test", "c.py", "k.pkl", "--out", "r.pkl", "--eval", "bbox"]
    assert tr("generate_proposals", ["--config", "c.py", "--checkpoint", "k.pkl", "--ann", "a.json", "--img-dir",
                                     "d", "--out", "rp.pkl"]) == \
        [["proposals", "c.py", "k.pkl", "--ann", "a.json", "--img-dir", "d", "--out", "rp.pkl"]]
    assert tr("generate_clip_embeddings", ["--classes", "a,b", "--encoder", "synthetic", "--out", "e.npy"]) == \
        ["embed", "--classes", "a,b", "--encoder", "synthetic", "--out", "e.npy"]
    assert tr("test_mixed_mode", ["--json"]) == ["doctor", "--json"]


def test_wrappers_show_help():
    for name in ("jittor_train", "mixed_mode_train", "jittor_test", "generate_proposals"):
        res = subprocess.run([sys.executable, str(TOOLS / f"{name}.py"), "--help"], capture_output=True, text=True,
                             timeout=60)
        assert res.returncode == 0 and "--config" in res.stdout, (name, res.stderr)


def test_experiment_script_names_missing_files(tmp_path):
    script = TOOLS.parent / "experiments" / "run_coco_objects365_lvis_experiment.sh"
    res = subprocess.run(["bash", str(script)], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert res.returncode == 2 and "DATA_ROOT" in res.stderr
    (tmp_path / "coco" / "annotations").mkdir(parents=True)
    (tmp_path / "coco" / "annotations" / "instances_valminusminival2014.json").write_text("{}")
    res = subprocess.run(["bash", str(script)], capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "DATA_ROOT": str(tmp_path)})
    assert res.returncode == 1
    assert "instances_valminusminival2014.json" not in res.stderr.split("missing:")[1].split("objects365")[0]
    for name in ("coco/images/val2014", "zhiyuan_objv2_train.1@3.5.json", "lvis_v0.5_val.json",
                 "regionclip_pretrained-cc_rn50_mmdet.pth", "lvis_v0.5_clip_a+cname_rn50_manyprompt.npy"):
        assert name in res.stderr, name


CONFIGS = TOOLS.parent / "configs"


def test_generate_proposals_datasets_from_the_config():
    """The seed's `--output-dir DIR --datasets ...`: each dataset's files from the config that reads its proposals,
    the proposals written under the file name that config reads, with that config's dataset type."""
    cfg1 = str(CONFIGS / "mixed_mode_coco_objects365_1ststage_rpn.py")
    cmds = tr("generate_proposals", ["--config", cfg1, "--checkpoint", "k.pkl", "--output-dir", "out",
                                     "--datasets", "lvis", "coco", "lvis", "--no-progress"])
    assert cmds == [
        ["proposals", cfg1, "k.pkl", "--ann", "data/lvis_v0.5/annotations/lvis_v0.5_val.json", "--img-dir",
         "data/lvis_v0.5/val2017/", "--out", "out/rp_val_ow.pkl", "--no-progress",
         "--cfg-options", "data.test.type=LVISV05Dataset"],
        ["proposals", cfg1, "k.pkl", "--ann", "data/coco/annotations/instances_valminusminival2014.json",
         "--img-dir", "data/coco/images/val2014", "--out", "out/rp_train_0.pkl", "--no-progress",
         "--cfg-options", "data.test.type=CocoDataset"]]
    # no --datasets: every dataset of the config; --cfg-options reach both the config and unidet
    cmds = tr("generate_proposals", ["--config", cfg1, "--checkpoint", "k.pkl", "--output-dir", "/o",
                                     "--cfg-options", "data.workers_per_gpu=0"])
    assert [c[c.index("--out") + 1] for c in cmds] == ["/o/rp_train_0.pkl", "/o/rp_train_1.pkl", "/o/rp_val_ow.pkl"]
    assert all(c[-1] == "data.workers_per_gpu=0" for c in cmds) and "Objects365Dataset" in cmds[1][-2]


def test_generate_proposals_clear_errors(tmp_path, capsys):
    import pytest

    from _wrap import ToolError

    cfg1 = str(CONFIGS / "mixed_mode_coco_objects365_1ststage_rpn.py")
    with pytest.raises(ToolError, match=r"unknown dataset name\(s\) 'oid' .*known in its proposal_datasets: coco, "
                                        r"objects365, lvis"):
        tr("generate_proposals", ["--config", cfg1, "--checkpoint", "k", "--output-dir", "o", "--datasets", "oid"])
    with pytest.raises(ToolError, match="stage1_cln.py: no proposal_datasets"):
        tr("generate_proposals", ["--config", str(CONFIGS / "synthetic" / "stage1_cln.py"), "--checkpoint", "k",
                                  "--output-dir", "o"])
    bad = tmp_path / "bad.py"
    bad.write_text("_base_ = ['%s']\nproposal_datasets = dict(x=dict(config='%s', data='train.datasets.5'), "
                   "y=dict(ann_file='a.json'))\n" % (cfg1, CONFIGS / "mixed_mode_coco_objects365_2ndstage_roi.py"))
    with pytest.raises(ToolError, match=r"proposal_datasets.x: .*2ndstage_roi.py has no data.train.datasets.5"):
        tr("generate_proposals", ["--config", str(bad), "--checkpoint", "k", "--output-dir", "o", "--datasets", "x"])
    with pytest.raises(ToolError, match=r"proposal_datasets.y: no img_prefix, proposal_file"):
        tr("generate_proposals", ["--config", str(bad), "--checkpoint", "k", "--output-dir", "o", "--datasets", "y"])
    for argv, words in ((["--datasets", "coco"], "--datasets needs --output-dir"),
                        (["--output-dir", "o", "--ann", "a.json"], "either --output-dir/--datasets or --ann")):
        with pytest.raises(SystemExit):
            tr("generate_proposals", ["--config", cfg1, "--checkpoint", "k", *argv])
        assert words in capsys.readouterr().err
    # as a command: one line, exit 2, nothing run
    res = subprocess.run([sys.executable, str(TOOLS / "generate_proposals.py"), "--config", str(tmp_path / "no.py"),
                          "--checkpoint", "k", "--output-dir", str(tmp_path / "o")], capture_output=True, text=True)
    assert res.returncode == 2 and res.stderr.startswith("generate_proposals.py: error: ") and "no.py" in res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "o").exists()


def test_jittor_test_calibration_step(tmp_path, capsys):
    """The seed's LVIS inference: a calibrated config whose prior does not exist yet runs raw with --out (said on
    the first line), and is a clear error without it."""
    import pytest

    from _wrap import ToolError
    from jittor_test import RAW_OPTION, calibration_step

    cfg = str(CONFIGS / "lvis_inference_with_calibration.py")
    prior = tmp_path / "raw.pkl"
    opts = [f"model.roi_head.bbox_head.resultfile={prior}"]
    assert calibration_step(cfg, opts, str(tmp_path / "x.pkl")) == [RAW_OPTION]
    assert "does not exist yet" in capsys.readouterr().out
    with pytest.raises(ToolError, match=f"resultfile={prior} does not exist; write the raw results first: .*--out "
                                        f"{prior}"):
        calibration_step(cfg, opts, None)
    prior.write_bytes(b"")
    assert calibration_step(cfg, opts, None) == []                      # the calibrated step
    assert calibration_step(cfg, opts, str(tmp_path / "x.pkl")) == []   # calibrated, results to another file
    assert calibration_step(cfg, opts, str(prior)) == [RAW_OPTION]      # --out is the prior: the raw step again
    assert "is --out" in capsys.readouterr().out
    assert calibration_step(cfg, opts + [RAW_OPTION], None) == []        # not calibrating: nothing to say
    assert calibration_step(str(CONFIGS / "synthetic" / "stage1_cln.py"), [], None) == []
