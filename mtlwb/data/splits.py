"""A run's splits: the images it trains on, its held-out validation images and the test split, with the label
table (``build_splits``), read from a ``DataRequest``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch.utils.data import Dataset, Subset

from ..tasks import TaskSpec
from . import registry
from .masks import check_every_task_labelled
from .pseudo_labels import pseudo_entries, with_pseudo_labels
from .request import DataRequest


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
    # [N, T] bool: the entries of ``labelled`` that are pseudo-labels (pseudo_labels), not true labels
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


def build_splits(request: DataRequest) -> Splits:
    """Tasks, the train / validation / test splits and the label table of the request.

    Dispatches on ``request.dataset`` through ``registry.REGISTRY`` (scenes, nyuv2, cityscapes7/19,
    pascal_context). With ``val_fraction`` > 0 a seeded part of the *training* images (after
    ``train_samples``) is held out as a validation split: never trained on, disjoint from the test split (a
    different split on disk), and used with its full ground truth, as a labelled validation set — the label
    mask of those images is irrelevant. The mask itself is drawn over the whole training split as without a
    validation split, so every row of a trained image keeps its labels.

    With ``pseudo_labels`` (``data/pseudo_labels.py``) the trained images get their pseudo-labels at load time and
    the table marks those entries as labelled; ``pseudo`` says which they are (validation images keep their
    ground truth and no pseudo-label).
    """
    tasks, train_set, test_set, table = registry.build(request)
    n = len(train_set)
    train_ids, val_ids = (validation_ids(n, request.val_fraction, request.val_seed) if request.val_fraction
                          else (np.arange(n), np.arange(0)))
    if request.val_fraction:
        check_every_task_labelled(table[train_ids], list(request.tasks),
                                  f"{request.label_setting} with val_fraction={request.val_fraction}")
    pseudo = pseudo_entries(request.pseudo_labels, table, list(request.tasks), train_ids)
    trained = with_pseudo_labels(request.pseudo_labels, train_set, pseudo, list(request.tasks), request.dataset,
                                 request.data_root)
    table = np.where(pseudo, np.ones_like(table), table)
    if not request.val_fraction:
        return Splits(tasks, trained, None, test_set, table, train_ids, val_ids, pseudo)
    return Splits(tasks, Subset(trained, train_ids.tolist()), Subset(train_set, val_ids.tolist()), test_set,
                  table, train_ids, val_ids, pseudo)


def build_datasets(request: DataRequest) -> tuple[list[TaskSpec], Dataset, Dataset, np.ndarray]:
    """Tasks, the split trained on, the eval (test) split and the [N_train, T] label table (``build_splits``
    without the validation split)."""
    s = build_splits(request)
    return s.tasks, s.train, s.test, s.labelled
