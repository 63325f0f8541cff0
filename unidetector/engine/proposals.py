"""Stage-1 proposal files (official ``tools/test.py <1ststage cfg> --out rp.pkl``, SPEC §3)."""
from __future__ import annotations

import json


def generate_proposals(cfg, checkpoint, ann_file: str, img_dir: str, out: str, model=None, cat_subsets=None,
                       progress: bool = True, log=print) -> dict:
    """Run the CLN of ``cfg`` over every image of ``ann_file`` and write the official proposal pickle.

    ``data.test`` of ``cfg`` is pointed at ``ann_file``/``img_dir`` in test mode, so the pickle holds one
    float32 ``(n, 5)`` ``[x1, y1, x2, y2, score]`` array per image of the *unfiltered* file, in its image
    order, in original pixels. ``model``: an already built and loaded model (else built from ``cfg`` and
    ``checkpoint``). Returns class-agnostic AR@100/300/1000 (plus ``<subset>_AR@k`` for each
    ``cat_subsets`` entry) when the file has boxes, else ``{}``.
    """
    from ..data import save_proposals
    from ..evaluation import proposal_recall_report
    from .inference import inference
    from .runner import build_dataset, build_model, load_weights

    if model is None:
        model = build_model(cfg)
        load_weights(model, checkpoint, log=log, allow_partial=bool(cfg.get("allow_partial_load")),
                     what="checkpoint", model_cfg=cfg.model)
    test_cfg = dict(cfg.data.test)
    test_cfg.pop("samples_per_gpu", None)
    test_cfg.update(ann_file=ann_file, img_prefix=img_dir, test_mode=True, proposal_file=None)
    dataset = build_dataset(test_cfg, "data.test", test_mode=True, filename=getattr(cfg, "filename", None))
    results = inference(model, dataset, samples_per_gpu=1, workers_per_gpu=int(cfg.data.get("workers_per_gpu", 0)),
                        progress=progress)
    save_proposals(results, out)
    log(f"{out}: proposals of {len(results)} images ({ann_file})")
    with open(ann_file, encoding="utf-8") as f:
        data = json.load(f)
    if not data.get("annotations"):
        return {}
    report = proposal_recall_report(data, [img["id"] for img in data["images"]], results, cat_subsets=cat_subsets)
    log("  " + "  ".join(f"{k}={v:.4f}" for k, v in report.items()))
    return report
