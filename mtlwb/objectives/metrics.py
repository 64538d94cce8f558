"""Evaluation over a split: one meter per task, and the Δ_MTL summary.

What a task is scored by, and whether lower is better, belongs to its kind (``TaskKind.meter``,
``TaskKind.metric_directions``; the meter classes are in ``mtlwb.tasks.meters``). This module combines them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from ..tasks import TaskSpec
from ..tasks.kinds import registered_kinds
from ..tasks.meters import (
    NAN,
    ClassificationMeter,
    DepthMeter,
    EdgeMeter,
    NormalMeter,
    RegressionMeter,
    SaliencyMeter,
    SegmentationMeter,
    TaskMeter,
)

# Direction of every metric key the built-in kinds' meters emit (a kind registered later answers through
# ``TaskKind.lower_is_better``); Δ_MTL reads it when asked for a metric other than the task's primary one.
LOWER_IS_BETTER: dict[str, bool] = {key: lower for kind in registered_kinds().values()
                                    for key, lower in kind.metric_directions.items()}


def make_meter(task: TaskSpec) -> TaskMeter:
    """The meter of ``task``'s kind (saliency, a 2-class segmentation, also gets the thresholded maxF)."""
    return task.kind_object.meter(task)


class MultiTaskMeter:
    """One meter per task, fed with the dicts a model returns and a loader yields."""

    def __init__(self, tasks: Sequence[TaskSpec]) -> None:
        self.meters = {t.name: make_meter(t) for t in tasks}

    def reset(self) -> None:
        for meter in self.meters.values():
            meter.reset()

    def update(self, preds: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor]) -> None:
        """Every task must be in both dicts (evaluation splits are fully labelled); extra keys are ignored."""
        missing = [n for n in self.meters if n not in preds or n not in targets]
        if missing:
            raise ValueError(f"MultiTaskMeter.update: no prediction or target for tasks {missing}")
        for name, meter in self.meters.items():
            meter.update(preds[name], targets[name])

    def compute(self) -> dict[str, dict[str, float]]:
        return {name: meter.compute() for name, meter in self.meters.items()}


def _metric_direction(task: TaskSpec, key: str) -> bool:
    if key == task.primary_metric:
        return task.lower_is_better
    lower = task.kind_object.lower_is_better(key)
    lower = LOWER_IS_BETTER.get(key) if lower is None else lower      # another kind's metric (its own errors follow)
    if lower is None:
        raise ValueError(f"delta_mtl: metric {key!r} for task {task.name!r} has no known direction")
    return lower


def _lookup(table: Mapping[str, Mapping[str, float]], which: str, task: str, key: str) -> float:
    if task not in table:
        raise ValueError(f"delta_mtl: {which} has no task {task!r}")
    if key not in table[task]:
        raise ValueError(f"delta_mtl: {which} has no metric {key!r} for task {task!r}")
    value = float(table[task][key])
    if not math.isfinite(value):
        raise ValueError(f"delta_mtl: {which}[{task!r}][{key!r}] = {value} is not finite")
    return value


def delta_mtl(
    metrics: Mapping[str, Mapping[str, float]],
    baseline: Mapping[str, Mapping[str, float]],
    tasks: Sequence[TaskSpec],
    baseline_name: str,
    metric_keys: Mapping[str, str] | None = None,
) -> float:
    """Average relative gain over a named baseline, in percent.

    Δ_MTL = (1/T) Σ_t (−1)^{l_t} (M_t − M_{b,t}) / M_{b,t} × 100,  with l_t = 1
    when lower is better for the metric of task t (Maninis et al. CVPR 2019;
    Vandenhende et al. TPAMI survey, eq. 10). Positive means better than the
    baseline. The metric per task is ``task.primary_metric`` unless
    ``metric_keys`` overrides it; an override's direction comes from
    the task kind (``TaskKind.metric_directions``). ``baseline_name`` is required because a Δ is
    meaningless without saying what it is relative to (single-task models for
    MTPSL, the supervised-only MTL model for JTR); the caller reports it.
    """
    if not isinstance(baseline_name, str) or not baseline_name.strip():
        raise ValueError("delta_mtl: baseline_name must be a non-empty string naming the baseline")
    if not tasks:
        raise ValueError("delta_mtl: tasks is empty")
    keys = dict(metric_keys or {})
    unknown = sorted(set(keys) - {t.name for t in tasks})
    if unknown:
        raise ValueError(f"delta_mtl: metric_keys names tasks not in tasks: {unknown}")
    total = 0.0
    for task in tasks:
        key = keys.get(task.name, task.primary_metric)
        sign = -1.0 if _metric_direction(task, key) else 1.0
        m = _lookup(metrics, "metrics", task.name, key)
        b = _lookup(baseline, f"baseline {baseline_name!r}", task.name, key)
        if b == 0:
            raise ValueError(f"delta_mtl: baseline {baseline_name!r} has {task.name}.{key}=0: relative gain undefined")
        total += sign * (m - b) / b
    return 100.0 * total / len(tasks)


__all__ = ["LOWER_IS_BETTER", "NAN", "ClassificationMeter", "DepthMeter", "EdgeMeter", "MultiTaskMeter", "NormalMeter",
           "RegressionMeter", "SaliencyMeter", "SegmentationMeter", "TaskMeter", "delta_mtl", "make_meter"]
