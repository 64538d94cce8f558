"""How a label says "nothing here": the ignore index and the valid entries of a target, per task kind.

The rule itself belongs to each task kind (``TaskKind.valid``); these two functions give every caller one shape:
a map [B, 1, H, W] (``valid_pixels``, image-level tasks [B, 1]) or one flag per sample (``valid_samples``).
"""

from __future__ import annotations

import torch

from .task import Task

IGNORE_INDEX = -1     # class label of an ignored pixel (segmentation) or an undefined image (classification)


def valid_samples(task: Task, target: torch.Tensor) -> torch.Tensor:
    """Image-level task: [B] bool, samples whose label is defined (class != −1; every regression value finite)."""
    return task.kind_object.valid(task, target)


def valid_pixels(task: Task, target: torch.Tensor) -> torch.Tensor:
    """[B, 1, H, W] bool: pixels where the ground truth is defined (image-level tasks: [B, 1], see valid_samples)."""
    valid = task.kind_object.valid(task, target)
    return valid.unsqueeze(1) if task.image_level else valid
