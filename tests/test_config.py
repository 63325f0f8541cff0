"""Config loading (``_base_``, ``--cfg-options``) and build errors that say where."""
import textwrap
from pathlib import Path

import pytest

from unidetector.config import DictAction, load_config
from unidetector.registry import ConfigError, Registry, build

TOYS = Registry("toy")


@TOYS.register_module()
class Box:
    def __init__(self, size, colour="red"):
        self.size, self.colour = size, colour


@TOYS.register_module()
class Stack:
    def __init__(self, **parts):
        self.parts = parts


def write(path, text):
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def cfg_files(tmp_path):
    write(tmp_path / "base.py", """
        model = dict(type='Box', size=3, colour='red')
        optimizer = dict(type='SGD', lr=0.02, momentum=0.9)
        data = dict(samples_per_gpu=2)
    """)
    child = write(tmp_path / "child.py", """
        _base_ = './base.py'
        model = dict(colour='blue')
        optimizer = dict(lr=0.002)
    """)
    return child


def test_base_inheritance_merges_dicts(cfg_files):
    cfg = load_config(cfg_files)
    assert cfg.model == dict(type="Box", size=3, colour="blue")
    assert cfg.optimizer.lr == 0.002 and cfg.optimizer.momentum == 0.9
    assert cfg.data.samples_per_gpu == 2


def test_cfg_options_override(cfg_files):
    import argparse
    parser = argparse.ArgumentParser()
    parser.add_argument("--cfg-options", nargs="+", action=DictAction)
    args = parser.parse_args(["--cfg-options", "model.size=7", "optimizer.lr=0.1", "data.samples_per_gpu=4"])
    cfg = load_config(cfg_files, args.cfg_options)
    assert cfg.model.size == 7 and cfg.optimizer.lr == 0.1 and cfg.data.samples_per_gpu == 4
    assert build(cfg.model, TOYS).size == 7


def test_missing_config_file_is_named(tmp_path):
    from unidetector.config import ConfigFileError

    with pytest.raises(ConfigFileError, match="nope.py"):
        load_config(tmp_path / "nope.py")


def test_unknown_type_names_file_key_path_and_alternatives(tmp_path):
    cfg = load_config(write(tmp_path / "bad.py", "model = dict(head=dict(type='Bx', size=1))\n"))
    with pytest.raises(ConfigError) as e:
        build(cfg.model.head, TOYS, key_path="model.head", filename=cfg.filename)
    msg = str(e.value)
    assert "bad.py" in msg and "model.head.type" in msg and "'Bx'" in msg
    assert "Did you mean Box" in msg and "Registered: Box, Stack" in msg


def test_unexpected_keyword_names_key_and_accepted_args(tmp_path):
    cfg = load_config(write(tmp_path / "bad.py", "model = dict(type='Box', size=1, colur='blue')\n"))
    with pytest.raises(ConfigError) as e:
        build(cfg.model, TOYS, key_path="model", filename=cfg.filename)
    msg = str(e.value)
    assert "bad.py: model" in msg and "'colur'" in msg and "accepts: colour, size" in msg


def test_build_passes_defaults_and_var_kwargs():
    assert build(dict(type="Box"), TOYS, size=2).size == 2
    assert build(dict(type="Box", size=5), TOYS, size=2).size == 5  # config wins
    assert build(dict(type="Stack", a=1, b=2), TOYS).parts == {"a": 1, "b": 2}


def test_not_a_type_dict_is_an_error():
    with pytest.raises(ConfigError, match="expected a dict with a 'type' key"):
        build(dict(size=1), TOYS, key_path="model")


def test_resolve_paths_makes_relative_paths_relative_to_a_folder(tmp_path):
    from unidetector.config import Config, resolve_paths

    cfg = Config(dict(data=dict(train=[dict(ann_file="d/a.json", img_prefix="d/images/", proposal_file="/abs/p.pkl")],
                                test=dict(ann_file="d/t.json", pipeline=[dict(type="Resize", img_scale="x.json")])),
                      model=dict(roi_head=dict(bbox_head=dict(zeroshot_path=["d/e0.npy", "d/e1.npy"]))),
                      work_dir="w", seed=0))
    resolve_paths(cfg, tmp_path)
    train = cfg.data.train[0]
    assert train.ann_file == str(tmp_path / "d/a.json") and train.img_prefix == str(tmp_path / "d/images") + "/"
    assert train.proposal_file == "/abs/p.pkl"                                   # absolute: kept
    assert cfg.data.test.ann_file == str(tmp_path / "d/t.json") and cfg.work_dir == str(tmp_path / "w")
    assert list(cfg.model.roi_head.bbox_head.zeroshot_path) == [str(tmp_path / "d/e0.npy"), str(tmp_path / "d/e1.npy")]
    assert cfg.data.test.pipeline[0].img_scale == "x.json" and cfg.seed == 0     # not a path key: untouched


def test_top_level_train_cfg_reaches_the_model_and_its_errors_say_where(tmp_path):
    """mmdet 2.x's old top-level ``train_cfg`` / ``test_cfg`` are handed to the detector (they were ignored: the
    model trained with its _base_'s settings); given in both places is an error; a mistake inside names the
    top-level key path, and a missing entry is named instead of failing with a bare KeyError."""
    from unidetector.engine.runner import build_model, check_config

    stage1 = Path(__file__).resolve().parents[1] / "configs" / "synthetic" / "stage1_cln.py"
    train_cfg = load_config(stage1).model.train_cfg.to_dict()
    train_cfg["rcnn"]["sampler"]["num"] = 7
    head = f"_base_ = [{str(stage1)!r}]\n"
    cfg = load_config(write(tmp_path / "top.py", head + f"model = dict(train_cfg=None)\ntrain_cfg = {train_cfg!r}\n"))
    check_config(cfg)
    assert build_model(cfg).roi_head.bbox_sampler.num == 7
    both = load_config(write(tmp_path / "both.py", head + f"train_cfg = {train_cfg!r}\n"))
    with pytest.raises(ConfigError, match=r"both\.py: train_cfg is given both at the top level and in model"):
        build_model(both)
    train_cfg["rcnn"]["sampler"]["type"] = "RandomSamplr"
    del train_cfg["rpn"]["objectness_assigner"]
    bad = load_config(write(tmp_path / "bad.py", head + f"model = dict(train_cfg=None)\ntrain_cfg = {train_cfg!r}\n"))
    with pytest.raises(ConfigError, match=r"bad\.py: train_cfg\.rpn\.objectness_assigner: expected a dict"):
        build_model(bad)
    del train_cfg["rpn"]
    train_cfg["rpn"] = load_config(stage1).model.train_cfg.rpn.to_dict()
    bad = load_config(write(tmp_path / "bad2.py", head + f"model = dict(train_cfg=None)\ntrain_cfg = {train_cfg!r}\n"))
    with pytest.raises(ConfigError, match=r"bad2\.py: train_cfg\.rcnn\.sampler\.type: 'RandomSamplr'.*RandomSampler"):
        build_model(bad)
