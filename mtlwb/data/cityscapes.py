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

from ..tasks import TaskSpec
from .folder import MultiTaskFolder

CITYSCAPES_TASKS = ("semantic", "depth")
CITYSCAPES_CLASSES = (7, 19)


class CityscapesFolder(MultiTaskFolder):
    """One split. Items: {'image' [3,H,W], 'semantic' [H,W] int64 (-1 ignore), 'depth' [1,H,W], 'index'}."""

    layout = "<root>/{train,val}/{image,label_7,label_19,depth}/<i>.npy; see README 'Real benchmarks'"

    def __init__(self, root: str | Path, split: str, tasks: list[TaskSpec], limit: int | None = None,
                 num_classes: int = 7, check_files: bool = True) -> None:
        if num_classes not in CITYSCAPES_CLASSES:
            raise ValueError(f"cityscapes classes={num_classes}: allowed {CITYSCAPES_CLASSES}")
        bad = [t.name for t in tasks if t.name not in CITYSCAPES_TASKS]
        if bad:
            raise ValueError(f"tasks {bad} are not annotated in Cityscapes; allowed {list(CITYSCAPES_TASKS)}")
        super().__init__(root, split, tasks, limit, check_files,
                         folders={"semantic": (f"label_{num_classes}", 0), "depth": ("depth", 1)})
