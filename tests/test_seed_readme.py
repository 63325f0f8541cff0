"""The original (seed) README, command by command: every command line of ``../shared/SEED_README.md`` runs as
written once its data exist.

The data of the seed's commands (COCO, Objects365, LVIS v0.5, CLIP embeddings) cannot exist here, so a tiny
synthetic world stands in for them: a stand-in project folder holds the world's files at the paths the real
configs name (``data/coco/...``, ``clip_embeddings/...``), ``tools`` (a link to the repository's), and tiny
versions of the seed's configs under the same names, made from the real configs by swapping in the synthetic
models and image scales (data paths, proposal files, vocabularies and calibration settings are the real
configs'). The seed's proposal folder ``/root/autodl-tmp/rpl`` becomes a temporary folder. The commands then
run in that folder exactly as the README writes them (``python`` = this interpreter).

:data:`SEED_COMMANDS` lists every command line of the README and how it is checked; when the README is
present, :func:`test_every_readme_command_is_listed` fails on a command line this list does not cover.
"""
import copy
import inspect
import json
import os
import pickle
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from unidetector.config import load_config

ROOT = Path(__file__).resolve().parents[1]
SEED_README = Path(os.environ.get("UNIDET_SEED_README", ROOT.parent / "shared" / "SEED_README.md"))
RPL = "/root/autodl-tmp/rpl"  # the seed's proposal / raw-results folder
IMAGES_PER_SET = 2            # images kept per annotation file of the tiny world

STAGE1 = ("python tools/mixed_mode_train.py --config configs/mixed_mode_coco_objects365_1ststage_rpn.py "
          "--work-dir {} --epochs 4 --batch-size 2")
STAGE2 = ("python tools/mixed_mode_train.py --config configs/mixed_mode_coco_objects365_2ndstage_roi.py "
          "--work-dir {} --epochs 4 --batch-size 2")
PROPOSALS = ("python tools/generate_proposals.py --config configs/mixed_mode_coco_objects365_1ststage_rpn.py "
             "--checkpoint ./stage1_rpn/latest.pkl --output-dir /root/autodl-tmp/rpl --datasets coco objects365 lvis")
LVIS_RAW = ("python tools/jittor_test.py --config configs/lvis_inference_with_calibration.py --checkpoint "
            "./stage2_roi/latest.pkl --out /root/autodl-tmp/rpl/raw_decouple_oidcoco_lvis_rp_val.pkl --eval bbox")
LVIS_CALIBRATED = ("python tools/jittor_test.py --config configs/lvis_inference_with_calibration.py --checkpoint "
                   "./stage2_roi/latest.pkl --eval bbox")
# the experiment section first (it makes the proposals), then the quick-start section's step-by-step commands,
# whose stage 2 reads the same proposal folder
PIPELINE = [STAGE1.format("./stage1_rpn"), PROPOSALS, STAGE2.format("./stage2_roi"), LVIS_RAW, LVIS_CALIBRATED,
            STAGE1.format("./work_dirs/mixed_mode/stage1_rpn"), STAGE2.format("./work_dirs/mixed_mode/stage2_roi")]

EXTERNAL = "not this project's command (installs a package, or checks another package); not run"
#: every command line of the seed README -> how this file checks it
SEED_COMMANDS = {
    "pip install jittor": EXTERNAL,
    "pip install mmdet": EXTERNAL + " (pure Jittor: MMDetection is not used)",
    "pip install clip": EXTERNAL + " (text embeddings: unidet embed / tools/generate_clip_embeddings.py)",
    "pip install numpy opencv-python pycocotools": EXTERNAL,
    "pip install mmdet==2.25.0": EXTERNAL + " (pure Jittor: MMDetection is not used)",
    "pip install jittor==1.3.8.15": EXTERNAL + " (this project pins jittor 1.3.11.0)",
    'python -c "import mmdet; print(mmdet.__version__)"': EXTERNAL + " (MMDetection is not used)",
    'python -c "import clip; print(\'CLIP OK\')"': EXTERNAL + " (OpenAI's clip package is not used)",
    'python -c "import jittor; print(jittor.cuda.is_available())"':
        EXTERNAL + " (Jittor 1.3.11 has no jittor.cuda.is_available: `unidet doctor` reports CUDA)",
    'python -c "import jittor; print(jittor.__version__)"': "test_jittor_version_command",
    "python tools/test_mixed_mode.py": "test_environment_check_command",
    "chmod +x quick_start_mixed_mode.sh": "test_quick_start_script",
    "./quick_start_mixed_mode.sh": "test_quick_start_script",
    "chmod +x experiments/run_coco_objects365_lvis_experiment.sh": "test_experiment_script",
    "./experiments/run_coco_objects365_lvis_experiment.sh": "test_experiment_script",
    "--batch-size 1": "test_troubleshooting_flags",
    "--accumulate-steps 2": "test_troubleshooting_flags",
    **{cmd: "seed_run (test_training_commands, test_generate_proposals_command, test_lvis_commands)"
       for cmd in PIPELINE},
}


def readme_command_lines(text: str) -> list:
    """The command lines of the ```bash blocks of a README: continuation lines joined, comments dropped,
    whitespace collapsed."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                lines.append(" ".join(line.split()))
    return lines


def seed_argv(cmd: str, rpl) -> list:
    """A README command line as argv, ``python`` = this interpreter, the seed's proposal folder = ``rpl``."""
    argv = shlex.split(cmd.replace(RPL, str(rpl)))
    return [sys.executable, *argv[1:]] if argv[0] == "python" else argv


def run(argv, cwd, env=None, timeout=600):
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})))


def tail(res, n=3000) -> str:
    return f"rc={res.returncode}\n--- stdout\n{res.stdout[-n:]}\n--- stderr\n{res.stderr[-n:]}"


# ------------------------------------------------------------------------------------------ the README itself
def test_every_readme_command_is_listed():
    if not SEED_README.is_file():
        pytest.skip(f"{SEED_README} not present (a user's checkout has no shared/)")
    lines = readme_command_lines(SEED_README.read_text(encoding="utf-8"))
    assert len(lines) > 20
    unlisted = sorted(set(lines) - set(SEED_COMMANDS))
    assert not unlisted, f"seed README command lines this test does not check: {unlisted}"
    assert not set(SEED_COMMANDS) - set(lines), "listed commands that are not in the README any more"


# ------------------------------------------------------------------------------------ the tiny stand-in project
def subset_json(src: Path, dst: Path, n: int) -> None:
    """``src`` with its first ``n`` images (and their annotations; every category kept) written to ``dst``."""
    data = json.loads(src.read_text())
    if isinstance(data, dict) and "images" in data:
        data["images"] = data["images"][:n]
        keep = {img["id"] for img in data["images"]}
        data["annotations"] = [a for a in data["annotations"] if a["image_id"] in keep]
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(json.dumps(data))


def dig(cfg, dotted):
    node = cfg
    for part in dotted.split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def lay_out_world(proj: Path, world: Path, configs: dict) -> None:
    """Put the world's files where the real configs look for them (paths read from the configs)."""
    roles = [  # (config, key of a data entry, world annotation file)
        ("mixed_mode_coco_objects365_1ststage_rpn", "data.train.0", "train_a.json"),
        ("mixed_mode_coco_objects365_1ststage_rpn", "data.train.1", "train_b.json"),
        ("mixed_mode_coco_objects365_1ststage_rpn", "data.val", "train_a.json"),
        ("mixed_mode_coco_objects365_2ndstage_roi", "data.train.datasets.0", "train_a.json"),
        ("mixed_mode_coco_objects365_2ndstage_roi", "data.train.datasets.1", "train_b.json"),
        ("lvis_inference_with_calibration", "data.test", "val_lvis.json"),
    ]
    files = {}
    for name, key, src in roles:
        entry = dig(configs[name], key)
        files[entry["ann_file"]] = src
        link = proj / entry["img_prefix"].rstrip("/")
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(world / "images")
    head2 = configs["mixed_mode_coco_objects365_2ndstage_roi"].model.roi_head.bbox_head
    head_lvis = configs["lvis_inference_with_calibration"].model.roi_head.bbox_head
    embeddings = list(head2.zeroshot_path) + [head_lvis.zeroshot_path]
    for path, src in zip(embeddings, ["emb_a.npy", "emb_b.npy", "emb_lvis.npy"]):
        files[path] = src
    assert head2.cat_freq_path[0] is None
    files[head2.cat_freq_path[1]] = "train_b_cat_info.json"
    for path, src in files.items():
        dst = proj / path
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.endswith(".npy") or src.endswith("_cat_info.json"):
            shutil.copy(world / src, dst)
        else:
            subset_json(world / src, dst, IMAGES_PER_SET)


def replace_strings(node, old: str, new: str):
    if isinstance(node, str):
        return node.replace(old, new)
    if isinstance(node, dict):
        return type(node)({k: replace_strings(v, old, new) for k, v in node.items()})
    if isinstance(node, (list, tuple)):
        return type(node)(replace_strings(v, old, new) for v in node)
    return node


def tiny_configs(rpl: Path) -> tuple:
    """``(real, tiny)``: the seed's configs by name, and tiny versions of them: the synthetic models and image
    scales, everything else (data paths, proposal files, vocabularies, calibration) as in the real ones."""
    real = {n: load_config(ROOT / "configs" / f"{n}.py") for n in
            ("mixed_mode_coco_objects365_1ststage_rpn", "mixed_mode_coco_objects365_2ndstage_roi",
             "lvis_inference_with_calibration")}
    synth1 = load_config(ROOT / "configs" / "synthetic" / "stage1_cln.py")
    synth2 = load_config(ROOT / "configs" / "synthetic" / "stage2_partitioned.py")
    synth_lvis = load_config(ROOT / "configs" / "synthetic" / "stage2_lvis_inference.py")
    tiny = {}

    cfg = copy.deepcopy(real["mixed_mode_coco_objects365_1ststage_rpn"])
    cfg.model = synth1.model
    for d in cfg.data.train:
        d.pipeline = synth1.data.train[0].pipeline
    cfg.data.val.pipeline = cfg.data.test.pipeline = synth1.data.test.pipeline
    # the seed README's jittor_config block, with use_cuda='auto' (use_cuda=True is refused without a GPU)
    cfg.jittor_config = dict(use_cuda="auto", amp_level=3, compile_mode="fast")
    tiny["mixed_mode_coco_objects365_1ststage_rpn"] = cfg

    cfg = copy.deepcopy(real["mixed_mode_coco_objects365_2ndstage_roi"])
    head = cfg.model.roi_head.bbox_head
    cfg.model = copy.deepcopy(synth2.model)
    cfg.model.roi_head.bbox_head.update(zeroshot_path=head.zeroshot_path, cat_freq_path=head.cat_freq_path)
    for d in cfg.data.train.datasets:
        d.pipeline = synth2.data.train.datasets[0].pipeline
    cfg.data.test.pipeline = synth2.data.test.pipeline
    tiny["mixed_mode_coco_objects365_2ndstage_roi"] = cfg

    cfg = copy.deepcopy(real["lvis_inference_with_calibration"])
    head = cfg.model.roi_head.bbox_head
    cfg.model = copy.deepcopy(synth_lvis.model)
    cfg.model.roi_head.bbox_head.update({k: head[k] for k in ("zeroshot_path", "withcalibration", "resultfile",
                                                             "beta", "gamma", "calibration_smoothing")})
    for d in (cfg.data.val, cfg.data.test):
        d.pipeline = synth_lvis.data.test.pipeline
        assert d.proposal_file == f"{RPL}/rp_val_ow.pkl"   # the seed's proposal folder, as the README writes it
    assert head.resultfile == f"{RPL}/raw_decouple_oidcoco_lvis_rp_val.pkl"   # the first LVIS command's --out
    tiny["lvis_inference_with_calibration"] = cfg

    for name, cfg in tiny.items():
        cfg.data.workers_per_gpu = 0
        cfg.log_config.interval = 1
        tiny[name] = type(cfg)(replace_strings(cfg.to_dict(), RPL, str(rpl)))
    return real, tiny


@pytest.fixture(scope="module")
def seed_run(tmp_path_factory):
    """The stand-in project after the seed README's pipeline commands: ``(proj, rpl, {command: result})``."""
    from unidetector.data.synthetic import generate_world

    base = tmp_path_factory.mktemp("seed_readme")
    proj, rpl, world = base / "project", base / "rpl", base / "world"
    generate_world(str(world), seed=0, size="tiny")
    proj.mkdir()
    (proj / "tools").symlink_to(ROOT / "tools")
    real, tiny = tiny_configs(rpl)
    lay_out_world(proj, world, real)
    (proj / "configs").mkdir()
    for name, cfg in tiny.items():
        cfg.dump(str(proj / "configs" / f"{name}.py"))
    results = {}
    for cmd in PIPELINE:
        results[cmd] = res = run(seed_argv(cmd, rpl), proj)
        if res.returncode:
            break
    return proj, rpl, results


def result_of(seed_run, cmd):
    _, _, results = seed_run
    assert cmd in results, f"not run: an earlier command failed: {[tail(r) for r in results.values() if r.returncode]}"
    res = results[cmd]
    assert res.returncode == 0, f"{cmd}\n{tail(res)}"
    return res


# ------------------------------------------------------------------------------------------ pipeline commands
def test_training_commands(seed_run):
    proj = seed_run[0]
    for cmd in PIPELINE:
        if "mixed_mode_train.py" in cmd:
            result_of(seed_run, cmd)
            work_dir = proj / shlex.split(cmd)[shlex.split(cmd).index("--work-dir") + 1]
            assert (work_dir / "latest.pkl").is_file() and (work_dir / "epoch_4.pkl").is_file(), cmd
            assert not (work_dir / "epoch_5.pkl").exists()  # --epochs 4


def test_generate_proposals_command(seed_run):
    proj, rpl, _ = seed_run
    res = result_of(seed_run, PROPOSALS)
    # each dataset's proposals go to the file its consumer config reads, inside --output-dir
    for name, ann in (("rp_train_0.pkl", "data/coco/annotations/instances_valminusminival2014.json"),
                      ("rp_train_1.pkl", "data/objects365/annotations/zhiyuan_objv2_train.1@3.5.json"),
                      ("rp_val_ow.pkl", "data/lvis_v0.5/annotations/lvis_v0.5_val.json")):
        with open(rpl / name, "rb") as f:
            props = pickle.load(f)
        images = json.loads((proj / ann).read_text())["images"]
        assert len(props) == len(images) == IMAGES_PER_SET, name
        for p in props:
            assert p.dtype == np.float32 and p.ndim == 2 and p.shape[1] == 5 and len(p) > 0
        assert ann in res.stdout


def test_lvis_commands(seed_run):
    _, rpl, _ = seed_run
    raw = result_of(seed_run, LVIS_RAW)
    assert "raw step of the calibrated inference" in raw.stdout and "withcalibration=False" in raw.stdout
    with open(rpl / "raw_decouple_oidcoco_lvis_rp_val.pkl", "rb") as f:
        results = pickle.load(f)
    from unidetector.data.synthetic import class_table

    assert len(results) == IMAGES_PER_SET and len(results[0]) == len(class_table())  # per image, per class (n, 5)
    calibrated = result_of(seed_run, LVIS_CALIBRATED)
    assert "raw step" not in calibrated.stdout and "withcalibration=False" not in calibrated.stdout
    for res in (raw, calibrated):
        ap = re.search(r"bbox_AP: ([0-9.]+)", res.stdout)
        assert ap and 0.0 <= float(ap.group(1)) <= 1.0, tail(res)


def test_missing_embedding_file_says_how_to_make_it(seed_run):
    proj, rpl, _ = seed_run
    result_of(seed_run, STAGE2.format("./stage2_roi"))
    emb = proj / "clip_embeddings" / "lvis_v0.5_clip_a+cname_rn50_manyprompt.npy"
    moved = emb.with_suffix(".away")
    emb.rename(moved)
    try:
        res = run(seed_argv(LVIS_RAW, rpl), proj)
    finally:
        moved.rename(emb)
    assert res.returncode == 2, tail(res)
    assert "Traceback" not in res.stderr, tail(res)
    assert "unidet test: error:" in res.stderr and "lvis_v0.5_clip_a+cname_rn50_manyprompt.npy" in res.stderr
    assert "unidet embed" in res.stderr and "clip_embeddings" in res.stderr  # how to make or fetch it


# ---------------------------------------------------------------------------------------- the other commands
def test_environment_check_command():
    res = run(seed_argv("python tools/test_mixed_mode.py", ""), ROOT)
    assert res.returncode == 0, tail(res)
    assert "unidet doctor" in res.stdout and "jittor" in res.stdout.lower()


def test_jittor_version_command():
    res = run(seed_argv('python -c "import jittor; print(jittor.__version__)"', ""), ROOT)
    assert res.returncode == 0 and res.stdout.strip().splitlines()[-1].startswith("1.3"), tail(res)


def test_quick_start_script(tmp_path):
    script = ROOT / "quick_start_mixed_mode.sh"
    assert run(["chmod", "+x", "quick_start_mixed_mode.sh"], ROOT).returncode == 0
    assert os.access(script, os.X_OK)
    # the script's own command line, plus arguments for `unidet experiment` that keep it short here: the
    # environment check, then the embedded default's first step (the world) in tmp_path
    res = run(["./quick_start_mixed_mode.sh", "--work-dir", str(tmp_path), "--only", "world", "--no-progress"], ROOT)
    assert res.returncode == 0, tail(res)
    assert "jittor" in res.stdout.lower()  # unidet doctor ran first
    assert (tmp_path / "data" / "synthetic" / "world.json").is_file()
    # without arguments it runs `unidet doctor` and the quick experiment (its report) in work_dirs/experiment
    fake = tmp_path / "unidet"
    fake.write_text('#!/bin/sh\necho "$@" >> "$(dirname "$0")/calls"\n')
    fake.chmod(0o755)
    res = run(["./quick_start_mixed_mode.sh"], ROOT, env={"UNIDET": str(fake)})
    assert res.returncode == 0, tail(res)
    assert (tmp_path / "calls").read_text().splitlines() == ["doctor",
                                                             "experiment --quick --work-dir work_dirs/experiment"]


def test_experiment_script(tmp_path):
    """Runs as written once DATA_ROOT holds its inputs (CHECK_ONLY=1 stops after the input check here: the
    real experiment trains on COCO + Objects365); without them it says what is missing."""
    script = "./experiments/run_coco_objects365_lvis_experiment.sh"
    assert run(["chmod", "+x", script[2:]], ROOT).returncode == 0
    res = run([script], ROOT, env={"DATA_ROOT": ""})
    assert res.returncode == 2 and "DATA_ROOT" in res.stderr
    data = tmp_path / "datasets"
    for rel in ("coco/annotations/instances_valminusminival2014.json", "objects365/annotations/"
                "zhiyuan_objv2_train.1@3.5.json", "lvis_v0.5/annotations/lvis_v0.5_val.json",
                "weights/resnet50-0676ba61.pth", "weights/regionclip_pretrained-cc_rn50_mmdet.pth"):
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        (data / rel).write_text("{}")
    for rel in ("coco/images/val2014", "objects365/train", "lvis_v0.5/val2017"):
        (data / rel).mkdir(parents=True)
    emb = tmp_path / "emb"
    emb.mkdir()
    for name in ("coco", "objects365", "lvis_v0.5"):
        np.save(emb / f"{name}_clip_a+cname_rn50_manyprompt.npy", np.zeros((2, 4), np.float32))
    res = run([script], ROOT, env={"DATA_ROOT": str(data), "EMB_DIR": str(emb), "CHECK_ONLY": "1"})
    assert res.returncode == 0 and "all inputs present" in res.stdout, tail(res)


def test_troubleshooting_flags():
    """``--batch-size 1`` and ``--accumulate-steps 2`` (the README's out-of-memory advice) are flags of the
    training commands."""
    sys.path.insert(0, str(ROOT / "tools"))
    import mixed_mode_train  # noqa: F401
    from jittor_train import translate

    argv = shlex.split(STAGE1.format("./stage1_rpn"))[2:] + ["--batch-size", "1", "--accumulate-steps", "2"]
    out = translate(argv)
    assert out[:2] == ["train", "configs/mixed_mode_coco_objects365_1ststage_rpn.py"]
    assert out[out.index("--accumulate-steps") + 1] == "2" and "data.samples_per_gpu=1" in out


def test_readme_config_fragments_are_accepted():
    """The README's config snippets (CLIPResNet, the two CLIP box heads) use keyword arguments of the classes."""
    import unidetector.models  # noqa: F401  (registers the modules)
    from unidetector.registry import MODELS

    fragments = [
        dict(type="CLIPResNet", layers=[3, 4, 6, 3], output_dim=512, input_resolution=224, width=64,
             pretrained="./clip_weights/RN50.pt"),
        dict(type="BBoxHeadCLIPPartitioned",
             zeroshot_path=["./clip_embeddings/coco_clip_a+cname_rn50_manyprompt.npy",
                            "./clip_embeddings/objects365_clip_a+cname_rn50_manyprompt.npy"],
             cat_freq_path=[None, "/root/autodl-tmp/datasets/object365/annotations/object365_cat_freq.json"],
             num_classes=365),
        dict(type="BBoxHeadCLIPInference", zeroshot_path="./clip_embeddings/lvis_clip_a+cname_rn50_manyprompt.npy",
             withcalibration=True, resultfile="/root/autodl-tmp/rpl/raw_decouple_oidcoco_lvis_rp_val.pkl",
             gamma=0.3, beta=0.8),
    ]
    for frag in fragments:
        kwargs = dict(frag)
        cls = MODELS.get(kwargs.pop("type"))
        params = {}
        for klass in cls.__mro__:  # **kwargs passed on to the base classes
            if "__init__" in vars(klass):
                params.update(inspect.signature(klass.__init__).parameters)
        unknown = sorted(set(kwargs) - set(params))
        assert not unknown, (frag["type"], unknown)


# ---------------------------------------------------------------------------------------------- the new configs
def test_new_configs_inherit_their_bases():
    from unidetector.engine.runner import check_config

    def load(name):
        return load_config(ROOT / "configs" / f"{name}.py").to_dict()

    base1, mixed1 = load("coco_objects365_1ststage_rpn"), load("mixed_mode_coco_objects365_1ststage_rpn")
    assert set(mixed1.pop("proposal_datasets")) == {"coco", "objects365", "lvis"}
    assert mixed1 == base1
    pure1 = load("pure_jittor_coco_objects365_1ststage_rpn")
    pure1.pop("proposal_datasets")
    assert pure1 == base1
    base2, mixed2 = load("coco_objects365_2ndstage_roi"), load("mixed_mode_coco_objects365_2ndstage_roi")
    assert mixed2.pop("proposal_dir") == RPL + "/" and mixed2["data"].pop("val") is None
    for b, m in zip(base2["data"]["train"]["datasets"], mixed2["data"]["train"]["datasets"]):
        assert m.pop("proposal_file") == RPL + "/" + b.pop("proposal_file")
    base2["data"].pop("val")
    assert mixed2 == base2
    for name in ("mixed_mode_coco_objects365_1ststage_rpn", "pure_jittor_coco_objects365_1ststage_rpn",
                 "mixed_mode_coco_objects365_2ndstage_roi"):
        cfg = load_config(ROOT / "configs" / f"{name}.py")
        cfg.jittor_config = dict(use_cuda=True, amp_level=3, compile_mode="fast")  # the seed's block
        check_config(cfg, for_training=True)
        check_config(cfg, for_training=False)


def test_generate_proposals_unknown_dataset_name_lists_the_known_ones(tmp_path):
    cmd = PROPOSALS.replace("--datasets coco objects365 lvis", "--datasets coco openimages")
    res = run(seed_argv(cmd, tmp_path), ROOT)
    assert res.returncode == 2, tail(res)
    assert "unknown dataset name(s) 'openimages'" in res.stderr and "coco, objects365, lvis" in res.stderr
    assert "Traceback" not in res.stderr and not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------- jittor_config
@pytest.fixture
def jt_flags():
    """Jittor's global flags, restored after the test."""
    import jittor as jt

    saved = (jt.flags.use_cuda, jt.flags.auto_mixed_precision_level, jt.flags.lazy_execution)
    yield jt.flags
    jt.flags.use_cuda, jt.flags.auto_mixed_precision_level, jt.flags.lazy_execution = saved


def jittor_cfg(**jc):
    from unidetector.config import Config

    return Config(dict(model=dict(type="X"), jittor_config=jc), filename="seed_cfg.py", cfg_text="# a config\n")


def test_jittor_config_honoured(jt_flags):
    from unidetector.engine.jittor_config import apply_jittor_config, cuda_available

    cfg = jittor_cfg(use_cuda="auto", amp_level=3, compile_mode="fast")
    apply_jittor_config(cfg)
    assert jt_flags.use_cuda == int(cuda_available())
    assert jt_flags.auto_mixed_precision_level == 3 and "fp16" not in cfg  # levels 1-3: fp32 model stays fp32
    assert jt_flags.lazy_execution == 1
    cfg = jittor_cfg(use_cuda=False, amp_level=5, compile_mode="eager")
    apply_jittor_config(cfg)
    assert jt_flags.use_cuda == 0 and jt_flags.lazy_execution == 0
    assert cfg.fp16 == dict(loss_scale="dynamic")  # the engine's AMP (= --amp)
    cfg = jittor_cfg(amp_level=5)
    cfg.fp16 = dict(loss_scale=32.0)
    apply_jittor_config(cfg)
    assert cfg.fp16 == dict(loss_scale=32.0)  # the config's own loss scale wins
    apply_jittor_config(load_config(ROOT / "configs" / "mixed_mode_coco_objects365_1ststage_rpn.py"))  # no block


@pytest.mark.parametrize("jc, words", [
    (dict(use_cuda=True, amp_level=3, compile_mode="fast"), ["use_cuda=True", "no usable CUDA device", "'auto'"]),
    (dict(use_gpu=True), ["unknown key(s) use_gpu", "use_cuda, amp_level, compile_mode"]),
    (dict(use_cuda="yes"), ["use_cuda='yes'", "True, False or 'auto'"]),
    (dict(amp_level=4), ["amp_level=4 is not supported", "amp_level=5"]),
    (dict(amp_level=7), ["amp_level=7", "0-6"]),
    (dict(compile_mode="turbo"), ["compile_mode='turbo'", "'fast'", "'eager'"]),
])
def test_jittor_config_refused_clearly(jt_flags, jc, words):
    from unidetector.engine.jittor_config import JittorConfigError, apply_jittor_config, cuda_available
    from unidetector.errors import UnidetError

    if jc.get("use_cuda") is True and cuda_available():
        pytest.skip("a CUDA device is present: use_cuda=True is honoured")
    with pytest.raises(JittorConfigError) as e:
        apply_jittor_config(jittor_cfg(**jc))
    assert isinstance(e.value, UnidetError)
    msg = str(e.value)
    assert msg.startswith("seed_cfg.py: jittor_config"), msg
    for w in words:
        assert w in msg, (w, msg)
