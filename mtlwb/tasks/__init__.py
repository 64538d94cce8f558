"""Prediction tasks: what each one predicts and how it is compared.

A task is described once here so that data loaders, heads, losses, metrics and
the methods' label encoders all agree on channel counts and invalid-value rules. What depends on the *kind* of a
task (its loss, metrics, encodings, placeholder, figures) is one object per kind: ``mtlwb.tasks.kinds``.

Two levels of task. *Dense* tasks (segmentation, saliency, depth, normal, edge) predict a map [B, C, H, W].
*Image-level* tasks predict one vector per image, [B, C]: ``classification`` (C class logits; the label is a class
index, −1 = undefined) and ``regression`` (C real values in the task's unit; the label is [C], NaN = undefined).
A regression task carries ``loc`` and ``scale`` (a typical value and spread of its label): heads predict
(y − loc) / scale and return loc + scale · output, the losses compare standardized values, so tasks in metres,
degrees or counts weigh alike, and the methods' encodings map (y − loc) / scale into (0, 1).
"""

from __future__ import annotations

from dataclasses import dataclass

from .kinds import TaskKind, get_kind, register_kind, registered_kinds


@dataclass(frozen=True)
class TaskSpec:
    """One task.

    ``kind`` names a registered task kind (``mtlwb.tasks.kinds``; ``kind_object`` is the object, which owns the
    loss, metrics, encodings, placeholder and figures of every task of the kind). ``channels`` is the width of the
    prediction: classes for segmentation and classification, 1 for depth, 3 for normals, 1 (logit) for edges, the
    number of values for regression. ``primary_metric`` and ``lower_is_better`` are the pair used by Δ_MTL.
    ``loc``, ``scale``: regression only (see the module docstring).
    """

    name: str
    kind: str
    channels: int
    primary_metric: str
    lower_is_better: bool
    loc: float = 0.0
    scale: float = 1.0

    def __post_init__(self) -> None:
        kind = get_kind(self.kind)
        if self.channels < 1:
            raise ValueError(f"TaskSpec.channels={self.channels}: must be >= 1")
        if not self.scale > 0:
            raise ValueError(f"TaskSpec.scale={self.scale}: must be > 0")
        kind.check(self)

    @property
    def kind_object(self) -> TaskKind:
        """The registered ``TaskKind`` named by ``kind``."""
        return get_kind(self.kind)

    @property
    def image_level(self) -> bool:
        """One prediction per image ([B, C]) rather than a map ([B, C, H, W])."""
        return self.kind_object.image_level


def semantic(num_classes: int) -> TaskSpec:
    return TaskSpec("semantic", "segmentation", num_classes, "miou", False)


DEPTH = TaskSpec("depth", "depth", 1, "abs_err", True)
NORMAL = TaskSpec("normal", "normal", 3, "mean_angle", True)
# Δ_MTL reads the field's numbers: edge ODS F (best threshold over the split), saliency maxF (ASTMT / MTI-Net)
EDGE = TaskSpec("edge", "edge", 1, "ods_f", False)
# PASCAL-Context: human parts (background + 6 groups), a segmentation, and saliency (background / salient), a
# 2-class segmentation also scored by maxF (its own kind).
PARTS = TaskSpec("parts", "segmentation", 7, "miou", False)
SALIENCY = TaskSpec("saliency", "saliency", 2, "maxf", False)

# Image-level tasks of the built-in scenes (mtlwb.data.scenes._image_labels). loc / scale: the generator's
# distribution — camera height U(1.0, 1.7) m, pitch U(−22.9°, 6.9°): mean and sd of the uniform; visible objects:
# mean and sd over 200 scenes at 64×80 (3.3 ± 1.5).
DOMINANT_CLASS_NAMES = ("furniture", "sphere", "cylinder", "picture")
DOMINANT_CLASS = TaskSpec("dominant_class", "classification", len(DOMINANT_CLASS_NAMES), "accuracy", False)
# the camera pitch cut at the terciles of its uniform draw (scenes.CAMERA_VIEW_EDGES): balanced by construction,
# where dominant_class is ~75 % furniture and its accuracy mostly measures the majority share
CAMERA_VIEW_NAMES = ("down", "tilted", "level")
CAMERA_VIEW = TaskSpec("camera_view", "classification", len(CAMERA_VIEW_NAMES), "accuracy", False)
NUM_OBJECTS = TaskSpec("num_objects", "regression", 1, "mae", True, loc=3.3, scale=1.5)
CAMERA_HEIGHT = TaskSpec("camera_height", "regression", 1, "mae", True, loc=1.35, scale=0.2)
CAMERA_PITCH = TaskSpec("camera_pitch", "regression", 1, "mae", True, loc=-8.0, scale=8.6)
IMAGE_LEVEL_TASKS = ("dominant_class", "camera_view", "num_objects", "camera_height", "camera_pitch")
# class names of a classification task, for figures
CLASS_NAMES = {"dominant_class": DOMINANT_CLASS_NAMES, "camera_view": CAMERA_VIEW_NAMES}

TASK_NAMES = ("semantic", "depth", "normal", "edge", "parts", "saliency") + IMAGE_LEVEL_TASKS


__all__ = ["CAMERA_HEIGHT", "CAMERA_PITCH", "CAMERA_VIEW", "CAMERA_VIEW_NAMES", "CLASS_NAMES", "DEPTH",
           "DOMINANT_CLASS", "DOMINANT_CLASS_NAMES", "EDGE", "IMAGE_LEVEL_TASKS", "NORMAL", "NUM_OBJECTS", "PARTS",
           "SALIENCY", "TASK_NAMES", "TaskKind", "TaskSpec", "get_kind", "make_tasks", "register_kind",
           "registered_kinds", "semantic"]


def make_tasks(names: tuple[str, ...] | list[str], num_classes: int) -> list[TaskSpec]:
    """Build task specs in the given order; unknown names are refused."""
    table = {"semantic": semantic(num_classes), "depth": DEPTH, "normal": NORMAL, "edge": EDGE,
             "parts": PARTS, "saliency": SALIENCY, "dominant_class": DOMINANT_CLASS, "camera_view": CAMERA_VIEW,
             "num_objects": NUM_OBJECTS, "camera_height": CAMERA_HEIGHT, "camera_pitch": CAMERA_PITCH}
    bad = [n for n in names if n not in table]
    if bad:
        raise ValueError(f"tasks={list(names)}: unknown {bad}; allowed {list(TASK_NAMES)}")
    if len(set(names)) != len(names):
        raise ValueError(f"tasks={list(names)}: each task may appear once")
    if not names:
        raise ValueError("tasks=[]: give at least one task")
    return [table[n] for n in names]
