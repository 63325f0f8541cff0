"""Batching detection data for Jittor: a ``jittor.dataset.Dataset`` around a detection dataset.

* ``collate_detection`` pads images (3, h, w) to the batch max (zeros, bottom/right) into one float32
  (B, 3, H, W) array and keeps everything else per image in lists: ``img_metas`` (dicts, with the
  added ``batch_input_shape``) and targets (``gt_bboxes``, ``gt_labels``, ``gt_bboxes_ignore``,
  ``proposals``).
* :class:`DetectionLoader` iterates batches: ``img`` becomes a ``jt.Var``, targets lists of ``jt.Var``
  (``keep_numpy_targets=True`` keeps numpy), metas stay Python. ``num_workers`` uses Jittor's worker
  processes. Training order = :class:`~unidetector.data.samplers.GroupSampler` (aspect-ratio groups,
  seeded by ``seed`` and the epoch, reseeded at each pass); testing order = dataset order. In training
  the numpy RNG of the transforms is reseeded per image from ``(seed, epoch, index)``, so the
  augmentation does not depend on the number of workers.
* ``batch_size`` is the **global** batch: under MPI (``jt.in_mpi``) Jittor gives each rank its own
  consecutive share of every batch (``ceil(batch_size / world_size)`` images).
"""
from __future__ import annotations

import numpy as np

import jittor as jt
from jittor.dataset import Dataset

from .samplers import GroupSampler

TARGET_KEYS = ("gt_bboxes", "gt_labels", "gt_bboxes_ignore", "proposals")


def collate_detection(samples: list) -> dict:
    """List of pipeline outputs → ``{'img': (B,3,H,W) float32, 'img_metas': [...], key: [...]}``."""
    if not samples:
        raise ValueError("collate_detection: empty batch")
    out = {}
    imgs = [s["img"] for s in samples]
    if any(i.ndim != 3 for i in imgs):
        raise ValueError(f"collate_detection: images must be (C, H, W), got {[i.shape for i in imgs]}")
    c = imgs[0].shape[0]
    h = max(i.shape[1] for i in imgs)
    w = max(i.shape[2] for i in imgs)
    batch = np.zeros((len(imgs), c, h, w), dtype=np.float32)
    for k, im in enumerate(imgs):
        batch[k, :, :im.shape[1], :im.shape[2]] = im
    out["img"] = batch
    metas = []
    for s in samples:
        m = dict(s.get("img_metas", {}))
        m["batch_input_shape"] = (h, w)
        metas.append(m)
    out["img_metas"] = metas
    for key in samples[0]:
        if key not in ("img", "img_metas"):
            out[key] = [s[key] for s in samples]
    return out


class DetectionLoader(Dataset):
    """Batches of a detection dataset (``CocoDataset``, ``ConcatDataset``, ...).

    Args:
        dataset: indexable detection dataset with ``__len__`` (and ``flag`` for grouping).
        batch_size: global batch size (all MPI ranks together).
        shuffle: training order (GroupSampler); ``False`` keeps the dataset order.
        num_workers: Jittor worker processes (0 = load in the main process).
        seed: seed of the shuffling; the order of epoch ``e`` depends only on ``(seed, e)``.
        drop_last: drop the last incomplete batch.
        keep_numpy_targets: leave ``gt_*``/``proposals`` as numpy arrays instead of ``jt.Var``.
    """

    def __init__(self, dataset, batch_size=2, shuffle=True, num_workers=0, seed=0, drop_last=False,
                 keep_numpy_targets=False, group_by_aspect_ratio=True):
        super().__init__(batch_size=batch_size, shuffle=False, drop_last=drop_last, num_workers=num_workers,
                         keep_numpy_array=True)
        self.dataset_ = dataset
        self.keep_numpy_targets = keep_numpy_targets
        self.total_len = len(dataset)
        self.epoch = 0
        self.seed = seed
        if shuffle:
            flag = getattr(dataset, "flag", None) if group_by_aspect_ratio else None
            if flag is None:
                flag = np.zeros(len(dataset), np.uint8)
            self.sampler = GroupSampler(flag, batch_size, seed=seed)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)

    def __getitem__(self, idx):
        if self.sampler is not None:
            # random augmentation (scale, flip) is a function of (seed, epoch, image), whatever the
            # number of workers or ranks, and differs between epochs
            np.random.seed(np.random.SeedSequence([self.seed, self.epoch, int(idx)]).generate_state(1)[0])
        return self.dataset_[int(idx)]

    def collate_batch(self, batch):
        return collate_detection(batch)

    def to_jittor(self, batch):
        batch = dict(batch)
        batch["img"] = jt.array(batch["img"]).stop_grad()
        if not self.keep_numpy_targets:
            for key in TARGET_KEYS:
                if key in batch:
                    batch[key] = [jt.array(np.ascontiguousarray(a)).stop_grad() for a in batch[key]]
        return batch

    def __iter__(self):
        if self.sampler is not None:
            self.sampler.set_epoch(self.epoch)
        if hasattr(self, "workers"):
            # Jittor's persistent workers re-read a refreshed index list unreliably between passes;
            # start fresh ones so each pass uses this epoch's order (and epoch number)
            self.reset()
        yield from super().__iter__()
        self.epoch += 1
