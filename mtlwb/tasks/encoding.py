"""The joint spaces' encodings of one task's predictions and labels: the building blocks the task kinds use.

Both prediction-consistency methods (MTPSL, JTR) feed predictions and ground truth of different tasks into one
network, so each task is first brought to a common, bounded range and a prediction must look like a label of the
same task. ``TaskKind.encode_prediction`` / ``encode_label`` choose among these per kind; the methods' view of them
(image-level broadcast, masks, clean targets) is ``mtlwb.methods.encodings``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .labels import IGNORE_INDEX
from .task import Task

DEPTH_MU = 2.3618     # JTR ref. code, NYUv2 depth statistics (reused unchanged for Cityscapes there)
DEPTH_SIGMA = 1.5876


def regression_unit(task: Task, values: torch.Tensor) -> torch.Tensor:
    """[B, C] in the task's unit → Φ((y − loc) / scale) ∈ (0, 1), as JTR's depth encoding."""
    return 0.5 * (1.0 + torch.erf((values - task.loc) / (task.scale * 2.0 ** 0.5)))


def gumbel_noise(like: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """g = −log(−log u), u ~ U(0, 1); drawn explicitly so two code paths can share one draw."""
    u = torch.rand(like.shape, generator=generator, device=like.device, dtype=like.dtype)
    return -torch.log(-torch.log(u.clamp(1e-10, 1.0 - 1e-7)))


def segmentation_prediction(logits: torch.Tensor, hard: bool = True, tau: float = 1.0,
                            noise: torch.Tensor | None = None) -> torch.Tensor:
    """logits [B, C, H, W] → one-hot (hard, straight-through) or softmax (soft) [B, C, H, W].

    Hard: y = softmax((logits + g) / τ); forward value one_hot(argmax y), backward gradient of y (Jang et al. 2017).
    """
    if not hard:
        return logits.softmax(dim=1)
    g = gumbel_noise(logits) if noise is None else noise
    y = ((logits + g) / tau).softmax(dim=1)
    # max(dim=1).indices == argmax(dim=1) (first maximum on ties) but ~10x faster over NCHW channels on CPU
    index = y.detach().max(dim=1, keepdim=True).indices
    one_hot = torch.zeros_like(y, memory_format=torch.contiguous_format).scatter_(1, index, 1.0)
    return one_hot - y.detach() + y


def segmentation_label(target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """target [B, H, W] long (−1 = ignore) → one-hot [B, C, H, W], ignore pixels all-zero."""
    valid = (target != IGNORE_INDEX).unsqueeze(1)
    one_hot = F.one_hot(target.clamp(0, num_classes - 1), num_classes).permute(0, 3, 1, 2)
    return (one_hot * valid).float()


def depth_by_max(depth: torch.Tensor) -> torch.Tensor:
    """MTPSL: [B, 1, H, W] / per-sample max (ref. code: batch 1, so the max is per sample)."""
    return depth / (depth.amax(dim=(1, 2, 3), keepdim=True) + 1e-12)


def depth_by_cdf(depth: torch.Tensor, mu: float = DEPTH_MU, sigma: float = DEPTH_SIGMA) -> torch.Tensor:
    """JTR: Φ((d − μ) / σ) ∈ (0, 1), smooth and unbounded-input-safe, unlike division by a max."""
    return 0.5 * (1.0 + torch.erf((depth - mu) / (sigma * 2.0 ** 0.5)))


def normal_unit(normal: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] in [−1, 1] → [0, 1]."""
    return (normal + 1.0) / 2.0
