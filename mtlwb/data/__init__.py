"""Datasets: the built-in procedural scenes, the NYUv2-layout reader, partial-label masks, validation split.

The data layer reads a ``DataRequest`` (``request.py``), never the experiment config: ``ExperimentConfig`` builds
the request (``config.data_request``).
"""

from __future__ import annotations

from .folder import MultiTaskFolder
from .generate import (
    DEFAULT_SCENES,
    add_image_labels,
    dataset_is_complete,
    ensure_dataset,
    generate_dataset,
    has_image_labels,
    missing_image_labels,
    scene_size_from_root,
)
from .masks import label_mask, make_mask
from .request import DataRequest, SourceSpec
from .scenes import NUM_CLASSES, render_scene
from .sources import MAIN_SOURCE, SourceMixture, TrainingSource, build_training_sources, ensure_sources
from .splits import Splits, build_datasets, build_splits, validation_ids

__all__ = ["DEFAULT_SCENES", "MAIN_SOURCE", "DataRequest", "MultiTaskFolder", "SourceMixture", "SourceSpec",
           "Splits", "TrainingSource", "add_image_labels", "build_datasets", "build_splits", "build_training_sources",
           "dataset_is_complete", "ensure_dataset", "ensure_sources", "generate_dataset", "has_image_labels",
           "label_mask", "make_mask", "missing_image_labels", "render_scene", "scene_size_from_root",
           "validation_ids", "NUM_CLASSES"]
