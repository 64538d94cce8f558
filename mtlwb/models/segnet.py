"""SegNet (Badrinarayanan et al., 2017) in the MTAN "split" form used by MTPSL and JTR.

A VGG-16-like encoder (widths 64-128-256-512-512; two 3x3 conv-BN-ReLU in
the first two stages, three in the deeper ones) with 2x2 max-pooling that
remembers its indices, and a mirrored decoder that unpools with those
indices. All tasks share the whole encoder-decoder; each task owns only a
small head (conv3x3 + conv1x1) on the 64-channel full-resolution decoder
output. So in our MultiTaskNet, ``encode`` returns that full-resolution
feature [B, 64, H, W] (not a stride-8 one); the 512-channel bottleneck is
returned beside it (``MultiTaskNet.encode_parts``, ``Step.bottleneck``) for
methods that want it (MTPSL compares bottleneck codes).

Unpooling is given the pre-pool size, so any input of at least 32x32 works
(288x384 NYUv2, 128x256 Cityscapes, 512x512 PASCAL).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

WIDTHS = (64, 128, 256, 512, 512)


def conv_layer(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _stage(cin: int, cout: int, n: int) -> nn.Sequential:
    return nn.Sequential(conv_layer(cin, cout), *[conv_layer(cout, cout) for _ in range(n - 1)])


class SegNet(nn.Module):
    """Image [B, 3, H, W] -> (shared decoder feature [B, 64, H, W], bottleneck [B, 512, H/32, W/32])."""

    def __init__(self, widths: tuple[int, ...] = WIDTHS, in_channels: int = 3) -> None:
        super().__init__()
        convs = [2, 2, 3, 3, 3]
        chans = [in_channels, *widths]
        self.encoder = nn.ModuleList([_stage(chans[i], chans[i + 1], convs[i]) for i in range(5)])
        # decoder stage i maps widths[i] -> widths[i-1] (64 for the last), mirrored conv counts
        outs = [widths[0], *widths[:-1]]
        self.decoder = nn.ModuleList([_stage(widths[i], outs[i], convs[i]) for i in reversed(range(5))])
        self.pool = nn.MaxPool2d(2, 2, return_indices=True)
        self.unpool = nn.MaxUnpool2d(2, 2)
        self.out_channels = widths[0]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        indices, sizes = [], []
        for stage in self.encoder:
            x = stage(x)
            sizes.append(x.shape[-2:])
            x, idx = self.pool(x)                  # [B, w_i, h/2^(i+1), w/2^(i+1)]
            indices.append(idx)
        bottleneck = x                             # [B, 512, H/32, W/32]
        for stage, idx, size in zip(self.decoder, reversed(indices), reversed(sizes)):
            x = self.unpool(x, idx, output_size=size)
            x = stage(x)
        return x, bottleneck                       # [B, 64, H, W], [B, 512, H/32, W/32]


class SegNetHead(nn.Module):
    """MTAN task head: conv3x3 (64 -> 64) + conv1x1 (64 -> channels)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cin, 3, padding=1)
        self.out = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        x = self.out(self.conv(x))                 # [B, cout, h, w]
        if tuple(x.shape[-2:]) != tuple(size):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return x
