"""Datasets, transforms, proposals and the synthetic open world (numpy only; the Jittor batch loader is
in :mod:`unidetector.data.loader`, imported on demand).

Registered in ``DATASETS``: CocoDataset, Objects365Dataset, OpenImagesDataset, LVISV05Dataset
(alias LVISDataset), LVISV1Dataset, ConcatDataset. Transforms in ``TRANSFORMS``: see
:mod:`unidetector.data.transforms`.
"""
from .coco import (CocoDataset, DatasetError, Objects365Dataset, OpenImagesDataset, check_embedding_rows,
                   select_categories)
from .concat import ConcatDataset
from .lvis import LVISV05Dataset, LVISV1Dataset
from .proposals import ProposalFileError, load_proposals, save_proposals
from .samplers import GroupSampler
from .transforms import Compose, ImageLoadError, rescale_boxes_to_original

__all__ = ["CocoDataset", "Objects365Dataset", "OpenImagesDataset", "LVISV05Dataset", "LVISV1Dataset",
           "ConcatDataset", "GroupSampler", "Compose", "DatasetError", "ProposalFileError", "ImageLoadError",
           "check_embedding_rows", "select_categories", "load_proposals", "save_proposals",
           "rescale_boxes_to_original"]
