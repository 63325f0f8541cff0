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
        ["proposals", "c.py", "k.pkl", "--ann", "a.json", "--img-dir", "d", "--out", "rp.pkl"]
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
