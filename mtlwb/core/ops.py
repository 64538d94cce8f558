"""Small tensor operations that PyTorch's CPU build does slowly over the channel axis of NCHW maps.

``F.cosine_similarity``/``F.normalize`` over dim 1 and ``argmax(1)`` run 10-100x slower on CPU than the same
arithmetic written as plain reductions (profiled in benchmarks/; e.g. 56 ms vs 0.4 ms for a [32, 3, 64, 80]
cosine). Losses, heads, metrics and methods all use these.
"""

from __future__ import annotations

import torch


def channel_cosine(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """cos(a, b) over dim 1 ([N, C, ...] × 2 → [N, ...]), the value of ``F.cosine_similarity(a, b, dim=1, eps)``.

    Each squared norm is clamped at eps² (each norm at eps), so a zero vector gives cos 0 with a finite gradient.
    """
    e2 = eps * eps   # one rsqrt per side: the product of two clamped squares underflows float32 at eps=1e-12
    return (a * b).sum(dim=1) * (a * a).sum(dim=1).clamp_min(e2).rsqrt() * (b * b).sum(dim=1).clamp_min(e2).rsqrt()


def channel_normalize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """x / max(||x||, eps) over dim 1, the value of ``F.normalize(x, dim=1, eps=eps)``."""
    return x * (x * x).sum(dim=1, keepdim=True).clamp_min(eps * eps).rsqrt()


def channel_argmax(x: torch.Tensor) -> torch.Tensor:
    """Index of the largest channel ([N, C, ...] → [N, ...]); ``max().indices`` is the fast path on CPU."""
    return x.max(dim=1).indices
