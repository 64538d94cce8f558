"""The one interface every partial-label method implements.

A method sees one training batch after the forward pass and returns named
loss terms. It may own auxiliary modules (their parameters join the
optimizer through ``parameter_groups``) and may turn the shared feature into
per-task features before the heads (``refine``). The trainer only ever calls
these methods, so adding a method never touches the trainer.

Loss-term convention: a key equal to a task name is that task's supervised
loss (combined by the loss-weighting scheme); every other key is an
auxiliary term, already multiplied by its weight, and is added as is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from ..losses import task_loss
from ..tasks import TaskSpec


@dataclass
class Refined:
    """Per-task features for the heads, plus anything the losses need later."""

    task_features: dict[str, torch.Tensor]
    extras: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class Step:
    """Everything a method may look at for one batch.

    images [B, 3, H, W]; features: shared encoder output [B, C, h, w];
    predictions: task -> raw head output; targets: task -> ground truth as
    loaded; labelled [B, T] in {0, 1}, columns in ``tasks`` order;
    bottleneck: the backbone's deepest feature where it is not ``features``
    (SegNet: [B, 512, H/32, W/32]), else None.
    """

    images: torch.Tensor
    features: torch.Tensor
    refined: Refined
    predictions: dict[str, torch.Tensor]
    targets: dict[str, torch.Tensor]
    labelled: torch.Tensor
    bottleneck: torch.Tensor | None = None


@dataclass
class NoOptions:
    pass


class Method(nn.Module):
    name: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions

    def __init__(self, tasks: Sequence[TaskSpec], feature_channels: int, options: Any = None) -> None:
        super().__init__()
        self.tasks = list(tasks)
        self.feature_channels = feature_channels
        self.options = options if options is not None else self.Options()

    def refine(self, features: torch.Tensor, images: torch.Tensor) -> Refined:
        """Default: every head reads the shared feature unchanged."""
        return Refined({t.name: features for t in self.tasks})

    def supervised_losses(self, step: Step) -> dict[str, torch.Tensor]:
        return {t.name: task_loss(t, step.predictions[t.name], step.targets[t.name], step.labelled[:, i])
                for i, t in enumerate(self.tasks)}

    def losses(self, step: Step) -> dict[str, torch.Tensor]:
        return self.supervised_losses(step)

    def parameter_groups(self, lr: float) -> list[dict]:
        """Optimizer groups for the method's own modules (none by default)."""
        params = [p for p in self.parameters() if p.requires_grad]
        return [{"params": params, "lr": lr}] if params else []

    def eval_summary(self, refined: Refined) -> dict[str, torch.Tensor]:
        """Per-batch quantities the trainer averages over the evaluation split each epoch
        (e.g. the task-affinity matrix); none by default."""
        return {}

    def on_epoch_end(self, epoch: int) -> None:
        """Hook for schedules inside a method (e.g. temperature decay)."""


METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a class attribute `name`")
    METHODS[cls.name] = cls
    return cls


def parse_options(cls: type[Method], options: dict | None) -> Any:
    """Build the method's typed options; unknown keys are named in the error."""
    options = dict(options or {})
    known = {f.name for f in dataclasses.fields(cls.Options)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"method_options for method={cls.name!r}: unknown {unknown}; "
                         f"allowed {sorted(known)}")
    return cls.Options(**options)


def build_method(name: str, tasks: Sequence[TaskSpec], feature_channels: int,
                 options: dict | None = None) -> Method:
    if name not in METHODS:
        raise ValueError(f"method={name!r}: allowed {sorted(METHODS)}")
    cls = METHODS[name]
    return cls(tasks, feature_channels, parse_options(cls, options))


def forward_step(model: nn.Module, method: Method, images: torch.Tensor) -> tuple[
        torch.Tensor, Refined, dict[str, torch.Tensor]]:
    """encode -> method.refine -> decode; the same path for training and evaluation."""
    features = model.encode(images)
    refined = method.refine(features, images)
    predictions = model.decode(refined.task_features, images.shape[-2:])
    return features, refined, predictions
