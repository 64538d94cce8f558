"""Dense prediction tasks: what each one predicts and how it is compared.

A task is described once here so that data loaders, heads, losses, metrics and
the methods' label encoders all agree on channel counts and invalid-pixel rules.
"""

from __future__ import annotations

from dataclasses import dataclass

KINDS = ("segmentation", "depth", "normal", "edge")


@dataclass(frozen=True)
class TaskSpec:
    """One dense task.

    ``channels`` is the width of the prediction: classes for segmentation,
    1 for depth, 3 for normals, 1 (logit) for edges. ``primary_metric`` and
    ``lower_is_better`` are the pair used by Δ_MTL.
    """

    name: str
    kind: str
    channels: int
    primary_metric: str
    lower_is_better: bool

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"TaskSpec.kind={self.kind!r}: allowed {KINDS}")
        if self.channels < 1:
            raise ValueError(f"TaskSpec.channels={self.channels}: must be >= 1")


def semantic(num_classes: int) -> TaskSpec:
    return TaskSpec("semantic", "segmentation", num_classes, "miou", False)


DEPTH = TaskSpec("depth", "depth", 1, "abs_err", True)
NORMAL = TaskSpec("normal", "normal", 3, "mean_angle", True)
# Δ_MTL reads the field's numbers: edge ODS F (best threshold over the split), saliency maxF (ASTMT / MTI-Net)
EDGE = TaskSpec("edge", "edge", 1, "ods_f", False)
# PASCAL-Context: human parts (background + 6 groups) and saliency (background / salient), both segmentation.
PARTS = TaskSpec("parts", "segmentation", 7, "miou", False)
SALIENCY = TaskSpec("saliency", "segmentation", 2, "maxf", False)

TASK_NAMES = ("semantic", "depth", "normal", "edge", "parts", "saliency")


def make_tasks(names: tuple[str, ...] | list[str], num_classes: int) -> list[TaskSpec]:
    """Build task specs in the given order; unknown names are refused."""
    table = {"semantic": semantic(num_classes), "depth": DEPTH, "normal": NORMAL, "edge": EDGE,
             "parts": PARTS, "saliency": SALIENCY}
    bad = [n for n in names if n not in table]
    if bad:
        raise ValueError(f"tasks={list(names)}: unknown {bad}; allowed {list(TASK_NAMES)}")
    if len(set(names)) != len(names):
        raise ValueError(f"tasks={list(names)}: each task may appear once")
    if not names:
        raise ValueError("tasks=[]: give at least one task")
    return [table[n] for n in names]
