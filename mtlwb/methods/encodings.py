"""Per-task encodings of predictions and labels into comparable [0, 1]-ish maps.

Both prediction-consistency methods feed predictions and ground truth of different tasks into one network, so each
task is first brought to a common, bounded range, and a prediction must look like a label of the same task:

    segmentation  prediction → one-hot by straight-through Gumbel-softmax (τ = 1), or the plain softmax ("soft")
                  label      → one-hot, ignore pixels all-zero
    depth         MTPSL (Li, Liu & Bilen, CVPR 2022): d / max(d) per sample
                  JTR (Nishi et al., CVPR 2024):      Φ((d − μ) / σ), Normal CDF, μ = 2.3618, σ = 1.5876 (NYUv2)
    normal        (n + 1) / 2
    edge          prediction → sigmoid(logit); label → as is
    classification  prediction → one-hot / softmax of the C logits, as segmentation; label → one-hot (−1: zeros)
    regression      Φ((y − loc) / scale), prediction and label alike (the task's loc / scale, see ``tasks.py``)

Image-level tasks (``image_level_encoding``, an option of both methods): ``"broadcast"`` (default) fills a C-channel
map of the input's size with the image's encoding, constant over positions, so it enters the joint space as one
more group of channels. Why: both methods' networks take per-task maps of one size and compare positions — a
constant map needs no second (vector) branch, works with every layout (compact and reference, any stride) and
leaves the dense tasks' path unchanged; the price is convolutions over constant inputs, C_t more channels.
``"none"`` leaves image-level tasks out of the joint space: they learn from their supervised loss only (the
ablation of putting them in). Undefined image-level labels (class −1, NaN) count as an invalid sample: zero
encoding and, in JTR's joint mask, no valid position.

Unlabelled ground truth may hold anything (a loader's placeholder, even NaN): ``clean_target`` replaces it with a
neutral value through ``torch.where`` before any arithmetic, so it contributes neither value nor gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..objectives.losses import IGNORE_INDEX, valid_pixels, valid_samples
from ..tasks import TaskSpec

DEPTH_MU = 2.3618     # JTR ref. code, NYUv2 depth statistics (reused unchanged for Cityscapes there)
DEPTH_SIGMA = 1.5876
SEG_ENCODINGS = ("hard", "soft")
DEPTH_ENCODINGS = ("max", "cdf")
IMAGE_LEVEL_ENCODINGS = ("broadcast", "none")


def joint_task_indices(tasks: list[TaskSpec], image_level_encoding: str) -> list[int]:
    """Positions in ``tasks`` of the tasks a joint space encodes: all, or the dense ones only (``"none"``)."""
    if image_level_encoding not in IMAGE_LEVEL_ENCODINGS:
        raise ValueError(f"image_level_encoding={image_level_encoding!r}: allowed {IMAGE_LEVEL_ENCODINGS}")
    return [i for i, t in enumerate(tasks) if image_level_encoding == "broadcast" or not t.image_level]


def broadcast(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[B, C] → [B, C, H, W], constant over positions (a view; ``torch.cat`` materializes it)."""
    return x[:, :, None, None].expand(*x.shape, *size)


def regression_unit(task: TaskSpec, values: torch.Tensor) -> torch.Tensor:
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


def encode_prediction(task: TaskSpec, pred: torch.Tensor, *, seg: str = "hard", depth: str = "max",
                      tau: float = 1.0, mu: float = DEPTH_MU, sigma: float = DEPTH_SIGMA,
                      noise: torch.Tensor | None = None, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Raw head output [B, C_t, H, W] → encoding [B, C_t, H, W]; image-level [B, C_t] → broadcast to ``size``."""
    if task.image_level:
        if size is None:
            raise ValueError(f"encode_prediction: image-level task {task.name!r} needs the map size to broadcast to")
        if task.kind == "classification":
            enc = segmentation_prediction(pred[:, :, None, None], hard=seg == "hard", tau=tau,
                                          noise=None if noise is None else noise[:, :, None, None])[:, :, 0, 0]
        else:
            enc = regression_unit(task, pred)
        return broadcast(enc, size)
    if task.kind == "segmentation":
        return segmentation_prediction(pred, hard=seg == "hard", tau=tau, noise=noise)
    if task.kind == "depth":
        return depth_by_max(pred) if depth == "max" else depth_by_cdf(pred, mu, sigma)
    if task.kind == "normal":
        return normal_unit(pred)
    return torch.sigmoid(pred)


def encode_label(task: TaskSpec, target: torch.Tensor, *, depth: str = "max", mu: float = DEPTH_MU,
                 sigma: float = DEPTH_SIGMA, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Cleaned ground truth (see ``clean_target``) → encoding [B, C_t, H, W] (image-level: broadcast to ``size``)."""
    if task.image_level:
        if size is None:
            raise ValueError(f"encode_label: image-level task {task.name!r} needs the map size to broadcast to")
        if task.kind == "classification":
            valid = (target != IGNORE_INDEX).unsqueeze(1)
            enc = F.one_hot(target.clamp(0, task.channels - 1), task.channels).float() * valid     # [B, C]
        else:
            enc = regression_unit(task, target) * valid_samples(task, target).unsqueeze(1)
        return broadcast(enc, size)
    if task.kind == "segmentation":
        return segmentation_label(target, task.channels)
    if task.kind == "depth":
        return depth_by_max(target) if depth == "max" else depth_by_cdf(target, mu, sigma)
    if task.kind == "normal":
        return normal_unit(target)
    return target if target.is_floating_point() else target.float()


def clean_target(task: TaskSpec, target: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
    """Replace the ground truth of unlabelled samples (labelled [B] in {0, 1}) by 'ignore' / zeros (regression:
    also the undefined, non-finite values, which would otherwise survive a multiplication by a zero mask)."""
    keep = labelled.bool().view(-1, *([1] * (target.dim() - 1)))
    if task.kind == "regression":
        keep = keep & torch.isfinite(target)
    ignore = task.kind in ("segmentation", "classification")
    neutral = torch.full_like(target, IGNORE_INDEX) if ignore else torch.zeros_like(target)
    return torch.where(keep, target, neutral)


def valid_mask(task: TaskSpec, target: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
    """[B, 1, H, W] float: 1 where the sample is labelled for the task and its ground truth is defined
    (image-level tasks: [B, 1, 1, 1], the sample's label defined or not, for every position)."""
    if task.image_level:
        valid = valid_samples(task, clean_target(task, target, labelled)) & labelled.bool()
        return valid.float().view(-1, 1, 1, 1)
    return valid_pixels(task, clean_target(task, target, labelled)).float() * labelled.float().view(-1, 1, 1, 1)


def joint_valid_mask(tasks: list[TaskSpec], targets: dict[str, torch.Tensor], labelled: torch.Tensor,
                     like: torch.Tensor) -> torch.Tensor:
    """JTR: [B, 1, H, W] intersection of the valid masks of each sample's labelled tasks (all ones if none).

    ``like``: any [B, ·, H, W] tensor of the maps' size (e.g. the images); ``labelled`` [B, T] in ``tasks`` order.
    """
    mask = torch.ones_like(like[:, :1])
    for i, t in enumerate(tasks):
        lab = labelled[:, i].float().view(-1, 1, 1, 1)
        # an unlabelled task leaves the mask unchanged: 1 − lab + lab · valid
        mask = mask * (1.0 - lab + lab * valid_mask(t, targets[t.name], labelled[:, i]))
    return mask
