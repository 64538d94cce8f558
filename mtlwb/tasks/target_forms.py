"""A task's ground truth written where its prediction goes: as the prediction itself, perturbed, a constant, noise.

The mechanism diagnostics (``mtlwb.experiment.diagnostics``) evaluate a method's auxiliary loss at these four points
to see whether its minimum lies near the truth. What "the truth as a prediction" is depends on the kind (logits for
classes, values for depth, unit vectors for normals), so each task kind carries its ``TargetForms``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..core.ops import channel_normalize
from .labels import IGNORE_INDEX, valid_pixels
from .task import Task

# Each form maps (task, target as loaded [B, ...], prediction [B, C, ...], generator) to a prediction-shaped tensor;
# the caller keeps the prediction wherever the target is invalid and on labelled rows. Logits are ±10 (one-hot ×10)
# so a softmax or Gumbel encoding of the truth is the truth.

_LOGIT = 10.0


def _onehot_logits(classes: torch.Tensor, channels: int, like: torch.Tensor) -> torch.Tensor:
    """[B, ...] class indices (−1 = ignore) → [B, C, ...] logits ±: 10 at the class, 0 elsewhere."""
    hot = F.one_hot(classes.clamp_min(0), channels).to(like.dtype)                     # [B, ..., C]
    return _LOGIT * hot.movedim(-1, 1)


def _random_classes(target: torch.Tensor, channels: int, gen: torch.Generator) -> torch.Tensor:
    return torch.randint(0, channels, target.shape, generator=gen).to(target.device)


def _majority(target: torch.Tensor) -> torch.Tensor:
    """The most frequent valid class of the batch (0 when none is valid)."""
    valid = target[target != IGNORE_INDEX]
    return valid.mode().values if valid.numel() else torch.zeros((), dtype=target.dtype, device=target.device)


def _randn(like: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return torch.randn(like.shape, generator=gen).to(like.device, like.dtype)


def _valid_mean(target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Per-channel mean over valid positions [1, C, 1, ...] (zeros when nothing is valid)."""
    w = valid.expand_as(target).to(target.dtype)
    dims = [d for d in range(target.dim()) if d != 1]
    return (torch.where(valid.expand_as(target), target, 0.0) * w).sum(dims, keepdim=True) / \
        w.sum(dims, keepdim=True).clamp_min(1.0)


@dataclass(frozen=True)
class TargetForms:
    """One task kind's ground truth as a prediction, a perturbed copy, a constant and noise (prediction-shaped)."""

    truth: Callable[[Task, torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]
    perturbed: Callable[[Task, torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]
    constant: Callable[[Task, torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]
    noise: Callable[[Task, torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]


def classes_forms() -> TargetForms:
    """Segmentation maps [B, H, W] and classification labels [B]: logits 10·one-hot; 25 % relabelled at random;
    the batch's majority class everywhere; a random class per pixel."""

    def truth(t, y, p, g):
        return _onehot_logits(y, t.channels, p)

    def perturbed(t, y, p, g):
        swap = torch.rand(y.shape, generator=g).to(y.device) < 0.25
        return _onehot_logits(torch.where(swap, _random_classes(y, t.channels, g), y), t.channels, p)

    def constant(t, y, p, g):
        return _onehot_logits(torch.full_like(y, int(_majority(y))), t.channels, p)

    def noise(t, y, p, g):
        return _onehot_logits(_random_classes(y, t.channels, g), t.channels, p)

    return TargetForms(truth, perturbed, constant, noise)


def edge_forms() -> TargetForms:
    """Edge maps [B, 1, H, W] in {0, 1} as logits ±10; 10 % of pixels flipped; the logit of the batch's edge
    density everywhere; random edges at that density."""

    def density(y):
        return y.float().mean().clamp(1e-3, 1 - 1e-3)

    def truth(t, y, p, g):
        return _LOGIT * (2 * y.to(p.dtype) - 1)

    def perturbed(t, y, p, g):
        flip = torch.rand(y.shape, generator=g).to(y.device) < 0.1
        return _LOGIT * (2 * torch.where(flip, 1 - y, y).to(p.dtype) - 1)

    def constant(t, y, p, g):
        d = density(y)
        return torch.full_like(p, float(torch.log(d / (1 - d))))

    def noise(t, y, p, g):
        edges = (torch.rand(y.shape, generator=g).to(y.device) < density(y)).to(p.dtype)
        return _LOGIT * (2 * edges - 1)

    return TargetForms(truth, perturbed, constant, noise)


def value_forms(relative: float, multiplicative: bool) -> TargetForms:
    """Values, e.g. depth [B, 1, H, W] (0 = invalid) and regression [B, C] (NaN = undefined): the value; perturbed
    ×exp(relative·N) (``multiplicative``, depth: 0.1) or + relative·scale·N (regression: 0.25); the valid mean
    everywhere; uniform between the valid min and max."""

    def valid_of(t, y):
        return valid_pixels(t, y)

    def truth(t, y, p, g):
        return torch.where(valid_of(t, y).expand_as(y), y, 0.0).to(p.dtype)

    def perturbed(t, y, p, g):
        y = truth(t, y, p, g)
        if multiplicative:
            return y * torch.exp(relative * _randn(y, g))
        return y + relative * t.scale * _randn(y, g)

    def constant(t, y, p, g):
        return _valid_mean(truth(t, y, p, g), valid_of(t, y)).expand_as(p).clone()

    def noise(t, y, p, g):
        valid = valid_of(t, y).expand_as(y)
        values = y[valid]
        if not values.numel():
            return p.detach().clone()
        low, high = values.min(), values.max()
        return (low + (high - low) * torch.rand(p.shape, generator=g).to(p.device)).to(p.dtype)

    return TargetForms(truth, perturbed, constant, noise)


def normal_forms() -> TargetForms:
    """Unit normals [B, 3, H, W] (0 = invalid): the vectors; normalize(y + 0.25·N) (~14° off); the normalized valid
    mean direction everywhere; random unit vectors."""

    def truth(t, y, p, g):
        return y.to(p.dtype)

    def perturbed(t, y, p, g):
        return channel_normalize(y.to(p.dtype) + 0.25 * _randn(y, g))

    def constant(t, y, p, g):
        return channel_normalize(_valid_mean(y.to(p.dtype), valid_pixels(t, y))).expand_as(p).clone()

    def noise(t, y, p, g):
        return channel_normalize(_randn(p, g))

    return TargetForms(truth, perturbed, constant, noise)
