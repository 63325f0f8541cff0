"""The training loop (mmcv ``EpochBasedRunner`` + optimizer/lr/checkpoint/logger hooks, in one class).

One **iteration** is one optimizer step; with ``accumulate_steps=K`` it consumes K batches, calling
``optimizer.backward(loss / K)`` for each (Jittor accumulates; under MPI it also averages over ranks),
then optionally unscales (AMP), clips by global norm, and steps. Per iteration:

1. every RNG (python, numpy, Jittor) is reseeded from ``(seed, iteration, rank)`` — so random sampling
   inside the model is a function of the iteration, and a resumed run draws the same numbers;
2. the lr of every group is set from the schedule at ``(epoch, iteration)``;
3. the losses (mmdet ``_parse_losses``: total = sum of entries whose name contains ``'loss'``) are
   fetched, averaged over micro-batches (and ranks), and checked: a NaN/inf stops the run with
   :class:`NonFiniteLossError` naming the iteration, every loss value and the last good checkpoint.

The data order of epoch ``e`` depends only on ``(seed, e)`` (the loader's sampler); resuming from a
checkpoint taken after ``n`` steps of an epoch skips exactly the first ``n·K`` batches of that epoch's
order. Together with the exact optimizer state this makes kill-and-resume reproduce an uninterrupted
run bit for bit (same machine, same number of processes).

Checkpoints (format: :mod:`unidetector.engine.checkpoint`) are written on rank 0, atomically:
``epoch_<e>.pkl`` every ``checkpoint_interval`` epochs (and at the end), ``latest.pkl`` after each of
them and every ``checkpoint_iter_interval`` iterations. Logging on rank 0: a tqdm bar with ETA, and
every ``log_interval`` iterations a line with the mean losses, lr and grad norm, also appended to
``work_dir/log.jsonl`` (mmdet json-log fields: ``mode, epoch, iter`` (1-based in the epoch), ``lr``,
losses, ``loss``, ``grad_norm``, ``time``; plus ``global_iter``).
"""
from __future__ import annotations

import datetime
import json
import math
import os
import random
import time
from pathlib import Path

import numpy as np

import jittor as jt

from ..errors import UnidetError
from ..models.detectors.two_stage import parse_losses
from ..models.layers import channels_last
from . import checkpoint as ckpt_io
from .amp import LossScaler, enable_amp
from .optim import clip_grad_norm

TARGET_KEYS = ("gt_bboxes", "gt_labels", "gt_bboxes_ignore", "proposals")


class CheckpointSaveError(UnidetError, OSError):
    """A checkpoint could not be written; the message names the folder and the last good checkpoint."""


class NonFiniteLossError(UnidetError, FloatingPointError):
    """A loss became NaN or infinite."""


def dist_info():
    return (int(jt.rank), int(jt.world_size)) if jt.in_mpi else (0, 1)


def broadcast_model(model) -> None:
    """Copy rank 0's parameters and buffers to every rank. ``jt.set_global_seed`` seeds each rank
    differently, so random inits differ; Jittor's own broadcast comes only after the first backward,
    too late for the first forward."""
    for var in model.state_dict().values():
        frozen = var.is_stop_grad()
        var.assign(var.mpi_broadcast(0))
        if frozen:
            var.stop_grad()
    jt.sync_all()


class _SkipSampler:
    """The index order of ``base`` without its first ``skip`` entries (resume inside an epoch)."""

    def __init__(self, base, skip: int):
        self.base, self.skip = base, int(skip)

    def set_epoch(self, epoch):
        if hasattr(self.base, "set_epoch"):
            self.base.set_epoch(epoch)

    def __iter__(self):
        return iter(list(self.base)[self.skip:])

    def __len__(self):
        return max(len(self.base) - self.skip, 0)


class Trainer:
    """Epoch-based trainer.

    Args:
        model: ``jittor.nn.Module``; ``model(img, img_metas, **targets)`` returns a dict of losses in
            training mode.
        loader: a :class:`~unidetector.data.loader.DetectionLoader` (or any Jittor ``Dataset`` with
            ``batch_size``, ``set_epoch`` and ``sampler`` whose order depends on (seed, epoch)).
        optimizer: :class:`~unidetector.engine.optim.SGD`.
        lr_schedule: :class:`~unidetector.engine.schedule.LrSchedule`.
        work_dir: checkpoints and ``log.jsonl`` go here.
        max_epochs: epochs to train.
        grad_clip: ``dict(max_norm=35, norm_type=2)`` or None.
        accumulate_steps: batches per optimizer step.
        amp: mixed precision (see :mod:`unidetector.engine.amp`); ``loss_scale`` 'dynamic' or a number.
        seed: seeds the per-iteration RNG reseeding (the data order is seeded by the loader).
        checkpoint_interval: epochs between ``epoch_<e>.pkl`` files (0 = only the last epoch).
        checkpoint_iter_interval: iterations between ``latest.pkl`` refreshes (0 = off).
        max_keep_ckpts: keep only the newest N epoch checkpoints (-1 = all).
        log_interval: iterations between log lines.
        config_text: stored in each checkpoint's meta.
        evaluate_fn: ``f(model) -> dict`` run on rank 0 every ``eval_interval`` epochs (None = never).
        progress: show the tqdm bar (rank 0 only).
        meta: extra entries for the checkpoint meta (e.g. ``CLASSES``).
    """

    def __init__(self, model, loader, optimizer, lr_schedule, work_dir, max_epochs, *, grad_clip=None,
                 accumulate_steps=1, amp=False, loss_scale="dynamic", seed=0, checkpoint_interval=1,
                 checkpoint_iter_interval=0, max_keep_ckpts=-1, log_interval=50, config_text="",
                 evaluate_fn=None, eval_interval=1, progress=True, meta=None):
        if accumulate_steps < 1:
            raise ValueError(f"accumulate_steps must be >= 1, got {accumulate_steps}")
        self.model = model
        self.loader = loader
        self.optimizer = optimizer
        self.lr_schedule = lr_schedule
        self.work_dir = Path(work_dir)
        self.max_epochs = int(max_epochs)
        self.grad_clip = dict(grad_clip) if grad_clip else None
        self.accumulate_steps = int(accumulate_steps)
        self.amp = bool(amp)
        self.scaler = LossScaler(loss_scale) if amp else None
        self.amp_compute = enable_amp() if amp else None  # "float16" (GPU), "bfloat16" (CPU convolutions) or None
        channels_last.train_dtype()  # a wrong UNIDET_TRAIN_DTYPE stops here, before the first iteration
        self.seed = int(seed)
        self.checkpoint_interval = int(checkpoint_interval)
        self.checkpoint_iter_interval = int(checkpoint_iter_interval or 0)
        self.max_keep_ckpts = int(max_keep_ckpts)
        self.log_interval = max(int(log_interval), 1)
        self.config_text = config_text
        self.evaluate_fn = evaluate_fn
        self.eval_interval = int(eval_interval)
        self.progress = progress
        self.meta = dict(meta or {})
        self.rank, self.world_size = dist_info()
        self.epoch = 0          # epochs fully done
        self.iter = 0           # optimizer steps done
        self.inner_iter = 0     # optimizer steps done in epoch ``self.epoch``
        self.last_checkpoint = None
        self._jt_seed = self.seed
        self.log_path = self.work_dir / "log.jsonl"
        if self.rank == 0:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            ckpt_io.remove_orphan_temp_files(self.work_dir, log=self._print)
        if self.world_size > 1:
            broadcast_model(self.model)

    # ------------------------------------------------------------------ sizes
    @property
    def num_batches(self) -> int:
        """Batches per epoch (global batches; all ranks together)."""
        bs = self.loader.batch_size
        sampler = getattr(self.loader, "sampler", None)
        if isinstance(sampler, _SkipSampler):
            sampler = sampler.base
        n = len(sampler) if sampler is not None else self.loader.total_len
        return n // bs if getattr(self.loader, "drop_last", False) else math.ceil(n / bs)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.num_batches / self.accumulate_steps)

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_state(self) -> dict:
        return {
            "meta": {"epoch": self.epoch, "iter": self.iter, "inner_iter": self.inner_iter,
                     "config": self.config_text, "seed": self.seed, "world_size": self.world_size,
                     "accumulate_steps": self.accumulate_steps, "batch_size": self.loader.batch_size,
                     "jittor_version": jt.__version__, "time": ckpt_io.now_text(), **self.meta},
            "state_dict": ckpt_io.model_state_numpy(self.model),
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": self.lr_schedule.state_dict(),
            "loss_scaler": self.scaler.state_dict() if self.scaler else None,
            "rng": ckpt_io.rng_state(self._jt_seed),
        }

    def save_checkpoint(self, epoch_file: bool) -> Path | None:
        """Rank 0: ``epoch_<e>.pkl`` (+ ``latest.pkl`` link) or, mid-epoch, ``latest.pkl`` alone.

        A failed write (full disk, permissions) raises :class:`CheckpointSaveError` naming the file
        and the last good checkpoint, which the atomic write left intact.
        """
        if self.rank != 0:
            return None
        try:
            return self._save_checkpoint(epoch_file)
        except OSError as e:
            last = (f"the last good checkpoint is {self.last_checkpoint}" if self.last_checkpoint else
                    "no checkpoint of this run was written yet")
            raise CheckpointSaveError(f"cannot write a checkpoint into {self.work_dir} at epoch {self.epoch}, "
                                      f"iteration {self.iter}: {e.strerror or e} ({e.filename or self.work_dir}); "
                                      f"{last} (intact; resume with --resume)") from None

    def _save_checkpoint(self, epoch_file: bool) -> Path:
        state = self.checkpoint_state()
        latest = self.work_dir / "latest.pkl"
        if epoch_file:
            path = ckpt_io.atomic_save(state, self.work_dir / f"epoch_{self.epoch}.pkl")
            tmp = self.work_dir / f".latest.pkl.link-{os.getpid()}"
            try:  # atomic symlink swap; fall back to a full atomic copy
                if tmp.is_symlink() or tmp.exists():
                    tmp.unlink()
                tmp.symlink_to(path.name)
                os.replace(tmp, latest)
            except OSError:
                ckpt_io.atomic_save(state, latest)
            self._prune_epoch_checkpoints()
        else:
            path = ckpt_io.atomic_save(state, latest)
        self.last_checkpoint = path
        return path

    def _prune_epoch_checkpoints(self):
        if self.max_keep_ckpts <= 0:
            return
        for e in range(self.epoch - self.max_keep_ckpts, 0, -1):
            p = self.work_dir / f"epoch_{e}.pkl"
            if not p.exists():
                break
            p.unlink()

    def resume(self, path) -> dict:
        """Restore model, optimizer, loss scale, counters and RNG states from a checkpoint file."""
        from ..convert.state_dict import StateDictError, load_state_dict
        from .optim import OptimizerConfigError

        ckpt = ckpt_io.load_checkpoint_file(path)
        meta = ckpt["meta"]
        if meta.get("inner_iter", 0) and meta.get("accumulate_steps", 1) != self.accumulate_steps:
            raise ValueError(f"{path} was written mid-epoch with accumulate_steps={meta.get('accumulate_steps')}; "
                             f"resume with the same value (got {self.accumulate_steps})")
        try:
            load_state_dict(self.model, ckpt["state_dict"], strict=True)
        except StateDictError as e:
            raise StateDictError(f"--resume {path}: the checkpoint does not fit the model of this config:\n{e}",
                                 e.report) from None
        self._report_changed_lr(path, ckpt["optimizer"])
        try:
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except ValueError as e:
            raise OptimizerConfigError(f"--resume {path}: {e}") from None
        if self.scaler and ckpt.get("loss_scaler"):
            self.scaler.load_state_dict(ckpt["loss_scaler"])
        self.epoch, self.iter, self.inner_iter = int(meta["epoch"]), int(meta["iter"]), int(meta["inner_iter"])
        ckpt_io.restore_rng_state(ckpt["rng"])
        self._jt_seed = int(ckpt["rng"]["jittor_seed"])
        self.last_checkpoint = Path(path)
        self._print(f"resumed from {path}: epoch {self.epoch}, iteration {self.iter} "
                    f"({self.inner_iter} steps into epoch {self.epoch + 1})")
        return meta

    def _report_changed_lr(self, path, saved_optimizer: dict) -> None:
        """Say which lr wins when the config's base lr differs from the resumed checkpoint's (as mmcv: the
        checkpoint's)."""
        saved = [g.get("initial_lr", g.get("lr")) for g in saved_optimizer.get("param_groups", [])]
        now = [g.get("initial_lr", g.get("lr")) for g in self.optimizer.param_groups]
        differs = [a is not None and b is not None and abs(a - b) > 1e-12 * max(abs(a), abs(b))
                   for a, b in zip(saved, now)]
        if saved and len(saved) == len(now) and any(differs):
            self._print(f"note: the config's optimizer lr ({now[0]:g}) differs from the one in {path} ({saved[0]:g}); "
                        "resuming continues the checkpoint's schedule, so the checkpoint's value wins (as in mmcv). "
                        "To train with the new lr, start a new run with load_from=" + str(path))

    # ------------------------------------------------------------------ logging
    def _print(self, msg: str):
        if self.rank == 0:
            from tqdm import tqdm

            tqdm.write(msg)

    def _log_json(self, record: dict):
        if self.rank == 0:
            with open(self.log_path, "a") as f:
                f.write(json.dumps(record) + "\n")

    # ------------------------------------------------------------------ one iteration
    def _seed_iteration(self):
        s = int(np.random.SeedSequence([self.seed, self.iter, self.rank]).generate_state(1)[0])
        random.seed(s)
        np.random.seed(s)
        jt.set_seed(s)
        self._jt_seed = s

    def _forward_backward(self, batch, scale: float):
        targets = {k: batch[k] for k in TARGET_KEYS if k in batch}
        compute = self.amp_compute if self.amp_compute == "bfloat16" else channels_last.TRAIN_DTYPE
        with channels_last.training_dtype(compute):
            losses = self.model(batch["img"], batch["img_metas"], **targets)
            if not isinstance(losses, dict):
                raise TypeError(f"in training mode the model must return a dict of losses, got {type(losses).__name__}")
            loss, log_vars = parse_losses(losses)
            self.optimizer.backward(loss * scale)
        # Execute now: Jittor's accumulation (``grad.update(new + grad)``) on a still-lazy gradient gives
        # wrong sums when several backward passes are fused into one execution.
        jt.sync(list(log_vars.values()) + [g for _, _, g in self.optimizer.grads()])
        return log_vars

    def _fetch_log_vars(self, micro_logs: list) -> dict:
        names = list(micro_logs[0])
        mean = {k: sum(m[k] for m in micro_logs) / len(micro_logs) for k in names}
        if self.world_size > 1:
            mean = {k: v.mpi_all_reduce("mean") for k, v in mean.items()}
        jt.sync(list(mean.values()) + [g for _, _, g in self.optimizer.grads()])
        return {k: float(v.item()) for k, v in mean.items()}

    def train_step(self, batches) -> dict:
        """One optimizer step over ``batches`` (a list of K loader batches). Returns the log values."""
        n = len(batches)
        scale = (self.scaler.scale if self.scaler else 1.0) / n
        micro = [self._forward_backward(b, scale) for b in batches]
        values = self._fetch_log_vars(micro)
        bad = {k: v for k, v in values.items() if not math.isfinite(v)}
        if bad:
            where = self.last_checkpoint or "none written yet"
            raise NonFiniteLossError(
                f"non-finite loss at iteration {self.iter + 1} (epoch {self.epoch + 1}, step "
                f"{self.inner_iter + 1}/{self.steps_per_epoch}): "
                + ", ".join(f"{k}={v}" for k, v in values.items())
                + f". Last good checkpoint: {where}")
        step_ok = True
        if self.scaler:
            step_ok = self.scaler.unscale_(self.optimizer)
            self.scaler.update(not step_ok)
            values["loss_scale"] = self.scaler.scale
        if step_ok and self.grad_clip:
            values["grad_norm"] = clip_grad_norm(self.optimizer, self.grad_clip.get("max_norm"),
                                                 self.grad_clip.get("norm_type", 2))
        if step_ok:
            self.optimizer.step()
        else:
            self.optimizer.zero_grad()
            self._print(f"iteration {self.iter + 1}: gradient overflow, step skipped, "
                        f"loss scale -> {self.scaler.scale}")
        return values

    # ------------------------------------------------------------------ the loop
    def train(self):
        from tqdm import tqdm

        K = self.accumulate_steps
        bs = self.loader.batch_size
        base_sampler = getattr(self.loader, "sampler", None)
        self._run_start = (time.time(), self.iter)  # for the ETA: this run's pace, resumed iterations excluded
        self._print(f"training: {self.max_epochs} epochs x {self.steps_per_epoch} iterations "
                    f"(global batch {bs} x {K} accumulated, {self.world_size} process(es)), work_dir {self.work_dir}")
        while self.epoch < self.max_epochs:
            epoch = self.epoch
            self.model.train()
            self.loader.set_epoch(epoch)
            steps, n_batches = self.steps_per_epoch, self.num_batches  # before any skipping
            skip_batches = self.inner_iter * K
            if skip_batches:
                order = base_sampler if base_sampler is not None else range(self.loader.total_len)
                self.loader.sampler = _SkipSampler(order, skip_batches * bs)
            # disable=None: a bar on a terminal only; logs and CI get the "Epoch [e][i/n] ... eta" lines
            bar = tqdm(total=steps, initial=self.inner_iter, desc=f"epoch {epoch + 1}/{self.max_epochs}",
                       disable=None if self.progress and self.rank == 0 else True, dynamic_ncols=True, leave=True)
            window, t0 = [], time.time()
            try:
                batches = iter(self.loader)
                for step in range(self.inner_iter, steps):
                    n_micro = min(K, n_batches - step * K)
                    self._seed_iteration()
                    lrs = self.lr_schedule.apply(self.optimizer, epoch, self.iter)
                    group = [next(batches) for _ in range(n_micro)]
                    values = self.train_step(group)
                    self.iter += 1
                    self.inner_iter = step + 1
                    window.append(values)
                    bar.update(1)
                    bar.set_postfix(loss=f"{values['loss']:.4f}", lr=f"{lrs[0]:.2e}")
                    if self.inner_iter % self.log_interval == 0 or self.inner_iter == steps:
                        self._log_window(window, lrs, time.time() - t0, epoch)
                        window, t0 = [], time.time()
                    if (self.checkpoint_iter_interval and self.iter % self.checkpoint_iter_interval == 0
                            and self.inner_iter < steps):
                        self.save_checkpoint(epoch_file=False)
            finally:
                bar.close()
                self.loader.sampler = base_sampler
            self.epoch, self.inner_iter = epoch + 1, 0
            if (self.checkpoint_interval and self.epoch % self.checkpoint_interval == 0) \
                    or self.epoch == self.max_epochs:
                self.save_checkpoint(epoch_file=True)
            elif self.checkpoint_iter_interval:
                self.save_checkpoint(epoch_file=False)
            if self.evaluate_fn is not None and self.eval_interval and self.epoch % self.eval_interval == 0:
                self._evaluate()
        return self

    def _log_window(self, window, lrs, seconds, epoch):
        keys = list(window[-1])
        mean = {k: float(np.mean([w[k] for w in window if k in w])) for k in keys}
        rec = {"mode": "train", "epoch": epoch + 1, "iter": self.inner_iter, "global_iter": self.iter,
               "lr": lrs[0], **mean, "time": seconds / len(window)}
        self._log_json(rec)
        text = ", ".join(f"{k}: {v:.4f}" for k, v in mean.items())
        self._print(f"Epoch [{epoch + 1}][{self.inner_iter}/{self.steps_per_epoch}] lr: {lrs[0]:.3e}, "
                    f"eta: {self._eta()}, {text}, time: {rec['time']:.3f}")

    def _eta(self) -> str:
        """Time left for the whole schedule at this run's mean seconds per iteration, as ``H:MM:SS``."""
        start_time, start_iter = self._run_start
        done = self.iter - start_iter
        left = self.max_epochs * self.steps_per_epoch - self.iter
        return str(datetime.timedelta(seconds=round((time.time() - start_time) / max(done, 1) * left)))

    def _evaluate(self):
        with _rank0_scope() as is_rank0:
            if is_rank0:
                self.model.eval()
                metrics = self.evaluate_fn(self.model) or {}
                rec = {"mode": "val", "epoch": self.epoch, "iter": self.iter}
                rec.update({k: (float(v) if isinstance(v, (int, float, np.floating)) else str(v))
                            for k, v in metrics.items()})
                self._log_json(rec)
                self._print("Epoch(val) [{}] ".format(self.epoch)
                            + ", ".join(f"{k}: {v}" for k, v in rec.items() if k not in ("mode", "epoch", "iter")))
        self.model.train()


class _rank0_scope:
    """Run a block on rank 0 only, with MPI switched off inside it (Jittor ``single_process_scope``)."""

    def __enter__(self):
        if not jt.in_mpi:
            self._ctx = None
            return True
        self._ctx = getattr(jt, "__single_process_scope")(rank=0)
        return self._ctx.__enter__()

    def __exit__(self, *exc):
        if self._ctx is not None:
            self._ctx.__exit__(*exc)
        return False
