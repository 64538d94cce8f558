"""Partial-label files keyed by image id (the PASCAL-Context releases), read without running arbitrary pickles.

The PASCAL-Context splits used by MTPSL-style work (as loaded by DiffusionMTL, prismformore/Multi-Task-Transformer,
``DiffusionMTL/data/ssl_mapping/pascal/``) are not [N, T] tables:

- ``onelabel.npy`` / ``randomlabels.npy``: ``np.save`` of a dict {task key: collection of training image ids},
  task keys ``semseg``, ``human_parts``, ``sal``, ``normals``, ``edge``;
- ``new_onelabel.pth`` / ``new_randomlabels.pth`` (derived from those): ``torch.save`` of a dict
  {image id: [0/1] × 5}, columns in the order semseg, human_parts, sal, normals, edge.

Rows follow image ids, not file positions, so both are turned into the [N, T] table of the dataset's own id list.
A ``.npy`` holding a pickle is unpickled with a whitelist (containers, strings, numpy arrays), never with
``allow_pickle=True``: a downloaded mask file cannot execute code.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

_ALLOWED = {("builtins", n) for n in ("dict", "list", "set", "frozenset", "tuple", "str", "int", "float")} | {
    (m, n) for m in ("numpy.core.multiarray", "numpy._core.multiarray") for n in ("_reconstruct", "scalar")} | {
    ("numpy", "ndarray"), ("numpy", "dtype")}


class _ContainersOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a mask file holds only containers, "
                                         "strings and arrays")
        return super().find_class(module, name)


def read_npy(path: str | Path) -> object:
    """A plain array, or the object a pickled ``.npy`` holds (a dict for the id-keyed files)."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = header(f)
        if not dtype.hasobject:
            f.seek(0)
            return np.load(f)
        obj = _ContainersOnly(f).load()
    if isinstance(obj, np.ndarray) and obj.shape == () and shape == ():
        return obj.item()
    return obj


def is_id_keyed(obj: object) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(k, str) for k in obj)


def id_keyed_table(obj: Mapping, ids: Sequence[str], mask_tasks: Sequence[str], file_keys: Mapping[str, str],
                   origin: str, exact: bool = True) -> np.ndarray:
    """{task key: ids} or {image id: [0/1] × T} -> [len(ids), T] float32 in ``mask_tasks`` order.

    ``exact``: every id in the file must be one of ``ids`` (the whole training split); off for a prefix.
    """
    t = len(mask_tasks)
    table = np.zeros((len(ids), t), np.float32)
    if set(obj) <= set(file_keys):                                   # {task key: collection of image ids}
        missing = [k for k, task in file_keys.items() if task in mask_tasks and k not in obj]
        if missing:
            raise ValueError(f"mask file {origin!r}: no entry for task keys {missing}; expected keys "
                             f"{list(file_keys)}")
        known = set(ids)
        for key, members in obj.items():
            members = _id_set(members, origin, key)
            if exact and not members <= known:
                raise ValueError(f"mask file {origin!r}: task {key!r} lists ids not in the training split, e.g. "
                                 f"{sorted(members - known)[:3]}; is it the file of another split?")
            j = list(mask_tasks).index(file_keys[key])
            table[:, j] = [sid in members for sid in ids]
        return table
    absent = [sid for sid in ids if sid not in obj]                 # {image id: [0/1] × T}
    if absent:
        raise ValueError(f"mask file {origin!r}: no row for training images {absent[:3]} "
                         f"({len(absent)} of {len(ids)}); expected {{image id: [0/1] × {t}}} or {{task key: ids}} "
                         f"with keys {list(file_keys)}")
    for i, sid in enumerate(ids):
        row = np.asarray(obj[sid], np.float32).reshape(-1)
        if row.shape != (t,):
            raise ValueError(f"mask file {origin!r}: row of {sid!r} has {row.size} entries, expected {t} "
                             f"(columns {list(mask_tasks)})")
        table[i] = row
    return table


def _id_set(members: object, origin: str, key: str) -> set[str]:
    if isinstance(members, (str, bytes)) or not isinstance(members, (Iterable, np.ndarray)):
        raise ValueError(f"mask file {origin!r}: task {key!r} must map to a collection of image ids, "
                         f"got {type(members).__name__}")
    return {str(m) for m in np.asarray(list(members)).reshape(-1)}
