"""Datasets: the built-in procedural scenes, the NYUv2-layout reader, partial-label masks, validation split."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from torch.utils.data import Dataset, Subset

from ..tasks import IMAGE_LEVEL_TASKS, TaskSpec
from . import registry
from .folder import MultiTaskFolder
from .generate import (
    add_image_labels,
    dataset_is_complete,
    generate_dataset,
    has_image_labels,
    missing_image_labels,
)
from .masks import check_every_task_labelled, label_mask, make_mask
from .pseudo_labels import pseudo_entries, with_pseudo_labels
from .scenes import NUM_CLASSES, render_scene
from .sources import MAIN_SOURCE, SourceMixture, TrainingSource, build_training_sources, ensure_sources

if TYPE_CHECKING:
    from ..config import ExperimentConfig

__all__ = ["MAIN_SOURCE", "MultiTaskFolder", "SourceMixture", "Splits", "TrainingSource", "add_image_labels",
           "build_datasets", "build_splits", "build_training_sources", "dataset_is_complete", "ensure_dataset",
           "ensure_sources", "generate_dataset", "has_image_labels", "label_mask", "make_mask", "missing_image_labels",
           "render_scene", "scene_size_from_root", "validation_ids", "NUM_CLASSES"]

DEFAULT_SCENES = {"n_train": 2000, "n_val": 500, "height": 64, "width": 80}
_SIZE_IN_NAME = re.compile(r"scenes-(\d+)x(\d+)$")


def scene_size_from_root(root: str | Path) -> dict[str, int]:
    """``{"height": H, "width": W}`` from a root named ``scenes-<H>x<W>`` (e.g. data/scenes-32x40), else {}.

    Why: a sweep or notebook that names ``data_root: data/scenes-32x40`` should get 32x40 scenes generated on a
    fresh clone, not the 64x80 default under a misleading name.
    """
    m = _SIZE_IN_NAME.search(Path(root).name)
    return {"height": int(m.group(1)), "width": int(m.group(2))} if m else {}


def ensure_dataset(root: str | Path = "data/scenes-64x80", tasks: Sequence[str] = (), image_labels: bool = False,
                   progress: bool = True, **kwargs) -> Path:
    """Generate the built-in scenes at ``root`` unless a complete copy is already there.

    A copy generated before image-level labels existed, or before some of them did (an older labels version in
    meta.json, e.g. without camera_view), is extended in place (``add_image_labels``: atomic, the dense files
    untouched) when ``image_labels`` is set or ``tasks`` names an image-level task, and says which labels it adds.
    A root named ``scenes-<H>x<W>`` is generated at that size unless ``height``/``width`` are given.
    """
    root = Path(root)
    if not dataset_is_complete(root):
        given = {k: v for k, v in kwargs.items() if not (k in ("height", "width") and v is None)}
        return generate_dataset(root, progress=progress, **{**DEFAULT_SCENES, **scene_size_from_root(root), **given})
    wanted = image_labels or any(t in IMAGE_LEVEL_TASKS for t in tasks)
    if wanted and not has_image_labels(root):
        print(f"{root}: adding the image-level labels {missing_image_labels(root)} in place (the dense files stay "
              "as they are)")
        add_image_labels(root, progress=progress)
    return root


@dataclass
class Splits:
    """What a run reads: the images it trains on, its validation split (or None), the test (eval) split, and
    the [N_train_split, T] label table indexed by the items' ``index`` (positions in the whole training split)."""

    tasks: list[TaskSpec]
    train: Dataset
    val: Dataset | None
    test: Dataset
    labelled: np.ndarray            # [N, T] over the whole training split, validation rows included
    train_ids: np.ndarray           # [N - k] positions trained on, sorted
    val_ids: np.ndarray             # [k] positions held out, sorted
    # [N, T] bool: the entries of ``labelled`` that are pseudo-labels (config pseudo_labels), not true labels
    pseudo: np.ndarray | None = None


# salt of the validation draw, so that val_seed=s and mask_seed=s draw unrelated permutations
_VAL_SALT = 0x5EED_7A1


def validation_ids(n: int, fraction: float, val_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train ids, validation ids) of a training split of ``n`` images, both sorted.

    The validation split is round(fraction·n) images drawn without replacement from a generator seeded by
    ``val_seed`` alone: the same for every training seed and method of an ablation, so all of them select on
    the same images and train on the same others.
    """
    k = round(fraction * n)
    if fraction > 0 and not 1 <= k < n:
        raise ValueError(f"val_fraction={fraction!r} of {n} training images holds out {k}: it must leave at least "
                         "one image for validation and one for training")
    order = np.random.default_rng([_VAL_SALT, val_seed]).permutation(n)
    return np.sort(order[k:]), np.sort(order[:k])


def build_splits(config: ExperimentConfig) -> Splits:
    """Tasks, the train / validation / test splits and the label table of the config.

    Dispatches on ``config.dataset`` through ``registry.REGISTRY`` (scenes, nyuv2, cityscapes7/19,
    pascal_context). With ``val_fraction`` > 0 a seeded part of the *training* images (after
    ``train_samples``) is held out as a validation split: never trained on, disjoint from the test split (a
    different split on disk), and used with its full ground truth, as a labelled validation set — the label
    mask of those images is irrelevant. The mask itself is drawn over the whole training split as without a
    validation split, so every row of a trained image keeps its labels.

    With ``pseudo_labels`` (``data/pseudo_labels.py``) the trained images get their pseudo-labels at load time and
    the table marks those entries as labelled; ``pseudo`` says which they are (validation images keep their
    ground truth and no pseudo-label).
    """
    tasks, train_set, test_set, table = registry.build(config)
    n = len(train_set)
    train_ids, val_ids = (validation_ids(n, config.val_fraction, config.val_seed) if config.val_fraction
                          else (np.arange(n), np.arange(0)))
    if config.val_fraction:
        check_every_task_labelled(table[train_ids], list(config.tasks),
                                  f"{config.label_setting} with val_fraction={config.val_fraction}")
    pseudo = pseudo_entries(config.pseudo_labels, table, list(config.tasks), train_ids)
    trained = with_pseudo_labels(config.pseudo_labels, train_set, pseudo, list(config.tasks), config.dataset,
                                 config.data_root)
    table = np.where(pseudo, np.ones_like(table), table)
    if not config.val_fraction:
        return Splits(tasks, trained, None, test_set, table, train_ids, val_ids, pseudo)
    return Splits(tasks, Subset(trained, train_ids.tolist()), Subset(train_set, val_ids.tolist()), test_set,
                  table, train_ids, val_ids, pseudo)


def build_datasets(config: ExperimentConfig) -> tuple[list[TaskSpec], Dataset, Dataset, np.ndarray]:
    """Tasks, the split trained on, the eval (test) split and the [N_train, T] label table (``build_splits``
    without the validation split)."""
    s = build_splits(config)
    return s.tasks, s.train, s.test, s.labelled
