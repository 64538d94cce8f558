"""Per-task encodings of predictions and labels into comparable [0, 1]-ish maps.

Both prediction-consistency methods feed predictions and ground truth of different tasks into one network, so each
task is first brought to a common, bounded range, and a prediction must look like a label of the same task:

    segmentation  prediction → one-hot by straight-through Gumbel-softmax (τ = 1), or the plain softmax ("soft")
                  label      → one-hot, ignore pixels all-zero
    depth         MTPSL (Li, Liu & Bilen, CVPR 2022): d / max(d) per sample
                  JTR (Nishi et al., CVPR 2024):      Φ((d − μ) / σ), Normal CDF, μ = 2.3618, σ = 1.5876 (NYUv2)
    normal        (n + 1) / 2
    edge          prediction → sigmoid(logit); label → as is

Unlabelled ground truth may hold anything (a loader's placeholder, even NaN): ``clean_target`` replaces it with a
neutral value through ``torch.where`` before any arithmetic, so it contributes neither value nor gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..losses import IGNORE_INDEX, valid_pixels
from ..tasks import TaskSpec

DEPTH_MU = 2.3618     # JTR ref. code, NYUv2 depth statistics (reused unchanged for Cityscapes there)
DEPTH_SIGMA = 1.5876
SEG_ENCODINGS = ("hard", "soft")
DEPTH_ENCODINGS = ("max", "cdf")


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


def encode_prediction(task: TaskSpec, pred: torch.Tensor, *, seg: str = "hard", depth: str = "max",
                      tau: float = 1.0, mu: float = DEPTH_MU, sigma: float = DEPTH_SIGMA,
                      noise: torch.Tensor | None = None) -> torch.Tensor:
    """Raw head output [B, C_t, H, W] → encoding [B, C_t, H, W]."""
    if task.kind == "segmentation":
        return segmentation_prediction(pred, hard=seg == "hard", tau=tau, noise=noise)
    if task.kind == "depth":
        return depth_by_max(pred) if depth == "max" else depth_by_cdf(pred, mu, sigma)
    if task.kind == "normal":
        return normal_unit(pred)
    return torch.sigmoid(pred)


def encode_label(task: TaskSpec, target: torch.Tensor, *, depth: str = "max", mu: float = DEPTH_MU,
                 sigma: float = DEPTH_SIGMA) -> torch.Tensor:
    """Cleaned ground truth (see ``clean_target``) → encoding [B, C_t, H, W]."""
    if task.kind == "segmentation":
        return segmentation_label(target, task.channels)
    if task.kind == "depth":
        return depth_by_max(target) if depth == "max" else depth_by_cdf(target, mu, sigma)
    if task.kind == "normal":
        return normal_unit(target)
    return target if target.is_floating_point() else target.float()


def clean_target(task: TaskSpec, target: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
    """Replace the ground truth of unlabelled samples (labelled [B] in {0, 1}) by 'ignore' / zeros."""
    keep = labelled.bool().view(-1, *([1] * (target.dim() - 1)))
    neutral = torch.full_like(target, IGNORE_INDEX) if task.kind == "segmentation" else torch.zeros_like(target)
    return torch.where(keep, target, neutral)


def valid_mask(task: TaskSpec, target: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
    """[B, 1, H, W] float: 1 where the sample is labelled for the task and its ground truth is defined."""
    return valid_pixels(task, clean_target(task, target, labelled)).float() * labelled.float().view(-1, 1, 1, 1)


def joint_valid_mask(tasks: list[TaskSpec], targets: dict[str, torch.Tensor], labelled: torch.Tensor,
                     like: torch.Tensor) -> torch.Tensor:
    """JTR: [B, 1, H, W] intersection of the valid masks of each sample's labelled tasks (all ones if none)."""
    mask = torch.ones_like(like[:, :1])
    for i, t in enumerate(tasks):
        lab = labelled[:, i].float().view(-1, 1, 1, 1)
        # an unlabelled task leaves the mask unchanged: 1 − lab + lab · valid
        mask = mask * (1.0 - lab + lab * valid_mask(t, targets[t.name], labelled[:, i]))
    return mask
