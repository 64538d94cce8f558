"""Dataset name -> everything needed to load it: classes, tasks, reader, published label settings.

``build(request)`` is what ``build_datasets`` dispatches to, so a new benchmark
is one ``DatasetInfo`` entry here plus its reader.

Published partial-label files (MTPSL's releases, reused by JTR) are looked up
in ``<data_root>/settings/`` under their published names. With
``label_setting='onelabel'`` or ``'randomlabel'`` on a real benchmark, the
published file is used when it is there (its columns are in the paper's task
order and are picked / reordered to the config's ``tasks``); when it is not,
the setting is generated from ``mask_seed`` as for the scenes, with a warning
naming the file to put there, since a generated split is not the papers'.

Which split a run used is returned with the table (``resolve_label_split``) and
kept on the training set as ``train_set.label_split``, so that the run record
says it: a file (path, sha256) or a generator (setting, mask_seed), and whether
it was a fallback from a missing published file (with the reason).
"""

from __future__ import annotations

import hashlib
import pickle
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import Dataset

from ..tasks import IMAGE_LEVEL_TASKS, TaskSpec, make_tasks
from .cityscapes import CityscapesFolder
from .folder import MultiTaskFolder, dataset_num_classes
from .geometry import Intrinsics, scenes_intrinsics
from .id_masks import id_keyed_table, is_id_keyed, read_npy
from .nyud import NYUD, NYUD_CLASSES, NYUD_TASKS
from .nyud import LAYOUT as NYUD_LAYOUT
from .masks import (
    MASK_FILE_SUFFIXES,
    NAMED_SETTINGS,
    check_every_task_labelled,
    check_mask_table,
    file_sha256,
    header_problem,
    label_mask,
    mask_cache_path,
    mask_table,
)
from .pascal import DEFAULT_SIZE, PascalContext

try:
    from numpy._core.multiarray import scalar as _numpy_scalar
except ImportError:  # numpy < 2
    from numpy.core.multiarray import scalar as _numpy_scalar


class SplitRequest(Protocol):
    """What the registry reads to load a dataset and its label table: a ``DataRequest`` (the main source) or a
    ``SourceSpec`` (an extra training source), both in ``data/request.py``. A protocol, so that the registry imports
    neither (the request imports the registry)."""

    dataset: str
    data_root: str
    tasks: list[str]
    label_setting: str
    mask_seed: int
    train_samples: int | None
    eval_samples: int | None


SETTINGS_DIR = "settings"

# loader(root, split, tasks, limit) -> Dataset
Loader = Callable[[Path, str, list[TaskSpec], "int | None"], Dataset]


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int | None                  # semantic classes; None = read from <root>/meta.json (scenes)
    tasks: tuple[str, ...]                   # tasks annotated in this dataset
    default_tasks: tuple[str, ...]           # the papers' task set
    loader: Loader
    mask_files: dict[str, str] = field(default_factory=dict)   # label_setting -> published file name
    mask_tasks: tuple[str, ...] = ()         # column order of the published files
    mask_keys: dict[str, str] = field(default_factory=dict)    # task keys in id-keyed files -> task names
    flip: bool = True                        # horizontal flip in training augmentation
    root_marker: str = "train/image"         # a path under data_root that must exist
    layout: str = ""                         # one line for error messages
    # (root, height, width) -> the camera, where it is known (normals from depth: data/geometry.py); None = unknown
    intrinsics: Callable[[Path, int, int], Intrinsics] | None = None

    def semantic_classes(self, root: str | Path) -> int:
        return self.num_classes if self.num_classes is not None else dataset_num_classes(root, default=13)

    def make_tasks(self, names: list[str], root: str | Path) -> list[TaskSpec]:
        check_tasks(self.name, names)
        return make_tasks(names, self.semantic_classes(root))

    def check_root(self, root: str | Path) -> None:
        if not (Path(root) / self.root_marker).exists():
            raise FileNotFoundError(f"data_root={str(root)!r}: no {self.name} dataset there "
                                    f"(missing {Path(root) / self.root_marker}); expected {self.layout}; "
                                    "see README 'Real benchmarks'")

    def published_mask(self, root: str | Path, setting: str) -> Path | None:
        name = self.mask_files.get(setting)
        return Path(root) / SETTINGS_DIR / name if name else None


def _folder_loader(root: Path, split: str, tasks: list[TaskSpec], limit: int | None) -> Dataset:
    return MultiTaskFolder(root, split, tasks, limit)


def _cityscapes_loader(classes: int) -> Loader:
    def load(root: Path, split: str, tasks: list[TaskSpec], limit: int | None) -> Dataset:
        return CityscapesFolder(root, split, tasks, limit, num_classes=classes)
    return load


def _pascal_loader(root: Path, split: str, tasks: list[TaskSpec], limit: int | None) -> Dataset:
    return PascalContext(root, split, tasks, limit, size=DEFAULT_SIZE)


def _nyud_loader(root: Path, split: str, tasks: list[TaskSpec], limit: int | None) -> Dataset:
    return NYUD(root, split, tasks, limit)


MTAN_LAYOUT = "<root>/{train,val}/{image,label,depth,normal}/<i>.npy"
CITY_LAYOUT = "<root>/{train,val}/{image,label_7,label_19,depth}/<i>.npy"
PASCAL_LAYOUT = "<root>/{JPEGImages,ImageSets/Context,semseg,human_parts,sal_distill,normals_distill,pascal-context}"
PASCAL_MASK_TASKS = ("semantic", "parts", "saliency", "normal", "edge")
PASCAL_MASK_KEYS = {"semseg": "semantic", "human_parts": "parts", "sal": "saliency", "normals": "normal",
                    "edge": "edge"}      # DiffusionMTL's get_task_mapping.ipynb / utils/config.py task order

REGISTRY: dict[str, DatasetInfo] = {
    "scenes": DatasetInfo("scenes", None, ("semantic", "depth", "normal", "edge", *IMAGE_LEVEL_TASKS),
                          ("semantic", "depth", "normal"),
                          _folder_loader, layout=MTAN_LAYOUT + " + meta.json", intrinsics=scenes_intrinsics),
    "nyuv2": DatasetInfo("nyuv2", 13, ("semantic", "depth", "normal"), ("semantic", "depth", "normal"),
                         _folder_loader, {"onelabel": "onelabel.pth", "randomlabel": "randomlabels.pth"},
                         ("semantic", "depth", "normal"), flip=False, layout=MTAN_LAYOUT),
    "cityscapes7": DatasetInfo("cityscapes7", 7, ("semantic", "depth"), ("semantic", "depth"),
                               _cityscapes_loader(7), {"onelabel": "onelabel.pth"}, ("semantic", "depth"),
                               layout=CITY_LAYOUT),
    "cityscapes19": DatasetInfo("cityscapes19", 19, ("semantic", "depth"), ("semantic", "depth"),
                                _cityscapes_loader(19), layout=CITY_LAYOUT),
    "pascal_context": DatasetInfo("pascal_context", 21, PASCAL_MASK_TASKS, PASCAL_MASK_TASKS, _pascal_loader,
                                  {"onelabel": "onelabel.npy", "randomlabel": "randomlabels.npy"},
                                  PASCAL_MASK_TASKS, PASCAL_MASK_KEYS, root_marker="ImageSets/Context",
                                  layout=PASCAL_LAYOUT),
    # NYUD-v2 of MTI-Net / ATRC / DiffusionMTL (40 classes; data/nyud.py); MTPSL's NYUv2 files (DiffusionMTL's
    # ssl_mapping/nyud_low) apply to gt_sets/train.txt in order
    "nyud": DatasetInfo("nyud", NYUD_CLASSES, NYUD_TASKS, ("semantic", "depth", "normal"), _nyud_loader,
                        {"onelabel": "onelabel.pth", "randomlabel": "randomlabels.pth"},
                        ("semantic", "depth", "normal"), root_marker="gt_sets/train.txt", layout=NYUD_LAYOUT),
}
DATASET_NAMES = tuple(REGISTRY)


def get_dataset(name: str) -> DatasetInfo:
    if name not in REGISTRY:
        raise ValueError(f"dataset={name!r}: allowed {list(REGISTRY)}")
    return REGISTRY[name]


def check_tasks(dataset: str, names: list[str]) -> None:
    """Refuse tasks the dataset does not annotate (checked when the config is built)."""
    info = get_dataset(dataset)
    bad = [n for n in names if n not in info.tasks]
    if bad:
        level = [n for n in bad if n in IMAGE_LEVEL_TASKS]
        note = (f" (image-level tasks {level} exist only for the built-in scenes, whose generator computes them "
                "from the scene geometry)") if level else ""
        raise ValueError(f"tasks={list(names)}: {bad} not annotated in dataset {dataset!r}; "
                         f"allowed {list(info.tasks)}{note}")


def published_table(info: DatasetInfo, path: Path, obj: object, n: int, task_names: list[str], exact: bool = True,
                    ids: list[str] | None = None) -> np.ndarray:
    """A published file (``obj``, read from ``path``) -> [n, T] for the config's tasks (columns picked, reordered).

    [N_full, T_paper] tables: ``exact`` — one row per training image; otherwise (a ``train_samples`` prefix of the
    split) the first n rows. Files keyed by image id (PASCAL-Context's, see ``id_masks``) are aligned to ``ids``,
    the training split's image ids.
    """
    mask_tasks = list(info.mask_tasks)
    if is_id_keyed(obj) and "labels_weights" not in obj:
        if ids is None:
            raise ValueError(f"mask file {str(path)!r} is keyed by image id, but dataset {info.name!r} has no ids")
        table = id_keyed_table(obj, ids[:n], mask_tasks, info.mask_keys, str(path), exact)
        check_mask_table(table, table.shape[0], mask_tasks, str(path))
    else:
        table = mask_table(obj, str(path))
        check_mask_table(table, len(table) if table.ndim else 0, mask_tasks, str(path))
        check_every_task_labelled(table, mask_tasks, str(path))
    if table.shape[0] < n or (exact and table.shape[0] != n):
        raise ValueError(f"mask file {str(path)!r}: {table.shape[0]} rows, expected one per training image "
                         f"({n}); is it the file of another dataset?")
    uncovered = [t for t in task_names if t not in info.mask_tasks]
    if uncovered:
        raise ValueError(f"mask file {str(path)!r} has no column for tasks {uncovered} (its columns: "
                         f"{list(info.mask_tasks)}); leave them out of tasks, or use label_setting full / ratio:... / "
                         "a mask file of your own")
    cols = [info.mask_tasks.index(t) for t in task_names]
    table = table[:n, cols]
    check_every_task_labelled(table, task_names, str(path))
    return table


# numpy objects that pickled id-keyed files hold (DiffusionMTL's new_onelabel.pth: keys are numpy str_ scalars);
# the pickled name is numpy 1's, so it is given explicitly for torch's weights-only unpickler
_NUMPY_MASK_GLOBALS = [np.dtype, np.dtypes.StrDType,
                       *((_numpy_scalar, f"numpy.{m}.multiarray.scalar") for m in ("core", "_core"))]


def read_mask_object(path: Path, mask_tasks: list[str]) -> object:
    """The object a mask file holds (array, ``{'labels_weights': ...}`` or an id-keyed dict), read once."""
    try:
        problem = header_problem(path)   # a text file: the unpickler's KeyError would name nothing
        if problem is None:
            if path.suffix == ".npy":
                return read_npy(path)
            with torch.serialization.safe_globals(_NUMPY_MASK_GLOBALS):
                return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, ValueError, RuntimeError, EOFError, pickle.UnpicklingError) as e:
        problem = str(e)
    raise ValueError(f"mask file {str(path)!r}: cannot read ({problem}); expected "
                     f"{{'labels_weights': FloatTensor[N, {len(mask_tasks)}]}} (.pt/.pth), [N, "
                     f"{len(mask_tasks)}] (.npy) with columns {mask_tasks}, or a dict keyed by image id")


def build(request: SplitRequest) -> tuple[list[TaskSpec], Dataset, Dataset, np.ndarray]:
    """Tasks, train and eval splits, and the [N_train, T] label table of the request's setting.

    The table's provenance (``resolve_label_split``) is set as ``train_set.label_split``.
    """
    info = get_dataset(request.dataset)
    root = Path(request.data_root)
    info.check_root(root)
    tasks = info.make_tasks(list(request.tasks), root)
    train_set = info.loader(root, "train", tasks, request.train_samples)
    eval_set = info.loader(root, "val", tasks, request.eval_samples)
    table, source = resolve_label_split(info, request, len(train_set), getattr(train_set, "ids", None))
    train_set.label_split = source
    return tasks, train_set, eval_set, table


def label_table(info: DatasetInfo, request: SplitRequest, n: int, ids: list[str] | None = None) -> np.ndarray:
    return resolve_label_split(info, request, n, ids)[0]


def resolve_label_split(info: DatasetInfo, request: SplitRequest, n: int,
                        ids: list[str] | None = None) -> tuple[np.ndarray, dict]:
    """The [n, T] table of the request's label setting, and where it came from (JSON-ready, for the run record).

    ``{"source": "file", "path", "sha256", ...}`` for a mask file (published or given by path), or
    ``{"source": "generated", "setting", "mask_seed", "generator", "cache", ...}``; ``fallback`` is true, with
    the ``reason``, when a published file was expected but missing and the split was generated instead.
    """
    exact = request.train_samples is None
    setting = Path(request.label_setting)
    if info.mask_keys and setting.suffix in MASK_FILE_SUFFIXES and setting.is_file():
        obj = read_mask_object(setting, list(info.mask_tasks))
        if is_id_keyed(obj) and "labels_weights" not in obj:     # e.g. new_onelabel.pth given by path
            table = published_table(info, setting, obj, n, list(request.tasks), exact, ids)
            return table, _file_source(request, setting, table, published=False)
    published = info.published_mask(request.data_root, request.label_setting)
    reason = None
    if published is not None:
        if published.is_file():
            obj = read_mask_object(published, list(info.mask_tasks))
            table = published_table(info, published, obj, n, list(request.tasks), exact, ids)
            return table, _file_source(request, published, table, published=True)
        reason = (f"published file {published} not found; generated a {request.label_setting} split from "
                  f"mask_seed={request.mask_seed} instead (not the papers' split)")
        warnings.warn(f"label_setting={request.label_setting!r} on {info.name}: published file {published} "
                      f"not found; generating a {request.label_setting} split from mask_seed={request.mask_seed} "
                      "instead (not the papers' split; see README 'Real benchmarks')", stacklevel=2)
    table = label_mask(request.label_setting, request.data_root, n, list(request.tasks), request.mask_seed)
    if setting.suffix in MASK_FILE_SUFFIXES:
        return table, _file_source(request, setting, table, published=False)
    cache = mask_cache_path(request.data_root, request.label_setting, list(request.tasks), request.mask_seed, n)
    source = {"source": "generated", "setting": request.label_setting, "mask_seed": request.mask_seed,
              "generator": "mtlwb.data.masks.make_mask" + ("" if request.label_setting in NAMED_SETTINGS
                                                           else " (ratio)"),
              "cache": str(cache), "table_sha256": _table_sha256(table),
              "fallback": reason is not None, "reason": reason}
    return table, source


def _file_source(request: SplitRequest, path: Path, table: np.ndarray, published: bool) -> dict:
    return {"source": "file", "setting": request.label_setting, "path": str(path), "sha256": file_sha256(path),
            "published": published, "table_sha256": _table_sha256(table), "fallback": False, "reason": None}


def _table_sha256(table: np.ndarray) -> str:
    """Checksum of the [n, T] table as used (after column selection and any prefix), to compare runs' splits."""
    return hashlib.sha256(np.ascontiguousarray(table, np.float32).tobytes()).hexdigest()
