"""MTPSL's mapping network in its published layout (``arch="reference"``).

The layout of ``Mapfns`` in the MTPSL reference code (VICO-UoE/MTPSL, ``model/mapfns.py``), rebuilt here:

    stem_t:   conv3×3(C_t → 64) → norm → ReLU                       one per task, full resolution
    M:        five SegNet encoder stages, widths 64-128-256-512-512 with 2, 2, 3, 3, 3 convs;
              every conv is conv3×3 → norm → FiLM(γ[:, pair], β[:, pair]) → ReLU, and each stage ends
              with a 2×2 max-pool
    output:   the last pooled map, [N, 512, H/32, W/32] — the shape of the SegNet backbone's bottleneck,
              which is what the ref. compares it with (``feat[0]`` of its SegNet)

γ, β are tables [C, T(T−1)] (one column per ordered task pair, identity at start). Parameter count with NYUv2's
13/1/3 input channels: 14,819,328 (stems and M together, as ``Mapfns``); Cityscapes' 7/1: 14,780,160.

Normalization: the ref. calls the network once per (sample, pair) map, i.e. its BatchNorm always sees batch
size 1 in training, so it normalizes every map by its own per-channel statistics. Here all the triples of a
batch go through in one call, so that norm is GroupNorm(C, C) (per map, per channel, with the same affine
weight and bias as the BatchNorm: same parameter count), and the batched output equals the ref.'s per-map
one. BatchNorm's running statistics are used only in evaluation mode, which MTPSL never runs its mapping
network in; a ref. checkpoint's running statistics are therefore dropped on loading
(``mtlwb.experiment.reference_checkpoints``).

The stems, and the first conv of M, do not depend on the pair: they run once per distinct (sample, task) map and
the triples gather their rows after that conv (``rows``), as in the compact network.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .base import Step

WIDTH = 64
STAGE_WIDTHS = (64, 128, 256, 512, 512)
STAGE_CONVS = (2, 2, 3, 3, 3)
OUT_CHANNELS = STAGE_WIDTHS[-1]
OUT_STRIDE = 2 ** len(STAGE_WIDTHS)


def per_map_norm(channels: int) -> nn.GroupNorm:
    """BatchNorm at batch size 1 in training mode, for a batch of maps: per map, per channel, affine."""
    return nn.GroupNorm(channels, channels)


def reference_stems(in_channels: Sequence[int]) -> nn.ModuleList:
    """One conv3×3 → norm → ReLU per task: [M, C_t, H, W] → [M, 64, H, W] (ref. ``pred_encoder_source``)."""
    return nn.ModuleList([nn.Sequential(nn.Conv2d(c, WIDTH, 3, padding=1), per_map_norm(WIDTH), nn.ReLU())
                          for c in in_channels])


class PairFiLMConv(nn.Module):
    """conv3×3 → per-map norm → FiLM(γ[:, pair], β[:, pair]) → ReLU (ref. ``conv_task``)."""

    def __init__(self, cin: int, cout: int, num_pairs: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm = per_map_norm(cout)
        self.gamma = nn.Parameter(torch.ones(cout, num_pairs))
        self.beta = nn.Parameter(torch.zeros(cout, num_pairs))

    def forward(self, x: torch.Tensor, pair: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """x [M, cin, h, w], pair [N] → [N, cout, h, w]; ``rows`` [N] picks each triple's map (None: M = N).

        conv and norm are per map and pair-independent, so with ``rows`` they run on the M distinct maps only.
        """
        x = self.norm(self.conv(x))
        if rows is not None:
            x = x[rows]                                               # [N, cout, h, w]
        gamma = self.gamma[:, pair].t()[:, :, None, None]             # [N, cout, 1, 1]
        beta = self.beta[:, pair].t()[:, :, None, None]
        return F.relu(torch.addcmul(beta, x, gamma))


class ReferenceMappingNet(nn.Module):
    """Stem outputs [M, 64, H, W] → [N, 512, H/32, W/32]: the pair-conditioned SegNet encoder of ``Mapfns``."""

    out_channels = OUT_CHANNELS
    stride = OUT_STRIDE

    def __init__(self, num_pairs: int) -> None:
        super().__init__()
        stages, cin = [], WIDTH
        for width, convs in zip(STAGE_WIDTHS, STAGE_CONVS):
            stages.append(nn.ModuleList([PairFiLMConv(cin if i == 0 else width, width, num_pairs)
                                         for i in range(convs)]))
            cin = width
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor, pair: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        for s, stage in enumerate(self.stages):
            for i, layer in enumerate(stage):
                x = layer(x, pair, rows if s == 0 and i == 0 else None)
            x = F.max_pool2d(x, 2)                                    # [N, w_s, H/2^(s+1), W/2^(s+1)]
        return x


def reference_anchor(step: Step) -> torch.Tensor:
    """The backbone feature the reference mapping output is compared with: [B, 512, h, w].

    The ref. compares with its SegNet's bottleneck (512 channels, stride 32). mtlwb's ``segnet`` backbone hands
    the methods its 64-channel decoder output as ``features`` and its bottleneck as ``step.bottleneck``, which is
    used when present; otherwise ``features`` must have 512 channels (e.g. ``resnet18``; a resolution other than
    H/32 is met by interpolating the mapping output, as for the compact network).
    """
    f = step.bottleneck if step.bottleneck is not None else step.features
    if f.shape[1] != OUT_CHANNELS:
        raise ValueError(f"mtpsl.arch='reference' compares its {OUT_CHANNELS}-channel output with the backbone's "
                         f"bottleneck, but the backbone gives {f.shape[1]} channels and no bottleneck; use "
                         "backbone='segnet' (or another 512-channel backbone) or mtpsl.arch='compact'")
    return f
