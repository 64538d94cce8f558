"""Pseudo-labels computed from an image's own labels: the geometric oracle of the positive control.

Why: a partial-label method can help an unlabelled task only with the information the labelled ones carry about it.
``pseudo_labels="normals_from_depth"`` (config) gives that information to plain supervision directly: on every
training image whose depth is labelled and whose normals are not, the normal target is computed from the depth label
and the camera (``data/geometry.py``) and the image counts as labelled for normals. Its gain over supervised-only
training is what the depth labels are worth to the normals when nothing has to be learnt — the headroom a cross-task
method could at best reach from them.

The pseudo-label is made when the item is loaded, from the stored (un-augmented) depth, so the training augmentation
crops and flips it as it does a stored normal map. Only the trained split of the main source is wrapped: validation
and test images keep their true normals. The training table marks the pseudo-labelled entries as labelled (what
every method and the supervised loss read); ``pseudo`` says which entries they are, so the run record can keep the
true labelled counts beside the pseudo-labelled ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .folder import CACHE_BYTES
from .geometry import Intrinsics, normals_from_depth
from .registry import REGISTRY, get_dataset

PSEUDO_LABELS = ("none", "normals_from_depth")
# what each kind of pseudo-label reads and writes: (source task, target task)
_TASKS = {"normals_from_depth": ("depth", "normal")}


def check_pseudo_labels(name: str, dataset: str, tasks: Sequence[str]) -> None:
    """One line naming ``pseudo_labels`` when it cannot apply: unknown, a task missing, or no known camera."""
    if name not in PSEUDO_LABELS:
        raise ValueError(f"pseudo_labels={name!r}: allowed {list(PSEUDO_LABELS)}")
    if name == "none":
        return
    missing = [t for t in _TASKS[name] if t not in tasks]
    if missing:
        raise ValueError(f"pseudo_labels={name!r}: needs tasks {list(_TASKS[name])} among tasks={list(tasks)} "
                         f"(missing {missing})")
    if get_dataset(dataset).intrinsics is None:
        known = [n for n, info in REGISTRY.items() if info.intrinsics is not None]
        raise ValueError(f"pseudo_labels={name!r}: dataset {dataset!r} has no known camera intrinsics; "
                         f"available for {known}")


def pseudo_entries(name: str, table: np.ndarray, tasks: Sequence[str], rows: np.ndarray) -> np.ndarray:
    """[N, T] bool: the entries of the label table that get a pseudo-label — among ``rows`` (the positions
    trained on; validation rows never get one), target task unlabelled and source task labelled; all False with
    ``name`` none."""
    out = np.zeros(table.shape, dtype=bool)
    if name != "none":
        source, target = (list(tasks).index(t) for t in _TASKS[name])
        trained = np.zeros(len(table), dtype=bool)
        trained[np.asarray(rows, dtype=int)] = True
        out[:, target] = trained & (table[:, target] == 0) & (table[:, source] > 0)
    return out


class NormalsFromDepth(Dataset):
    """A training split whose items in ``rows`` (by their ``index``) carry normals computed from their depth.

    An item's depth label is the same at every epoch (augmentation comes later, on the batch), so its normals are
    computed once and kept while they fit in ``cache_bytes`` (like the folder reader's item cache): recomputing
    them at every load made the oracle's runs ~60 % slower than plain supervision on the built-in scenes.
    """

    def __init__(self, base: Dataset, rows: np.ndarray, camera: Callable[[int, int], Intrinsics],
                 cache_bytes: int = CACHE_BYTES) -> None:
        self.base, self.rows, self.camera = base, rows, camera   # rows: [N] bool by item index
        self.label_split = getattr(base, "label_split", None)     # the run record's provenance reads it
        self.cache_bytes, self._normals, self._cached_bytes = cache_bytes, {}, 0

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict:
        item = dict(self.base[i])
        index = int(item["index"])
        if self.rows[index]:
            normal = self._normals.get(index)
            if normal is None:
                depth = item["depth"][0]                                           # [H, W]
                normal = normals_from_depth(depth, self.camera(*depth.shape)).to(torch.float32)   # [3, H, W]
                if self._cached_bytes + normal.nbytes <= self.cache_bytes:
                    self._normals[index] = normal
                    self._cached_bytes += normal.nbytes
            item["normal"] = normal
        return item


def with_pseudo_labels(name: str, train_set: Dataset, pseudo: np.ndarray, tasks: Sequence[str],
                       dataset: str, root: str) -> Dataset:
    """``train_set`` with the pseudo-labels of ``pseudo`` ([N, T] bool, ``pseudo_entries``) made at load time; the
    split itself where there are none."""
    if name == "none" or not pseudo.any():
        return train_set
    intrinsics = get_dataset(dataset).intrinsics
    target = list(tasks).index(_TASKS[name][1])
    return NormalsFromDepth(train_set, pseudo[:, target], lambda h, w: intrinsics(root, h, w))
