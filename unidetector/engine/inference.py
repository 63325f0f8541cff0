"""Inference over a dataset (mmdet ``single_gpu_test`` / ``multi_gpu_test``), result dumps, evaluation.

``inference(model, dataset)`` runs the model in test mode over the dataset **in dataset order** and
returns mmdet-format results, one entry per image: a list over classes of ``(n, 5)`` float32 arrays
(detectors) or one ``(n, 5)`` array (proposal networks), in original-image pixels.

Under MPI each rank takes a contiguous slice of the images (with Jittor's MPI data split switched
off inside the loader), writes its part to ``tmpdir/part_<rank>.pkl``, and rank 0 concatenates the
parts in rank order (mmdet ``collect_results_cpu``); other ranks get ``None``.
"""
from __future__ import annotations

import inspect
import os
import pickle
import shutil

import numpy as np

import jittor as jt


class _Subset:
    def __init__(self, dataset, indices):
        self.dataset, self.indices = dataset, list(indices)
        self.flag = None

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        return self.dataset[self.indices[i]]


class _mpi_off:
    """Switch Jittor's MPI data split / collectives off inside a block (every rank keeps running)."""

    def __enter__(self):
        import jittor.compile_extern as ce

        self.state = (jt.in_mpi, jt.mpi.get_state() if jt.mpi else None)
        if jt.in_mpi:
            jt.in_mpi = ce.in_mpi = False
            jt.mpi.set_state(False)
        return self

    def __exit__(self, *exc):
        import jittor.compile_extern as ce

        in_mpi, state = self.state
        jt.in_mpi = ce.in_mpi = in_mpi
        if state is not None:
            jt.mpi.set_state(state)
        return False


def _to_numpy(res):
    if isinstance(res, jt.Var):
        return res.numpy()
    if isinstance(res, (list, tuple)):
        return [_to_numpy(r) for r in res]
    return res


def _test_kwargs(model) -> dict:
    try:
        params = inspect.signature(model.execute).parameters
    except (TypeError, ValueError):
        return {}
    return {"rescale": True} if "rescale" in params else {}


def run_model(model, loader, progress=True, desc="inference") -> list:
    """Results for every image the loader yields, in order."""
    from tqdm import tqdm

    model.eval()
    extra = _test_kwargs(model)
    results = []
    with jt.no_grad():
        for batch in tqdm(loader, total=len(loader), desc=desc, disable=not progress, dynamic_ncols=True):
            kwargs = dict(extra)
            if "proposals" in batch:
                kwargs["proposals"] = batch["proposals"]
            out = model(batch["img"], batch["img_metas"], **kwargs)
            out = _to_numpy(out)
            n = len(batch["img_metas"])
            if not isinstance(out, (list, tuple)) or len(out) != n:
                raise ValueError(f"in test mode the model must return one result per image ({n}), "
                                 f"got {type(out).__name__} of length {len(out) if hasattr(out, '__len__') else '?'}")
            results.extend(out)
    return results


def inference(model, dataset, samples_per_gpu=1, workers_per_gpu=0, progress=True, tmpdir=None) -> list | None:
    """Run ``model`` over ``dataset`` (test mode); results on rank 0 (``None`` on other MPI ranks)."""
    from ..data.loader import DetectionLoader

    rank, world = (int(jt.rank), int(jt.world_size)) if jt.in_mpi else (0, 1)
    n = len(dataset)
    bounds = np.linspace(0, n, world + 1).round().astype(int)
    part = dataset if world == 1 else _Subset(dataset, range(bounds[rank], bounds[rank + 1]))
    with _mpi_off():
        loader = DetectionLoader(part, batch_size=samples_per_gpu, shuffle=False, num_workers=workers_per_gpu,
                                 keep_numpy_targets=False)
        results = run_model(model, loader, progress=progress and rank == 0)
    if world == 1:
        return results
    return collect_results(results, rank, world, tmpdir)


def _barrier():
    jt.array([1.0]).mpi_all_reduce("sum").sync()


def collect_results(part, rank, world, tmpdir=None):
    """Gather per-rank result lists through files (rank 0 returns the concatenation in rank order)."""
    tmpdir = tmpdir or os.path.join(os.getcwd(), ".unidet_dist_test")
    os.makedirs(tmpdir, exist_ok=True)
    with open(os.path.join(tmpdir, f"part_{rank}.pkl"), "wb") as f:
        pickle.dump(part, f, protocol=pickle.HIGHEST_PROTOCOL)
    _barrier()
    out = None
    if rank == 0:
        out = []
        for r in range(world):
            with open(os.path.join(tmpdir, f"part_{r}.pkl"), "rb") as f:
                out.extend(pickle.load(f))
    _barrier()
    if rank == 0:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return out


def dataset_regions(model, dataset, progress: bool = True) -> list:
    """Region embeddings (:class:`~unidetector.models.roi_heads.regions.Regions`) of every image of a test-mode
    ``dataset`` with its proposals: one pass of the network, to be scored against any vocabulary."""
    from tqdm import tqdm

    from ..data.loader import DetectionLoader

    model.eval()
    loader = DetectionLoader(dataset, batch_size=1, shuffle=False, num_workers=0, keep_numpy_targets=False)
    regions = []
    with jt.no_grad():
        for batch in tqdm(loader, total=len(loader), desc="region embeddings", disable=None if progress else True,
                          dynamic_ncols=True):
            regions += model.region_embeddings(batch["img"], batch["img_metas"], batch.get("proposals"))
    return regions


def vocabulary_results(model, regions: list, embeddings, calibration=None) -> list:
    """Per-image mmdet results (lists over classes of ``(n, 5)`` arrays) of cached ``regions`` scored with
    ``embeddings`` ``(C, D)`` and optional ``(C,)`` calibration weights."""
    from ..ops import bbox2result

    embeddings = np.asarray(embeddings, np.float32)
    with jt.no_grad():
        return [bbox2result(*model.roi_head.score_regions(r, embeddings, calibration), len(embeddings))
                for r in regions]


def dump_results(results, path) -> None:
    """``.pkl`` (mmdet list, what ``--out`` writes) or ``.json`` (COCO result list)."""
    from ..evaluation.results import save_results

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_results(results, str(path))


def format_results_json(dataset, results, path) -> int:
    """COCO/LVIS result json of ``results`` via the dataset's ``results2json``; returns #detections."""
    import json

    dets = dataset.results2json(results)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(dets, f)
    return len(dets)
