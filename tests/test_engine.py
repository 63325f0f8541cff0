"""Engine tests with a tiny model (conv + linear returning a dict of losses) on a tiny random dataset.

The module doubles as a script for the subprocess tests:
  python tests/test_engine.py train WORK_DIR [--sleep S] [--resume]   (SIGKILL/resume test)
  mpirun -np 2 python tests/test_engine.py mpi-step OUT.npz            (MPI equivalence test)
"""
from __future__ import annotations

import json
import math
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import unidetector  # noqa: E402,F401  (runtime bootstrap before jittor)
import jittor as jt  # noqa: E402
from jittor import nn  # noqa: E402

from unidetector.registry import DATASETS, MODELS  # noqa: E402


# ----------------------------------------------------------------------------- tiny world
@DATASETS.register_module(name="EngineTinyDataset", force=True)
class TinyDataset:
    """``n`` random 3x16x16 images; the target is a fixed function of the image; random flip (numpy)."""

    CLASSES = ("thing",)

    def __init__(self, n=16, seed=0, test_mode=False):
        self.n, self.seed, self.test_mode = n, seed, test_mode
        self.flag = np.zeros(n, np.uint8)

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        rng = np.random.default_rng([self.seed, i])
        img = rng.normal(size=(3, 16, 16)).astype(np.float32)
        if not self.test_mode and np.random.rand() < 0.5:  # augmentation drawn from the (reseeded) numpy RNG
            img = img[:, :, ::-1].copy()
        t = np.array([[img[0].mean(), img[1].mean(), img[2].std(), 1.0]], np.float32)
        return {"img": img, "img_metas": {"idx": i, "ori_shape": (16, 16, 3)}, "gt_bboxes": t,
                "gt_labels": np.zeros(1, np.int64)}


@MODELS.register_module(name="EngineTinyDet", force=True)
class TinyDet(nn.Module):
    """conv → BN → relu → global mean → linear(4); losses: MSE to the gt 'box' split in two + 'acc'.
    ``norm=False`` drops the BatchNorm (batch statistics make accumulation/MPI non-equivalent).
    ``noise`` adds Jittor and numpy randomness in training (exercises RNG restore); ``nan_at`` makes the
    loss NaN at that (1-based) call."""

    def __init__(self, noise=True, nan_at=0, norm=True):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8) if norm else nn.Identity()
        self.fc = nn.Linear(8, 4)
        self.noise, self.nan_at, self.calls = noise, nan_at, 0

    def execute(self, img, img_metas, gt_bboxes=None, gt_labels=None, **kw):
        x = nn.relu(self.bn(self.conv(img))).mean(dims=(2, 3))
        if self.is_training() and self.noise:
            x = x + jt.randn(x.shape) * 0.01 + float(np.random.rand()) * 0.01
        out = self.fc(x)
        if not self.is_training():
            return [[np.concatenate([o[None], [[0.5]]], 1).astype(np.float32)] for o in out.numpy()]
        target = jt.concat([b.reshape(1, 4) for b in gt_bboxes], 0)
        self.calls += 1
        la = ((out[:, :2] - target[:, :2]) ** 2).mean()
        lb = ((out[:, 2:] - target[:, 2:]) ** 2).mean()
        if self.nan_at and self.calls == self.nan_at:
            la = la * float("nan")
        return {"loss_a": la, "loss_b": lb, "acc": (out[:, 0] > 0).float32().mean()}


def make_trainer(work_dir, seed=0, batch_size=4, n=16, K=1, max_epochs=2, iter_interval=0, noise=True,
                 nan_at=0, norm=True, amp=False, loss_scale="dynamic", grad_clip=None, lr=0.05, log_interval=2):
    from unidetector.data.loader import DetectionLoader
    from unidetector.engine import Trainer, build_lr_schedule, build_optimizer

    jt.set_global_seed(seed)
    model = TinyDet(noise=noise, nan_at=nan_at, norm=norm)
    jt.sync_all()  # Jittor's random init is lazy: draw it now, under this seed
    loader = DetectionLoader(TinyDataset(n), batch_size=batch_size, shuffle=True, seed=seed)
    opt = build_optimizer(model, dict(type="SGD", lr=lr, momentum=0.9, weight_decay=1e-4))
    sched = build_lr_schedule(dict(policy="step", step=[1], warmup="linear", warmup_iters=3, warmup_ratio=0.1))
    return Trainer(model, loader, opt, sched, work_dir, max_epochs, grad_clip=grad_clip, accumulate_steps=K,
                   amp=amp, loss_scale=loss_scale, seed=seed, checkpoint_iter_interval=iter_interval,
                   log_interval=log_interval, config_text="tiny", progress=False)


def weights(model):
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


def _script_train(argv):
    work_dir = argv[0]
    sleep = float(argv[argv.index("--sleep") + 1]) if "--sleep" in argv else 0.0
    tr = make_trainer(work_dir, iter_interval=1, max_epochs=3)
    if sleep:
        step = tr.train_step

        def slow_step(batches):
            time.sleep(sleep)
            return step(batches)

        tr.train_step = slow_step
    if "--resume" in argv:
        tr.resume(os.path.join(work_dir, "latest.pkl"))
    tr.train()
    np.savez(os.path.join(work_dir, "final.npz"), **weights(tr.model))


def _mpi_step(out):
    """One SGD step on a global batch of 4 (each rank gets 2 under MPI); rank 0 saves the weights."""
    from unidetector.data.loader import DetectionLoader
    from unidetector.engine import Trainer, build_lr_schedule, build_optimizer

    jt.set_global_seed(3)
    model = TinyDet(noise=False, norm=False)
    jt.sync_all()
    loader = DetectionLoader(TinyDataset(8), batch_size=4, shuffle=True, seed=3)
    opt = build_optimizer(model, dict(type="SGD", lr=0.1, momentum=0.9, weight_decay=1e-4))
    tr = Trainer(model, loader, opt, build_lr_schedule(None), os.path.dirname(out) or ".", 1,
                 grad_clip=dict(max_norm=0.5), seed=3, progress=False)
    loader.set_epoch(0)
    batch = next(iter(loader))
    values = tr.train_step([batch])
    w = weights(model)
    if not jt.in_mpi or jt.rank == 0:
        np.savez(out, loss=values["loss"], n_img=len(batch["img_metas"]), **w)


# ----------------------------------------------------------------------------- unit tests
def test_sgd_matches_pytorch_formula():
    from unidetector.engine import build_optimizer

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = jt.array(np.array([1.0, -2.0, 3.0], np.float32))

    m = M()
    opt = build_optimizer(m, dict(type="SGD", lr=0.1, momentum=0.9, weight_decay=0.01))
    w, v = np.array([1.0, -2.0, 3.0]), np.zeros(3)
    for _ in range(3):
        loss = (m.w * m.w * jt.array(np.array([1.0, 2.0, 3.0], np.float32))).sum()
        opt.backward(loss)
        opt.step()
        g = 2 * w * np.array([1.0, 2.0, 3.0])
        v = 0.9 * v + (g + 0.01 * w)
        w = w - 0.1 * v
    np.testing.assert_allclose(m.w.numpy(), w, rtol=1e-5)


def test_adamw_matches_pytorch_formula_and_resumes_exactly():
    """AdamW = torch.optim.AdamW (decoupled decay, bias correction); its state_dict restores the
    moments and the step count, so a resumed run continues identically; SGD state is refused."""
    import pytest

    from unidetector.engine import build_optimizer

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = jt.array(np.array([1.0, -2.0, 3.0], np.float32))

    scale = np.array([1.0, 2.0, 3.0])
    cfg = dict(type="AdamW", lr=0.1, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05)

    def step(model, opt):
        opt.backward((model.w * model.w * jt.array(scale.astype(np.float32))).sum())
        opt.step()

    m = M()
    opt = build_optimizer(m, cfg)
    w, mom, var = np.array([1.0, -2.0, 3.0]), np.zeros(3), np.zeros(3)
    for t in range(1, 4):
        step(m, opt)
        g = 2 * w * scale
        w = w * (1 - 0.1 * 0.05)
        mom, var = 0.8 * mom + 0.2 * g, 0.99 * var + 0.01 * g * g
        w = w - 0.1 / (1 - 0.8 ** t) * mom / (np.sqrt(var) / np.sqrt(1 - 0.99 ** t) + 1e-6)
    np.testing.assert_allclose(m.w.numpy(), w, rtol=1e-5)

    state = opt.state_dict()
    assert state["type"] == "AdamW" and set(state) >= {"exp_avg", "exp_avg_sq", "n_step"}
    resumed = M()
    resumed.w.assign(m.w.numpy())
    opt2 = build_optimizer(resumed, cfg)
    opt2.load_state_dict(state)
    step(m, opt)
    step(resumed, opt2)
    np.testing.assert_allclose(resumed.w.numpy(), m.w.numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="SGD"):
        build_optimizer(M(), dict(type="SGD", lr=0.1)).load_state_dict(state)


def test_paramwise_custom_keys_mmcv_rules():
    from unidetector.engine import paramwise_groups

    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 2)
            self.bn = nn.BatchNorm1d(2)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = Head()
            self.roi_head = Head()
            self.rpn_head = Head()
            self.frozen = nn.Linear(2, 2)
            self.frozen.weight.stop_grad()

    net = Net()
    groups = paramwise_groups(net, 0.02, 1e-4, dict(
        custom_keys={"backbone": dict(lr_mult=0.1), "roi_head": dict(lr_mult=0.1),
                     "backbone.fc": dict(lr_mult=0.5, decay_mult=0.0)},
        norm_decay_mult=0.0, bias_lr_mult=2.0))
    cfg = {n: (g["lr"], g["weight_decay"]) for g in groups for n in g["names"]}
    assert "frozen.weight" not in cfg  # stop_grad: excluded
    assert cfg["backbone.fc.weight"] == (0.02 * 0.5, 0.0)  # longest matching key wins
    assert cfg["backbone.bn.weight"] == (pytest_approx(0.002), 1e-4)  # custom key: other rules skipped
    assert cfg["roi_head.fc.bias"] == (pytest_approx(0.002), 1e-4)
    assert cfg["rpn_head.fc.bias"] == (0.04, 1e-4)  # bias_lr_mult
    assert cfg["rpn_head.bn.weight"] == (0.02, 0.0)  # norm_decay_mult
    assert cfg["rpn_head.bn.bias"] == (0.02, 0.0)  # norm bias: no bias_lr_mult
    assert cfg["frozen.bias"] == (0.04, 1e-4)


def pytest_approx(x):
    import pytest

    return pytest.approx(x)


def test_unsupported_optimizer_and_schedule_keys():
    import pytest

    from unidetector.engine import build_lr_schedule, build_optimizer
    from unidetector.engine.optim import OptimizerConfigError
    from unidetector.engine.schedule import ScheduleConfigError

    with pytest.raises(OptimizerConfigError, match="dcn_offset_lr_mult"):
        build_optimizer(TinyDet(), dict(type="SGD", lr=0.1, paramwise_cfg=dict(dcn_offset_lr_mult=0.1)))
    with pytest.raises(OptimizerConfigError, match="Adam"):
        build_optimizer(TinyDet(), dict(type="Adam", lr=0.1))
    with pytest.raises(ScheduleConfigError, match="cosine|CosineAnnealing"):
        build_lr_schedule(dict(policy="CosineAnnealing"))


def test_lr_schedule_matches_mmdet_formula():
    from unidetector.engine import build_lr_schedule

    s = build_lr_schedule(dict(policy="step", warmup="linear", warmup_iters=500, warmup_ratio=0.001, step=[8, 11]))
    base = 0.02
    for epoch, it in [(0, 0), (0, 1), (0, 250), (0, 499), (0, 500), (3, 4000), (8, 50000), (10, 60000),
                      (11, 70000), (8, 100)]:
        regular = base * 0.1 ** sum(epoch >= m for m in (8, 11))
        expect = regular * (1 - (1 - it / 500) * (1 - 0.001)) if it < 500 else regular
        assert math.isclose(s.lr(base, epoch, it), expect, rel_tol=1e-12), (epoch, it)
    assert math.isclose(s.lr(base, 0, 0), base * 0.001)
    c = build_lr_schedule(dict(policy="step", step=2, gamma=0.5, warmup="exp", warmup_iters=10, warmup_ratio=0.1))
    assert math.isclose(c.lr(1.0, 5, 5), 0.25 * 0.1 ** 0.5)


def test_lr_schedule_iteration_milestones():
    """``by_epoch=False``: milestones count iterations (mmcv), whatever the epoch."""
    from unidetector.engine import build_lr_schedule

    s = build_lr_schedule(dict(policy="step", by_epoch=False, step=[100, 140], warmup="linear", warmup_iters=10,
                               warmup_ratio=0.1))
    assert math.isclose(s.lr(1.0, 0, 5), 1 - 0.5 * 0.9)
    assert s.lr(1.0, 0, 99) == 1.0 and s.lr(1.0, 5, 99) == 1.0
    assert math.isclose(s.lr(1.0, 0, 100), 0.1) and math.isclose(s.lr(1.0, 0, 140), 0.01)
    assert s.state_dict()["by_epoch"] is False


def test_clip_grad_norm_keeps_direction():
    from unidetector.engine import build_optimizer, clip_grad_norm
    from unidetector.engine.optim import grad_global_norm

    m = TinyDet(noise=False)
    opt = build_optimizer(m, dict(type="SGD", lr=0.1))
    batch = _collate([TinyDataset(4)[i] for i in range(4)])
    m.train()
    losses = m(batch["img"], batch["img_metas"], gt_bboxes=batch["gt_bboxes"])
    opt.backward((losses["loss_a"] + losses["loss_b"]) * 100)
    before = np.concatenate([g.numpy().ravel() for _, _, g in opt.grads()])
    total = clip_grad_norm(opt, max_norm=0.5)
    after = np.concatenate([g.numpy().ravel() for _, _, g in opt.grads()])
    assert math.isclose(total, np.linalg.norm(before), rel_tol=1e-4)
    assert total > 0.5 and np.linalg.norm(after) <= 0.5 + 1e-6
    np.testing.assert_allclose(after, before * 0.5 / (total + 1e-6), rtol=1e-4, atol=1e-9)
    small = clip_grad_norm(opt, max_norm=100.0)  # below max_norm: untouched
    np.testing.assert_array_equal(np.concatenate([g.numpy().ravel() for _, _, g in opt.grads()]), after)
    assert math.isclose(small, float(grad_global_norm(opt).item()), rel_tol=1e-5)


def _collate(samples):
    from unidetector.data.loader import DetectionLoader, collate_detection

    return DetectionLoader.to_jittor(type("L", (), {"keep_numpy_targets": False})(), collate_detection(samples))


def test_accumulation_equals_bigger_batch(tmp_path):
    ds = TinyDataset(8)
    samples = [ds[i] for i in range(4)]
    big = make_trainer(tmp_path / "a", noise=False, norm=False, grad_clip=dict(max_norm=1.0))
    small = make_trainer(tmp_path / "b", noise=False, norm=False, K=2, grad_clip=dict(max_norm=1.0))
    for tr in (big, small):
        tr.model.train()
        tr.lr_schedule.apply(tr.optimizer, 0, 5)
    for _ in range(2):
        v_big = big.train_step([_collate(samples)])
        v_small = small.train_step([_collate(samples[:2]), _collate(samples[2:])])
    assert math.isclose(v_big["loss"], v_small["loss"], rel_tol=1e-5)
    wa, wb = weights(big.model), weights(small.model)
    for k in wa:
        np.testing.assert_allclose(wa[k], wb[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_loss_goes_down_logs_and_plot(tmp_path, capsys):
    from PIL import Image

    from unidetector.cli import main

    tr = make_trainer(tmp_path, max_epochs=4, n=16, log_interval=1)
    tr.train()
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("Epoch [")]
    assert len(lines) == 16 and lines[0].startswith("Epoch [1][1/4] lr: ")
    etas = [re.search(r", eta: (\d+):(\d\d):(\d\d), ", l).groups() for l in lines]
    assert etas[-1] == ("0", "00", "00")  # MMDetection's text-log format, the whole schedule's time left
    recs = [json.loads(line) for line in open(tmp_path / "log.jsonl")]
    losses = [r["loss"] for r in recs if r["mode"] == "train"]
    assert len(losses) == 16 and np.mean(losses[-4:]) < 0.7 * np.mean(losses[:4])
    assert {"loss_a", "loss_b", "acc", "lr", "epoch", "iter", "global_iter"} <= set(recs[0])
    assert (tmp_path / "epoch_4.pkl").is_file() and os.path.realpath(tmp_path / "latest.pkl").endswith("epoch_4.pkl")
    ck = pickle.load(open(tmp_path / "latest.pkl", "rb"))
    assert ck["meta"]["epoch"] == 4 and ck["meta"]["iter"] == 16 and ck["meta"]["config"] == "tiny"
    assert set(ck) >= {"state_dict", "optimizer", "lr_scheduler", "rng", "meta"}
    out = tmp_path / "curves.png"
    assert main(["plot-log", str(tmp_path / "log.jsonl"), "--out", str(out)]) == 0
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > 100 and im.size[1] > 100


def test_amp_static_power_of_two_scale_is_exact(tmp_path):
    ref = make_trainer(tmp_path / "ref", max_epochs=1)
    ref.train()
    amp = make_trainer(tmp_path / "amp", max_epochs=1, amp=True, loss_scale=32.0)
    amp.train()
    wa, wb = weights(ref.model), weights(amp.model)
    for k in wa:
        np.testing.assert_allclose(wa[k], wb[k], rtol=1e-6, atol=1e-7, err_msg=k)


def test_amp_on_cpu_gives_training_convolutions_bfloat16_where_the_processor_has_it(tmp_path, monkeypatch):
    """--amp on the CPU: each forward/backward runs with channels_last.train_dtype() bfloat16 on processors with
    AMX / AVX-512-BF16 (float32 elsewhere), and the process-wide setting is back to float32 after the step."""
    import warnings

    from unidetector.models.layers import channels_last
    from unidetector.ops import onednn

    seen = []
    execute = TinyDet.execute

    def spy(self, *args, **kwargs):
        seen.append(channels_last.train_dtype())
        return execute(self, *args, **kwargs)

    monkeypatch.setattr(TinyDet, "execute", spy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # processors without bfloat16 warn
        make_trainer(tmp_path / "amp", max_epochs=1, amp=True).train()
    want = "bfloat16" if onednn.available() and onednn.bf16_supported() else "float32"
    assert len(seen) == 4 and set(seen) == {want}
    assert channels_last.TRAIN_DTYPE == "float32"
    seen.clear()
    make_trainer(tmp_path / "fp32", max_epochs=1).train()
    assert seen and set(seen) == {"float32"}


def test_nan_loss_stops_with_clear_error(tmp_path):
    import pytest

    from unidetector.engine import NonFiniteLossError

    tr = make_trainer(tmp_path, nan_at=3, iter_interval=1)
    with pytest.raises(NonFiniteLossError) as e:
        tr.train()
    msg = str(e.value)
    assert "iteration 3" in msg and "loss_a=nan" in msg and "loss_b=" in msg
    assert str(tmp_path / "latest.pkl") in msg
    assert pickle.load(open(tmp_path / "latest.pkl", "rb"))["meta"]["iter"] == 2


def test_atomic_save_leaves_no_partial_file(tmp_path):
    import pytest

    from unidetector.engine import atomic_save

    class Boom:
        def __reduce__(self):
            raise RuntimeError("disk full (simulated)")

    path = tmp_path / "latest.pkl"
    atomic_save({"state_dict": {"a": np.ones(3)}}, path)
    with pytest.raises(RuntimeError, match="simulated"):
        atomic_save({"state_dict": {"a": np.zeros(10 ** 6)}, "x": Boom()}, path)
    assert pickle.load(open(path, "rb"))["state_dict"]["a"].tolist() == [1, 1, 1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.pkl"]
    with pytest.raises(RuntimeError):
        atomic_save({"x": Boom()}, tmp_path / "new.pkl")
    assert not (tmp_path / "new.pkl").exists()


def test_sigkill_and_resume_is_exact(tmp_path):
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    ref = make_trainer(ref_dir, iter_interval=1, max_epochs=3)
    ref.train()
    ref_w = weights(ref.model)
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    script = [sys.executable, str(Path(__file__).resolve()), "train", str(run_dir)]
    # Jittor quits when one of *its own* children dies by a signal (SIGCHLD handler), so the run to be
    # killed is a grandchild: bash starts it, reports its pid and exits normally after the kill.
    pidfile = tmp_path / "pid"
    proc = subprocess.Popen(["bash", "-c", '"$@" & echo $! > "$PIDFILE"; wait $!', "_", *script, "--sleep", "0.4"],
                            env=dict(env, PIDFILE=str(pidfile)), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    latest, killed_at = run_dir / "latest.pkl", None
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if latest.exists():
            try:
                it = pickle.load(open(latest, "rb"))["meta"]["iter"]
            except (EOFError, pickle.UnpicklingError) as e:  # atomic_save must make this impossible
                raise AssertionError(f"latest.pkl exists but is incomplete: {e}")
            if it >= 6:  # mid-epoch 2 (4 steps per epoch)
                os.kill(int(pidfile.read_text()), signal.SIGKILL)
                killed_at = it
                break
        time.sleep(0.05)
    proc.wait()
    assert killed_at is not None, f"subprocess ended before the kill: {proc.stderr.read().decode()[-2000:]}"
    assert not (run_dir / "final.npz").exists()
    meta = pickle.load(open(latest, "rb"))["meta"]
    assert meta["iter"] >= 6
    res = subprocess.run(script + ["--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    got = dict(np.load(run_dir / "final.npz"))
    for k, v in ref_w.items():
        np.testing.assert_allclose(got[k], v, rtol=0, atol=1e-6, err_msg=k)


def test_mpi_two_processes_equal_one_process(tmp_path):
    import pytest

    mpirun = shutil.which("mpirun")
    if mpirun is None:
        pytest.skip("mpirun not found: install openmpi-bin libopenmpi-dev to run the MPI test")
    single = tmp_path / "single.npz"
    _mpi_step(str(single))  # in-process: warms the compile cache before two processes start
    multi = tmp_path / "multi.npz"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run([mpirun, "-np", "2", "--allow-run-as-root", "--oversubscribe", sys.executable,
                          str(Path(__file__).resolve()), "mpi-step", str(multi)], env=env,
                         capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, (res.stdout[-2000:], res.stderr[-3000:])
    a, b = dict(np.load(single)), dict(np.load(multi))
    assert int(a["n_img"]) == 4 and int(b["n_img"]) == 2  # each rank saw half of the global batch
    assert math.isclose(float(a["loss"]), float(b["loss"]), rel_tol=1e-5)
    for k in a:
        if k in ("loss", "n_img"):
            continue
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_train_command_from_config(tmp_path):
    import pytest

    from unidetector.cli import main
    from unidetector.engine.runner import EngineConfigError, check_config
    from unidetector.config import load_config

    cfg = tmp_path / "tiny.py"
    cfg.write_text(
        "model = dict(type='EngineTinyDet')\n"
        "data = dict(samples_per_gpu=4, workers_per_gpu=0, train=dict(type='EngineTinyDataset', n=8),\n"
        "            val=dict(type='EngineTinyDataset', n=4), test=dict(type='EngineTinyDataset', n=4))\n"
        "optimizer = dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=1e-4,\n"
        "                 paramwise_cfg=dict(custom_keys={'conv': dict(lr_mult=0.1)}))\n"
        "optimizer_config = dict(grad_clip=dict(max_norm=35, norm_type=2))\n"
        "lr_config = dict(policy='step', warmup='linear', warmup_iters=2, warmup_ratio=0.001, step=[1])\n"
        "runner = dict(type='EpochBasedRunner', max_epochs=2)\n"
        "checkpoint_config = dict(interval=1)\n"
        "log_config = dict(interval=1, hooks=[dict(type='TextLoggerHook')])\n"
        "workflow = [('train', 1)]\nload_from = None\nresume_from = None\nseed = 0\n")
    wd = tmp_path / "wd"
    assert main(["train", str(cfg), "--work-dir", str(wd), "--no-progress", "--no-validate"]) == 0
    assert (wd / "epoch_2.pkl").is_file() and (wd / "tiny.py").is_file()
    assert main(["train", str(cfg), "--work-dir", str(wd), "--resume", "--no-progress", "--no-validate",
                 "--cfg-options", "runner.max_epochs=3"]) == 0
    assert pickle.load(open(wd / "latest.pkl", "rb"))["meta"]["epoch"] == 3
    out = tmp_path / "raw.pkl"
    assert main(["test", str(cfg), str(wd / "latest.pkl"), "--out", str(out), "--no-progress"]) == 0
    res = pickle.load(open(out, "rb"))
    assert len(res) == 4 and res[0][0].shape == (1, 5)
    bad = load_config(cfg, {"momentum_config": dict(policy="cyclic"), "optimizer_config.type": "Fp16OptimizerHook",
                            "log_config.hooks": [dict(type="TensorboardLoggerHook")]})
    with pytest.raises(EngineConfigError) as e:
        check_config(bad)
    for word in ("momentum_config", "Fp16OptimizerHook", "TensorboardLoggerHook"):
        assert word in str(e.value)


if __name__ == "__main__":
    if sys.argv[1] == "train":
        _script_train(sys.argv[2:])
    elif sys.argv[1] == "mpi-step":
        _mpi_step(sys.argv[2])
    else:
        raise SystemExit(f"unknown mode {sys.argv[1]}")
