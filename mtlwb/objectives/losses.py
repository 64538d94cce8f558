"""Supervised task losses that only ever see labelled samples.

Two normalizations (``reduction``), both of which give an unlabelled sample neither value nor gradient:

- ``"batch"`` (default; the published balance of the MTPSL and JTR code): each sample's loss is the mean over its
  own valid pixels; it is set to zero where the task is unlabelled; the losses are summed and divided by the batch
  size B. A task labelled on k of B images therefore weighs k/B of a fully labelled batch, as in the reference
  training loops (``loss += sum(per-task losses of sample i, zeroed where unlabelled) / B``).
- ``"labelled"``: the mean over the valid pixels of the labelled samples only (mtlwb ≤ 0.1): a task's term keeps
  the same scale however few of its images are labelled, i.e. B/k times the published term.

A batch with no labelled sample for the task returns an exact zero that is still attached to the graph.

Loss forms (``LossOptions``): edges ``"balanced"`` (BCE with the positive/negative weights set from the sample's own
edge density) or ``"mtl_pytorch"`` (Multi-Task-Learning-PyTorch's PASCAL-Context loss: BCE with a fixed positive
weight 0.95 and negative weight 0.05, averaged over pixels — the loss its task weight 50 was tuned for); normals
``"cosine"`` (1 − cos), ``"dot"`` (1 − pred·gt, the MTPSL and JTR code's: equal to the cosine for unit ground
truth, but their loaders crop normals bilinearly, which shortens them, and the dot product then weighs a pixel by
its label's length) or ``"l1"`` (MTL-PyTorch: L1 between the unit prediction and the label, mean over channels).

Image-level tasks: classification is cross-entropy over the C logits (label −1 = undefined, no loss); regression
(``LossOptions.regression``: ``"l1"`` or ``"smooth_l1"``, β = 1) compares standardized values (ŷ − y) / scale, the
mean over the task's values, so a count, a height in metres and an angle in degrees weigh alike (NaN = undefined).
Each sample's loss is its own term — the image is its only "pixel" — and the two reductions treat it exactly like
a dense sample's mean over its valid pixels: zero where unlabelled or undefined, summed / B (``"batch"``) or
averaged over the labelled defined samples (``"labelled"``).

The per-pixel terms of each kind (and which pixels are valid) belong to the kind (``TaskKind.loss_terms``,
``mtlwb.tasks.kinds``); this module reduces them and holds the options.

Under torchrun, ``"batch"`` is exactly data-parallel (each rank divides by its own B, gradients are averaged over
equal-sized rank batches). ``"labelled"`` divides by the labelled-pixel weight summed over *all* ranks (``global
denominator``), times the world size, so that the averaged gradient equals the single-process one too.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from ..core import distributed
from ..tasks import TaskSpec
from ..tasks.labels import IGNORE_INDEX, valid_pixels, valid_samples

REDUCTIONS = ("batch", "labelled")
EDGE_LOSSES = ("balanced", "mtl_pytorch")
NORMAL_LOSSES = ("cosine", "dot", "l1")
REGRESSION_LOSSES = ("l1", "smooth_l1")


@dataclass(frozen=True)
class LossOptions:
    """How the supervised losses are formed and normalized (config fields loss_reduction, edge_loss, normal_loss,
    regression_loss)."""

    reduction: str = "batch"
    edge: str = "balanced"
    normal: str = "cosine"
    edge_pos_weight: float = 0.95          # "mtl_pytorch" edges only
    regression: str = "l1"                 # image-level regression: L1 or smooth-L1 of standardized values

    def __post_init__(self) -> None:
        checks = (("loss_reduction", self.reduction, REDUCTIONS), ("edge_loss", self.edge, EDGE_LOSSES),
                  ("normal_loss", self.normal, NORMAL_LOSSES), ("regression_loss", self.regression,
                                                                 REGRESSION_LOSSES))
        for name, value, allowed in checks:
            if value not in allowed:
                raise ValueError(f"{name}={value!r}: allowed {list(allowed)}")


def with_dot_normals(options: LossOptions) -> LossOptions:
    """``options`` with the references' dot-product normal loss where the normal loss is the default cosine (the
    two agree on unit ground truth; an explicit other form, e.g. PASCAL's l1, is kept)."""
    return replace(options, normal="dot") if options.normal == "cosine" else options


def _reduce(per_pixel: torch.Tensor, weight: torch.Tensor, reduction: str) -> torch.Tensor:
    """per_pixel, weight [B, 1, H, W] → scalar; weight is 0 on invalid pixels and on unlabelled samples."""
    if reduction == "batch":
        per_sample_w = weight.flatten(1).sum(dim=1)                                   # [B]
        per_sample = (per_pixel * weight).flatten(1).sum(dim=1) / per_sample_w.clamp_min(1e-12)
        return per_sample.sum() / per_pixel.shape[0]
    total = distributed.global_sum(weight.sum().detach())
    if total == 0:
        return per_pixel.sum() * 0.0
    return (per_pixel * weight).sum() / total * distributed.current().world_size


def task_loss(task: TaskSpec, pred: torch.Tensor, target: torch.Tensor, labelled: torch.Tensor,
              reduction: str | LossOptions = "batch") -> torch.Tensor:
    """Loss of one task over the labelled samples of a batch.

    pred: raw head output (logits for segmentation/edges). target: as loaded
    (segmentation [B, H, W] long, others [B, C, H, W]). labelled: [B]. reduction: a ``LossOptions`` or just its
    reduction (see the module docstring).
    """
    options = reduction if isinstance(reduction, LossOptions) else LossOptions(reduction=reduction)
    return _reduce(*task.kind_object.loss_terms(task, pred, target, labelled, options), options.reduction)


def image_level_loss(task: TaskSpec, pred: torch.Tensor, target: torch.Tensor, labelled: torch.Tensor,
                     options: LossOptions) -> torch.Tensor:
    """pred [B, C] (logits / values in the task's unit), target [B] long (classification) or [B, C] (regression),
    labelled [B] → scalar. One term per sample, reduced as a dense sample's pixel mean (module docstring)."""
    return _reduce(*task.kind_object.loss_terms(task, pred, target, labelled, options), options.reduction)


__all__ = ["EDGE_LOSSES", "IGNORE_INDEX", "NORMAL_LOSSES", "REDUCTIONS", "REGRESSION_LOSSES", "LossOptions",
           "image_level_loss", "task_loss", "valid_pixels", "valid_samples", "with_dot_normals"]
