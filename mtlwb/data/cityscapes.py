"""Cityscapes as preprocessed by MTAN (the version MTPSL and JTR use).

``<root>/{train,val}/{image,label_7,label_19,depth}/<i>.npy``, 128x256:
image [H, W, 3] float in [0, 1]; label_7 / label_19 [H, W] float, classes
0..6 / 0..18, -1 ignore; depth [H, W, 1] float as stored (MTAN calls it
"(inverse) depth"; 0 = invalid). The 7- or 19-class labels are chosen by
the dataset name (``cityscapes7`` / ``cityscapes19``), so one data_root
serves both. Headers are checked on open, as for NYUv2.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..tasks import TaskSpec
from .folder import SPLITS, _header

CITYSCAPES_TASKS = ("semantic", "depth")
CITYSCAPES_CLASSES = (7, 19)


class CityscapesFolder(Dataset):
    """One split. Items: {'image' [3,H,W], 'semantic' [H,W] int64 (-1 ignore), 'depth' [1,H,W], 'index'}."""

    def __init__(self, root: str | Path, split: str, tasks: list[TaskSpec], limit: int | None = None,
                 num_classes: int = 7, check_files: bool = True) -> None:
        if split not in SPLITS:
            raise ValueError(f"split={split!r}: allowed {SPLITS}")
        if num_classes not in CITYSCAPES_CLASSES:
            raise ValueError(f"cityscapes classes={num_classes}: allowed {CITYSCAPES_CLASSES}")
        bad = [t.name for t in tasks if t.name not in CITYSCAPES_TASKS]
        if bad:
            raise ValueError(f"tasks {bad} are not annotated in Cityscapes; allowed {list(CITYSCAPES_TASKS)}")
        self.split_dir = Path(root) / split
        self.tasks = list(tasks)
        self.folders = {"semantic": (f"label_{num_classes}", 0), "depth": ("depth", 1)}
        image_dir = self.split_dir / "image"
        if not image_dir.is_dir():
            raise FileNotFoundError(f"dataset folder missing: {image_dir} (expected the MTAN Cityscapes layout "
                                    "<root>/{train,val}/{image,label_7,label_19,depth}/<i>.npy; see README 'Real benchmarks')")
        n = len(list(image_dir.glob("*.npy")))
        if n == 0:
            raise FileNotFoundError(f"dataset folder {image_dir} holds no .npy files")
        self.size = n if limit is None else min(n, limit)
        if check_files:
            self._check_headers()

    def _check_headers(self) -> None:
        first = self.split_dir / "image" / "0.npy"
        shape, _ = _header(first)
        if len(shape) != 3 or shape[2] != 3:
            raise ValueError(f"dataset file {first}: shape {shape}, expected (H, W, 3)")
        h, w = shape[:2]
        expected = {"image": (h, w, 3)}
        for t in self.tasks:
            folder, c = self.folders[t.name]
            expected[folder] = (h, w) if c == 0 else (h, w, c)
        for folder, exp in expected.items():
            if not (self.split_dir / folder).is_dir():
                raise FileNotFoundError(f"dataset folder missing: {self.split_dir / folder}")
            for i in range(self.size):
                path = self.split_dir / folder / f"{i}.npy"
                shape, dtype = _header(path)
                if shape != exp or dtype.kind != "f":
                    raise ValueError(f"dataset file {path}: shape {shape} dtype {dtype}, "
                                     f"expected shape {exp} floating point")
        self.image_size = (h, w)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int) -> dict[str, torch.Tensor | int]:
        item: dict[str, torch.Tensor | int] = {"index": i}
        image = np.load(self.split_dir / "image" / f"{i}.npy")                  # [H, W, 3]
        item["image"] = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), np.float32))
        for t in self.tasks:
            folder, _ = self.folders[t.name]
            arr = np.load(self.split_dir / folder / f"{i}.npy")
            if t.name == "semantic":                                             # [H, W], -1 ignore
                item[t.name] = torch.from_numpy(arr.astype(np.int64))
            else:                                                                # [H, W, 1] -> [1, H, W]
                item[t.name] = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1), np.float32))
        return item
