"""What building an experiment gives: the ``Experiment`` (``loop.build_experiment`` builds it).

Its own module so that the loop's helpers (``diagnostics``, figures' hooks) can name it without importing the loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ..config import ExperimentConfig
from ..data import TrainingSource
from ..methods import Method
from ..models import MultiTaskNet
from ..tasks import TaskSpec


@dataclass
class Experiment:
    """Everything built from a config, so notebooks can reuse it after training."""

    config: ExperimentConfig
    tasks: list[TaskSpec]
    model: MultiTaskNet
    method: Method
    train_set: Any
    eval_set: Any
    labelled: torch.Tensor       # [N_train, T]
    device: torch.device
    val_set: Any = None          # held-out training images (val_fraction > 0), never trained on
    sources: list[TrainingSource] = field(default_factory=list)   # the main source first (data/sources.py)
    # [N_train, T] bool: the entries of ``labelled`` that are pseudo-labels (config pseudo_labels), None = none
    pseudo: torch.Tensor | None = None
