"""Concatenation of detection datasets (mmdet ``ConcatDataset``), keeping each image's ``dataset_id``."""
from __future__ import annotations

import bisect

import numpy as np

from ..registry import DATASETS, build


@DATASETS.register_module()
class ConcatDataset:
    """Images of several datasets in sequence. A member whose ``dataset_id`` is ``None`` gets its
    position in the list; ids given in the configs (official: COCO 0, O365 1, OID 2) are kept. Each
    image's ``img_metas['dataset_id']`` comes from the member it belongs to. ``flag`` (aspect-ratio
    group) is the concatenation of the members' flags, so :class:`GroupSampler` works across datasets."""

    def __init__(self, datasets, separate_eval=True):
        built = [build(d, DATASETS, key_path=f"datasets[{i}]") if isinstance(d, dict) else d
                 for i, d in enumerate(datasets)]
        if not built:
            raise ValueError("ConcatDataset needs at least one dataset")
        for i, ds in enumerate(built):
            if getattr(ds, "dataset_id", None) is None:
                ds.dataset_id = i
        self.datasets = built
        self.separate_eval = separate_eval
        self.CLASSES = built[0].CLASSES
        self.cumulative_sizes = list(np.cumsum([len(d) for d in built]))
        self.flag = np.concatenate([getattr(d, "flag", np.zeros(len(d), np.uint8)) for d in built])

    def __len__(self):
        return int(self.cumulative_sizes[-1]) if self.cumulative_sizes else 0

    def locate(self, idx: int) -> tuple:
        """(dataset index, sample index inside it) of global index ``idx``."""
        if idx < 0:
            idx += len(self)
        if not 0 <= idx < len(self):
            raise IndexError(f"index {idx} out of range for ConcatDataset of length {len(self)}")
        d = bisect.bisect_right(self.cumulative_sizes, idx)
        start = self.cumulative_sizes[d - 1] if d > 0 else 0
        return d, int(idx - start)

    def __getitem__(self, idx):
        d, i = self.locate(idx)
        return self.datasets[d][i]

    def get_ann_info(self, idx):
        d, i = self.locate(idx)
        return self.datasets[d].get_ann_info(i)

    def dataset_ids(self) -> np.ndarray:
        """Per image dataset_id, in concatenated order."""
        return np.concatenate([np.full(len(d), d.dataset_id, dtype=np.int64) for d in self.datasets])

    def evaluate(self, results, **kwargs):
        """Evaluate each member on its slice of ``results``; keys are prefixed ``<dataset_id>_``."""
        if len(results) != len(self):
            raise ValueError(f"{len(results)} results for a ConcatDataset of {len(self)} images")
        out, start = {}, 0
        for ds, end in zip(self.datasets, self.cumulative_sizes):
            for k, v in ds.evaluate(results[start:end], **kwargs).items():
                out[f"{ds.dataset_id}_{k}"] = v
            start = int(end)
        return out
