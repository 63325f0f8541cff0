"""Index orders for training: mmdet ``GroupSampler`` (aspect-ratio groups), seedable per epoch."""
from __future__ import annotations

import numpy as np


class GroupSampler:
    """mmdet ``GroupSampler``: every consecutive chunk of ``samples_per_gpu`` indices shares one
    aspect-ratio group (``flag``: 1 if w / h > 1). Each group is shuffled and padded (with random
    repeats of its own indices) to a multiple of the chunk size, then the chunks are shuffled.

    ``samples_per_gpu`` here is the **global** batch (Jittor splits each global batch over MPI ranks).
    The order depends only on ``(seed, epoch)``, so every rank and worker computes the same list; call
    :meth:`set_epoch` for a new order each epoch (Jittor's own shuffle RNG repeats every run).
    """

    def __init__(self, flag, samples_per_gpu=1, seed=0, shuffle=True):
        self.flag = np.asarray(flag).astype(np.int64)
        self.samples_per_gpu = int(samples_per_gpu)
        self.seed = int(seed)
        self.shuffle = shuffle
        self.epoch = 0
        self.group_sizes = np.bincount(self.flag) if len(self.flag) else np.zeros(0, np.int64)
        self.num_samples = int(sum(int(np.ceil(s / self.samples_per_gpu)) * self.samples_per_gpu
                                   for s in self.group_sizes))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self):
        return self.num_samples

    def indices(self) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.epoch])
        bs = self.samples_per_gpu
        chunks = []
        for g, size in enumerate(self.group_sizes):
            if size == 0:
                continue
            idx = np.flatnonzero(self.flag == g)
            if self.shuffle:
                idx = rng.permutation(idx)
            extra = int(np.ceil(size / bs)) * bs - size
            if extra:
                idx = np.concatenate([idx, rng.choice(idx, extra)])
            chunks.append(idx.reshape(-1, bs))
        if not chunks:
            return np.zeros(0, np.int64)
        chunks = np.concatenate(chunks)
        if self.shuffle:
            chunks = chunks[rng.permutation(len(chunks))]
        return chunks.reshape(-1).astype(np.int64)

    def __iter__(self):
        return iter(self.indices().tolist())
