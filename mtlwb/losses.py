"""Supervised task losses that only ever see labelled samples.

Each loss takes the per-sample label flag of its task (``labelled``: [B] in
{0, 1}) and the task's own invalid-pixel rule, and averages over the valid
pixels of labelled samples only. A batch with no labelled sample for the task
returns an exact zero that is still attached to the graph, so a masked task
contributes neither value nor gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .ops import channel_cosine
from .tasks import TaskSpec

IGNORE_INDEX = -1


def valid_pixels(task: TaskSpec, target: torch.Tensor) -> torch.Tensor:
    """[B, 1, H, W] bool: pixels where the ground truth is defined."""
    if task.kind == "segmentation":
        return (target != IGNORE_INDEX).unsqueeze(1)
    if task.kind == "depth":
        return target != 0
    if task.kind == "normal":
        return (target.abs().sum(1, keepdim=True) > 0)
    return torch.ones_like(target, dtype=torch.bool)


def _masked_mean(per_pixel: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    total = weight.sum()
    if total == 0:
        return per_pixel.sum() * 0.0
    return (per_pixel * weight).sum() / total


def task_loss(task: TaskSpec, pred: torch.Tensor, target: torch.Tensor,
              labelled: torch.Tensor) -> torch.Tensor:
    """Loss of one task over the labelled samples of a batch.

    pred: raw head output (logits for segmentation/edges). target: as loaded
    (segmentation [B, H, W] long, others [B, C, H, W]). labelled: [B].
    """
    sample_w = labelled.to(pred.dtype).view(-1, 1, 1, 1)
    # Unlabelled targets may hold anything (even NaN in a loader's placeholder):
    # replace them before they touch arithmetic so nothing leaks.
    keep = sample_w.bool()
    if task.kind == "segmentation":
        tgt = torch.where(keep[:, 0], target, torch.full_like(target, IGNORE_INDEX))
        per_pixel = F.cross_entropy(pred, tgt.clamp_min(0), reduction="none").unsqueeze(1)
        weight = (tgt != IGNORE_INDEX).unsqueeze(1).to(pred.dtype)
        return _masked_mean(per_pixel, weight)
    tgt = torch.where(keep, target, torch.zeros_like(target))
    weight = valid_pixels(task, tgt).to(pred.dtype) * sample_w
    if task.kind == "depth":
        return _masked_mean((pred - tgt).abs(), weight)
    if task.kind == "normal":
        cos = channel_cosine(pred, tgt).unsqueeze(1)
        return _masked_mean(1.0 - cos, weight)
    # Edges: class-balanced BCE, positives are rare.
    pos = (tgt * weight).sum()
    neg = ((1 - tgt) * weight).sum()
    total = (pos + neg).clamp_min(1.0)
    w_pos, w_neg = neg / total, pos / total
    pix_w = (tgt * w_pos + (1 - tgt) * w_neg) * weight
    per_pixel = F.binary_cross_entropy_with_logits(pred, tgt, reduction="none")
    return _masked_mean(per_pixel, pix_w)
