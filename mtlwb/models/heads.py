"""Task heads: task feature [B, C, h, w] -> prediction [B, channels, H, W]."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn_relu(cin: int, cout: int, k: int = 3, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (k // 2)
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=pad, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class LightHead(nn.Module):
    """Two conv stages with one 2x upsampling between them, then a 1x1 classifier."""

    def __init__(self, cin: int, cout: int, width: int = 64) -> None:
        super().__init__()
        self.block1 = conv_bn_relu(cin, width)
        self.block2 = conv_bn_relu(width, width // 2)
        self.out = nn.Conv2d(width // 2, cout, 1)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        x = self.block1(x)                                             # [B, w, h, w]
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = self.out(self.block2(x))                                   # [B, cout, 2h, 2w]
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ASPPHead(nn.Module):
    """DeepLab-v3 atrous spatial pyramid pooling head (Chen et al., 2017)."""

    def __init__(self, cin: int, cout: int, width: int = 256, rates: tuple[int, ...] = (6, 12, 18)) -> None:
        super().__init__()
        self.branches = nn.ModuleList([conv_bn_relu(cin, width, 1)] +
                                      [conv_bn_relu(cin, width, 3, r) for r in rates])
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, width, 1, bias=False),
                                  nn.ReLU(inplace=True))
        self.project = conv_bn_relu(width * (len(rates) + 2), width, 1)
        self.refine = conv_bn_relu(width, width)
        self.out = nn.Conv2d(width, cout, 1)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        pooled = self.pool(x).expand(-1, -1, *x.shape[-2:])
        x = self.project(torch.cat([b(x) for b in self.branches] + [pooled], 1))
        x = self.out(self.refine(x))
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ImageLevelHead(nn.Module):
    """Image-level task: global average pooling of the task's feature, then a two-layer MLP → [B, channels].

    Pooling first makes the head independent of the feature's resolution (stride-8 ResNet or full-resolution
    SegNet) and of where in the image the evidence lies. ``loc``, ``scale``: the output is loc + scale · MLP(x), so
    a regression head learns standardized values while it returns the task's unit (classification: 0, 1 = logits).
    """

    def __init__(self, cin: int, cout: int, width: int = 64, loc: float = 0.0, scale: float = 1.0) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(cin, width), nn.ReLU(inplace=True), nn.Linear(width, cout))
        self.loc, self.scale = float(loc), float(scale)

    def forward(self, x: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        pooled = x.mean(dim=(-2, -1))                                  # [B, C]
        return self.mlp(pooled) * self.scale + self.loc                # [B, cout]
