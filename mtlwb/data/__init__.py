"""Datasets: the built-in procedural scenes, the NYUv2-layout reader, partial-label masks."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from torch.utils.data import Dataset

from ..tasks import TaskSpec
from . import registry
from .folder import MultiTaskFolder
from .generate import dataset_is_complete, generate_dataset
from .masks import label_mask, make_mask
from .scenes import NUM_CLASSES, render_scene

if TYPE_CHECKING:
    from ..config import ExperimentConfig

__all__ = ["MultiTaskFolder", "build_datasets", "dataset_is_complete", "ensure_dataset", "generate_dataset",
           "label_mask", "make_mask", "render_scene", "NUM_CLASSES"]

DEFAULT_SCENES = {"n_train": 2000, "n_val": 500, "height": 64, "width": 80}


def ensure_dataset(root: str | Path = "data/scenes-64x80", **kwargs) -> Path:
    """Generate the built-in scenes at ``root`` unless a complete copy is already there."""
    root = Path(root)
    if dataset_is_complete(root):
        return root
    return generate_dataset(root, **{**DEFAULT_SCENES, **kwargs})


def build_datasets(config: ExperimentConfig) -> tuple[list[TaskSpec], Dataset, Dataset, np.ndarray]:
    """Tasks, train and eval splits, and the [N_train, T] label table of the config's setting.

    Dispatches on ``config.dataset`` through ``registry.REGISTRY`` (scenes, nyuv2, cityscapes7/19,
    pascal_context).
    """
    return registry.build(config)
