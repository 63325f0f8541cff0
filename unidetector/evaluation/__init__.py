"""Evaluation: COCO AP (pycocotools), LVIS AP incl. APr/APc/APf (faster-coco-eval, LVIS mode),
class-agnostic proposal recall AR@k, result-format conversion, and a paired bootstrap of LVIS AP over test
images."""
from .bootstrap import bootstrap_lvis, true_positives
from .coco import coco_bbox_eval
from .lvis import lvis_bbox_eval
from .recall import eval_recalls, proposal_recall_report
from .results import coco_json_to_results, load_results, results_to_coco_json, save_results

__all__ = ["coco_bbox_eval", "lvis_bbox_eval", "bootstrap_lvis", "true_positives", "eval_recalls",
           "proposal_recall_report", "results_to_coco_json", "coco_json_to_results", "load_results", "save_results"]
