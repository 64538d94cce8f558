"""Reader for the MTAN-preprocessed NYUv2 layout, shared by the built-in scenes.

``<root>/<split>/<folder>/<i>.npy`` with one folder per task (image, label,
depth, normal, edge). Every file's header is checked when the dataset is
opened, so a missing, truncated or wrong-shape file is reported by name
before training starts rather than as a crash in epoch 7.

Decoded items are kept in memory after their first read (``MultiTaskFolder.cache``) while the whole split fits in
``CACHE_BYTES``: a small split (the few-label regime's 100 + 250 scenes at 32x40, 15 MiB) is then read from disk
once per run instead of once per epoch and evaluation (loading was ~13 % of such a run). The items are the same
tensors every time, so numbers do not change; a larger split (NYUv2, 3 GiB decoded) is read from disk as before.

Image-level tasks (classification, regression; built-in scenes only) are read from one table per split,
``<root>/<split>/image_labels.json`` (``{task name: [value per image]}``), loaded once when the dataset is
opened; a dataset without it (generated before image-level labels existed), or whose table lacks a task's label
(generated before that label existed, e.g. camera_view), is refused by name with the command that adds it in place.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..tasks import TaskSpec
from .generate import IMAGE_LABELS_FILE

# task name -> (folder on disk, channels on disk or 0 for HW)
TASK_FOLDERS = {"semantic": ("label", 0), "depth": ("depth", 1), "normal": ("normal", 3), "edge": ("edge", 1)}
SPLITS = ("train", "val")
# dtypes a file may have: class labels are integers in some releases (uint8 with 255 = ignore, or int8..int64);
# images, depth, normals and edges are real-valued. Complex, bool and object arrays cannot be right.
LABEL_KINDS = ("fiu", "floating point or integer")      # (numpy dtype kinds, how an error names them)
VALUE_KINDS = ("f", "floating point")
UINT8_IGNORE = 255                       # the ignore value of 8-bit label releases; read as -1
CACHE_BYTES = 256 * 2**20                # keep a split's decoded items in memory if they fit (see module doc)


def label_values(arr: np.ndarray) -> np.ndarray:
    """A label map as int64 classes with -1 = ignore: uint8 files mark ignore with 255, the others with -1."""
    labels = arr.astype(np.int64)
    if arr.dtype == np.uint8:
        labels[arr == UINT8_IGNORE] = -1
    return labels


def _header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from the .npy header; fails on a truncated file (fewer bytes than the header promises)."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(f)
            data_start = f.tell()
    except FileNotFoundError:
        raise FileNotFoundError(f"dataset file missing: {path}") from None
    except (ValueError, OSError, EOFError) as e:
        raise ValueError(f"dataset file {path} is unreadable or truncated ({e})") from e
    if not dtype.hasobject:
        expected = data_start + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        size = path.stat().st_size
        if size < expected:
            raise ValueError(f"dataset file {path} is unreadable or truncated ({size} bytes, the header "
                             f"promises {expected})")
    return tuple(shape), dtype


class MultiTaskFolder(Dataset):
    """One split of a folder-of-npy multi-task dataset.

    Items: {'image': [3,H,W] float32, 'semantic': [H,W] int64 (-1 ignore),
    'depth': [1,H,W], 'normal': [3,H,W], 'edge': [1,H,W], 'index': int}; image-level tasks:
    classification [] int64 (-1 undefined), regression [C] float32.

    ``cache``: None (default) keeps the decoded items in memory after their first read when the split's decoded
    size (from the first item) is at most ``CACHE_BYTES``; True / False always / never. A cached item's tensors
    are shared by every later read of it: callers must not modify them in place (collation copies them; the
    augmentation makes new tensors).
    """

    layout = "<root>/{train,val}/{image,label,depth,normal}/<i>.npy; see data/README.md"

    def __init__(self, root: str | Path, split: str, tasks: list[TaskSpec], limit: int | None = None,
                 check_files: bool = True, folders: dict[str, tuple[str, int]] | None = None,
                 cache: bool | None = None) -> None:
        if split not in SPLITS:
            raise ValueError(f"split={split!r}: allowed {SPLITS}")
        self.root = Path(root)
        self.split_dir = self.root / split
        self.tasks = list(tasks)
        self.folders = folders or TASK_FOLDERS      # task name -> (folder on disk, channels or 0 for HW)
        image_dir = self.split_dir / "image"
        if not image_dir.is_dir():
            raise FileNotFoundError(f"dataset folder missing: {image_dir} (expected the layout {self.layout})")
        n = len(list(image_dir.glob("*.npy")))
        if n == 0:
            raise FileNotFoundError(f"dataset folder {image_dir} holds no .npy files")
        self.size = n if limit is None else min(n, limit)
        self.image_labels = self._read_image_labels()
        if check_files:
            self._check_headers()
        self.cache = cache
        self._items: dict[int, dict[str, torch.Tensor | int]] = {}

    def _read_image_labels(self) -> dict[str, np.ndarray]:
        """{task: [size] int64 (classification, -1 = undefined) or [size, C] float32 (regression)}."""
        wanted = [t for t in self.tasks if t.image_level]
        if not wanted:
            return {}
        path = self.split_dir / IMAGE_LABELS_FILE
        add = (f"Add them in place (the dense files stay as they are): `mtlwb generate --root {self.root}`, or "
               f"mtlwb.data.ensure_dataset({str(self.root)!r}, image_labels=True)")
        if not path.is_file():
            raise FileNotFoundError(
                f"tasks {[t.name for t in wanted]} need image-level labels, but {path} is missing: {self.root} was "
                f"generated before they existed. {add}")
        try:
            table = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"image-level label file {path} is unreadable ({e})") from e
        absent = [t.name for t in wanted if isinstance(table, dict) and t.name not in table]
        if absent:
            raise FileNotFoundError(
                f"tasks {absent} need image-level labels that {path} lacks (it has {sorted(table)}): {self.root} "
                f"was generated before they existed. {add}")
        out = {}
        for t in wanted:
            values = table.get(t.name) if isinstance(table, dict) else None
            if not isinstance(values, list) or len(values) < self.size:
                raise ValueError(f"image-level label file {path}: no list of >= {self.size} values for task "
                                 f"{t.name!r} (has {sorted(table) if isinstance(table, dict) else type(table)})")
            arr = np.asarray(values[:self.size], dtype=np.float64)
            if t.kind_object.categorical:
                if not np.isin(arr, np.arange(-1, t.channels)).all():
                    raise ValueError(f"image-level label file {path}: {t.name!r} must hold class ids in "
                                     f"[0, {t.channels}) or -1 (undefined)")
                out[t.name] = arr.astype(np.int64)
            else:
                out[t.name] = arr.reshape(self.size, -1).astype(np.float32)
                if out[t.name].shape[1] != t.channels:
                    raise ValueError(f"image-level label file {path}: {t.name!r} has {out[t.name].shape[1]} values "
                                     f"per image, expected {t.channels}")
        return out

    def _files(self, folder: str) -> list[Path]:
        return [self.split_dir / folder / f"{i}.npy" for i in range(self.size)]

    def _check_headers(self) -> None:
        shape, _ = _header(self.split_dir / "image" / "0.npy")
        if len(shape) != 3 or shape[2] != 3:
            raise ValueError(f"dataset file {self.split_dir / 'image' / '0.npy'}: shape {shape}, expected (H, W, 3)")
        h, w = shape[:2]
        expected = {"image": ((h, w, 3), VALUE_KINDS)}
        for t in self.tasks:
            if t.image_level:
                continue
            folder, c = self.folders[t.name]
            kinds = LABEL_KINDS if c == 0 else VALUE_KINDS      # the format: a 2-D file is a class-id map
            expected[folder] = ((h, w) if c == 0 else (h, w, c), kinds)
        for folder, (exp, kinds) in expected.items():
            if not (self.split_dir / folder).is_dir():
                raise FileNotFoundError(f"dataset folder missing: {self.split_dir / folder}")
            for path in self._files(folder):
                shape, dtype = _header(path)
                if shape != exp or dtype.kind not in kinds[0]:
                    raise ValueError(f"dataset file {path}: shape {shape} dtype {dtype}, expected shape {exp} "
                                     f"and a {kinds[1]} dtype")
        self.image_size = (h, w)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int) -> dict[str, torch.Tensor | int]:
        item = self._items.get(i)
        if item is None:
            item = self._read(i)
            if self.cache is None:          # decided on the first read: does the whole split fit?
                nbytes = sum(v.nbytes for v in item.values() if torch.is_tensor(v))
                self.cache = nbytes * self.size <= CACHE_BYTES
            if self.cache:
                self._items[i] = item
        return dict(item)

    def _read(self, i: int) -> dict[str, torch.Tensor | int]:
        """Item ``i`` decoded from its files."""
        item: dict[str, torch.Tensor | int] = {"index": i}
        image = np.load(self.split_dir / "image" / f"{i}.npy")
        item["image"] = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), np.float32))
        for t in self.tasks:
            if t.image_level:                       # classification [] int64, regression [C] float32
                item[t.name] = torch.from_numpy(np.array(self.image_labels[t.name][i]))
                continue
            folder, channels = self.folders[t.name]
            arr = np.load(self.split_dir / folder / f"{i}.npy")
            if channels == 0:                       # a class-id map [H, W], −1 = ignore
                item[t.name] = torch.from_numpy(label_values(arr))
            else:
                item[t.name] = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1), np.float32))
        return item


def dataset_num_classes(root: str | Path, default: int = 13) -> int:
    """Classes from the scenes' meta.json; NYUv2 (no meta) has 13."""
    meta = Path(root) / "meta.json"
    if meta.is_file():
        return int(json.loads(meta.read_text())["num_classes"])
    return default
