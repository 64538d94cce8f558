"""Hard-parameter-sharing multi-task network: one encoder, one head per task.

The forward pass is split in two (``encode`` then ``decode``) so that a method
can sit between them and turn the shared feature into per-task features
(the task-prototype method does; the others pass the shared feature through).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..ops import channel_normalize
from ..tasks import TaskSpec
from .heads import ASPPHead, LightHead
from .resnet import load_backbone_weights, resnet18, resnet50, resnet_small
from .segnet import SegNet, SegNetHead

# "segnet": the MTAN/MTPSL/JTR SegNet; its shared feature is the full-resolution 64-channel decoder output.
BACKBONES = ("resnet_small", "resnet18", "resnet50", "segnet")


def build_encoder(name: str) -> nn.Module:
    if name == "resnet_small":
        return resnet_small()
    if name == "resnet18":
        return resnet18(dilated=True)
    if name == "resnet50":
        return resnet50(dilated=True)
    if name == "segnet":
        return SegNet()
    raise ValueError(f"backbone={name!r}: allowed {BACKBONES}")


class MultiTaskNet(nn.Module):
    def __init__(self, tasks: Sequence[TaskSpec], backbone: str = "resnet_small",
                 backbone_weights: str | None = None) -> None:
        super().__init__()
        self.tasks = list(tasks)
        self.encoder = build_encoder(backbone)
        if backbone_weights:
            load_backbone_weights(self.encoder, backbone_weights)
        self.feature_channels: int = self.encoder.out_channels
        head = {"resnet_small": LightHead, "segnet": SegNetHead}.get(backbone, ASPPHead)
        self.heads = nn.ModuleDict({t.name: head(self.feature_channels, t.channels) for t in self.tasks})

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> shared feature [B, C, H/8, W/8] (SegNet: [B, 64, H, W])."""
        return self.encoder(images)

    def decode(self, task_features: dict[str, torch.Tensor], size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """Per-task features -> predictions at ``size``; normals are unit vectors."""
        preds = {}
        for t in self.tasks:
            out = self.heads[t.name](task_features[t.name], size)
            if t.kind == "normal":
                out = channel_normalize(out, eps=1e-6)
            preds[t.name] = out
        return preds

    def forward(self, images: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        features = self.encode(images)
        preds = self.decode({t.name: features for t in self.tasks}, images.shape[-2:])
        return preds, features
