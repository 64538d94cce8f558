"""Random method inputs shared by the method tests: a task list of mixed kinds and a ``Step`` for it.

Imported as ``from tests.helpers.steps import ...``. Every tensor is drawn from one
generator seeded by ``seed``, in a fixed order (per task: prediction, target; then features, then bottleneck), so a
seed names one batch. Predictions, float targets and features are leaves that require grad: a test can check which
of them a loss reaches (ground truth must get none where unlabelled).
"""

from __future__ import annotations

import torch

from mtlwb.methods.base import Refined, Step
from mtlwb.tasks import TaskSpec
from mtlwb.tasks.kinds import Depth

H = W = 16          # map size of a Step
FEAT = 16           # channels of its features, at stride 8

KINDS = [("segmentation", 5), ("depth", 1), ("normal", 3), ("edge", 1), ("segmentation", 2), ("depth", 1)]


def mixed_tasks(T: int) -> list[TaskSpec]:
    """The first ``T`` (1 to 6) of ``KINDS`` as dense tasks t0, t1, …: every dense kind, class counts differing."""
    if not 1 <= T <= len(KINDS):
        raise ValueError(f"mixed_tasks: T={T}: must be in [1, {len(KINDS)}]")
    return [TaskSpec(f"t{i}", k, c, "m", False) for i, (k, c) in enumerate(KINDS[:T])]


def make_step(tasks: list[TaskSpec], labelled: torch.Tensor, *, seed: int = 0, dtype: torch.dtype = torch.float32,
              size: int = H, feature_channels: int = FEAT, feature_stride: int = 8, bottleneck: bool = False,
              depth_holes: bool = False) -> Step:
    """A batch of ``labelled.shape[0]`` samples for ``tasks`` (dense [B, C, size, size] or image-level [B, C]).

    Targets as a loader gives them: segmentation / classification long with −1 = ignore, depth in [0, 5)
    (``depth_holes``: about 10 % zeros, invalid pixels), unit normals, 0/1 edges, regressions around ``loc``.
    ``bottleneck``: a SegNet-like [B, 512, size/32, size/32] deepest feature as well.
    """
    g = torch.Generator().manual_seed(seed)
    B = labelled.shape[0]
    preds, targets = {}, {}
    for t in tasks:
        shape = (B, t.channels) if t.image_level else (B, t.channels, size, size)
        preds[t.name] = (torch.randn(*shape, generator=g) * t.scale + t.loc).to(dtype).requires_grad_()
        tgt = t.kind_object.random_target(t, B, (size, size), g)
        if depth_holes and isinstance(t.kind_object, Depth):
            tgt = tgt * (torch.rand(B, 1, size, size, generator=g) > 0.1)
        targets[t.name] = tgt.to(dtype).requires_grad_() if tgt.is_floating_point() else tgt
    side = size // feature_stride
    features = torch.randn(B, feature_channels, side, side, generator=g).to(dtype).requires_grad_()
    deepest = torch.randn(B, 512, size // 32, size // 32, generator=g).to(dtype) if bottleneck else None
    return Step(torch.zeros(B, 3, size, size, dtype=dtype), features, Refined({}), preds, targets, labelled, deepest)
