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

Each task kind chooses its encoding (``TaskKind.encode_prediction`` / ``encode_label``, built from
``mtlwb.tasks.encoding``); this module adds what the methods share: the image-level broadcast, clean targets and
the valid masks.

Unlabelled ground truth may hold anything (a loader's placeholder, even NaN): ``clean_target`` replaces it with a
neutral value through ``torch.where`` before any arithmetic, so it contributes neither value nor gradient.
"""

from __future__ import annotations

import torch

from ..tasks import TaskSpec
from ..tasks.encoding import (
    DEPTH_MU,
    DEPTH_SIGMA,
    depth_by_cdf,
    depth_by_max,
    gumbel_noise,
    normal_unit,
    regression_unit,
    segmentation_label,
    segmentation_prediction,
)
from ..tasks.labels import valid_pixels, valid_samples

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


def encode_prediction(task: TaskSpec, pred: torch.Tensor, *, seg: str = "hard", depth: str = "max",
                      tau: float = 1.0, mu: float = DEPTH_MU, sigma: float = DEPTH_SIGMA,
                      noise: torch.Tensor | None = None, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Raw head output [B, C_t, H, W] → encoding [B, C_t, H, W]; image-level [B, C_t] → broadcast to ``size``."""
    if task.image_level and size is None:
        raise ValueError(f"encode_prediction: image-level task {task.name!r} needs the map size to broadcast to")
    enc = task.kind_object.encode_prediction(task, pred, seg=seg, depth=depth, tau=tau, mu=mu, sigma=sigma,
                                             noise=noise)
    return broadcast(enc, size) if task.image_level else enc


def encode_label(task: TaskSpec, target: torch.Tensor, *, depth: str = "max", mu: float = DEPTH_MU,
                 sigma: float = DEPTH_SIGMA, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Cleaned ground truth (see ``clean_target``) → encoding [B, C_t, H, W] (image-level: broadcast to ``size``)."""
    if task.image_level and size is None:
        raise ValueError(f"encode_label: image-level task {task.name!r} needs the map size to broadcast to")
    enc = task.kind_object.encode_label(task, target, depth=depth, mu=mu, sigma=sigma)
    return broadcast(enc, size) if task.image_level else enc


def clean_target(task: TaskSpec, target: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
    """Replace the ground truth of unlabelled samples (labelled [B] in {0, 1}) by 'ignore' / zeros (regression:
    also the undefined, non-finite values, which would otherwise survive a multiplication by a zero mask)."""
    return task.kind_object.clean(task, target, labelled)


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


__all__ = ["DEPTH_ENCODINGS", "DEPTH_MU", "DEPTH_SIGMA", "IMAGE_LEVEL_ENCODINGS", "SEG_ENCODINGS", "broadcast",
           "clean_target", "depth_by_cdf", "depth_by_max", "encode_label", "encode_prediction", "gumbel_noise",
           "joint_task_indices", "joint_valid_mask", "normal_unit", "regression_unit", "segmentation_label",
           "segmentation_prediction", "valid_mask"]
