"""Checkpoints: atomic pickle files (``.pkl``) readable without Jittor.

Format (a plain ``dict``, pickled; every array is numpy)::

    {
      'meta': {'epoch': int,        # epochs fully done
               'iter': int,         # global iterations (optimizer steps) done
               'inner_iter': int,   # steps done inside epoch ``epoch`` (0 at an epoch boundary)
               'config': str,       # the config text (``cfg.pretty_text``)
               'seed': int, 'world_size': int, 'jittor_version': str, 'time': str,
               'CLASSES': [...] (when the dataset has them)},
      'state_dict': {name: np.ndarray},          # model.state_dict(), official names
      'optimizer': SGD.state_dict(),             # lrs + momentum buffers by parameter name
      'lr_scheduler': LrSchedule.state_dict(),   # config only (lr is a function of epoch/iter)
      'loss_scaler': LossScaler.state_dict() | None,
      'rng': {'python': random.getstate(), 'numpy': np.random.get_state(), 'jittor_seed': int},
    }

:func:`atomic_save` writes ``path.tmp-<pid>``, flushes + fsyncs, then ``os.replace`` → a reader (or a
run killed at any moment) sees either the old complete file or the new complete file, never a part.
"""
from __future__ import annotations

import os
import pickle
import random
import time
from pathlib import Path

import numpy as np


def atomic_save(obj, path) -> Path:
    """Pickle ``obj`` to ``path`` atomically (temp file in the same folder + ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass
    return path


def load_checkpoint_file(path) -> dict:
    """A checkpoint written by :class:`~unidetector.engine.trainer.Trainer` (format above)."""
    from ..convert.checkpoints import CheckpointFileError, read_pickle

    ckpt = read_pickle(path)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointFileError(f"{path}: not a checkpoint of this project (no 'state_dict' key)")
    return ckpt


def remove_orphan_temp_files(folder, log=print) -> list:
    """Delete ``.<name>.tmp-<pid>`` files left by a save that was killed (their process is gone).

    Files of a process that is still alive (another run writing into the same folder) are kept.
    """
    removed = []
    for tmp in Path(folder).glob(".*.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and _process_alive(int(pid)):
            continue
        try:
            tmp.unlink()
            removed.append(tmp)
        except OSError:
            pass
    if removed:
        log(f"removed {len(removed)} incomplete checkpoint file(s) left by a killed save: "
            + ", ".join(p.name for p in removed))
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def model_state_numpy(model) -> dict:
    return {k: (v.numpy() if hasattr(v, "numpy") else np.asarray(v)).copy() for k, v in model.state_dict().items()}


def rng_state(jittor_seed: int) -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "jittor_seed": int(jittor_seed)}


def restore_rng_state(state: dict) -> None:
    import jittor as jt

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    jt.set_seed(int(state["jittor_seed"]))


def now_text() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")
