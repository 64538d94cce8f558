"""Hard-parameter-sharing multi-task network: one encoder, one head per task.

Dense tasks get a convolutional head (by backbone); image-level tasks (classification, regression) a pooled
MLP head (``ImageLevelHead``) whatever the backbone. The forward pass is split in two (``encode`` then
``decode``) so that a method can sit between them and turn the shared feature into per-task features
(the task-prototype method does; the others pass the shared feature through).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from ..tasks import TaskSpec
from .heads import ASPPHead, ImageLevelHead, LightHead
from .resnet import load_backbone_weights, resnet18, resnet18_multiscale, resnet50, resnet_small
from .segnet import SegNet, SegNetHead

# "segnet": the MTAN/MTPSL/JTR SegNet; its shared feature is the full-resolution 64-channel decoder output.
# "resnet18_multiscale": ResNet-18's four stages resized to stride 8 and concatenated (960 channels; DiffusionMTL's).
BACKBONES = ("resnet_small", "resnet18", "resnet50", "segnet", "resnet18_multiscale")
# "imagenet": images in [0, 1] are standardized by the ImageNet statistics that pretrained backbones expect
# (MTL-PyTorch's PASCAL-Context pipeline); the data itself stays in [0, 1] for figures and augmentation.
IMAGE_NORMS = ("auto", "none", "imagenet")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def build_encoder(name: str) -> nn.Module:
    if name == "resnet_small":
        return resnet_small()
    if name == "resnet18":
        return resnet18(dilated=True)
    if name == "resnet50":
        return resnet50(dilated=True)
    if name == "resnet18_multiscale":
        return resnet18_multiscale()
    if name == "segnet":
        return SegNet()
    raise ValueError(f"backbone={name!r}: allowed {BACKBONES}")


class Encoded(NamedTuple):
    """What the encoder gives: the shared feature the heads and methods read, and the backbone's deepest feature
    where it is not that one (SegNet's bottleneck [B, 512, H/32, W/32]; None for the ResNets)."""

    features: torch.Tensor
    bottleneck: torch.Tensor | None = None


class MultiTaskNet(nn.Module):
    """``heads=False``: the encoder only, for a method that turns features into predictions itself
    (``Method.owns_heads``, e.g. DiffusionMTL's denoiser and its readout heads); ``decode`` is then refused."""

    def __init__(self, tasks: Sequence[TaskSpec], backbone: str = "resnet_small",
                 backbone_weights: str | None = None, image_norm: str = "none", heads: bool = True) -> None:
        super().__init__()
        if image_norm not in ("none", "imagenet"):
            raise ValueError(f"image_norm={image_norm!r}: allowed 'none', 'imagenet' (config 'auto' resolves to one)")
        self.tasks = list(tasks)
        self.image_norm = image_norm
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.encoder = build_encoder(backbone)
        if backbone_weights:
            load_backbone_weights(self.encoder, backbone_weights)
        self.feature_channels: int = self.encoder.out_channels
        head = {"resnet_small": LightHead, "segnet": SegNetHead}.get(backbone, ASPPHead)
        self.heads = nn.ModuleDict({t.name: ImageLevelHead(self.feature_channels, t.channels, loc=t.loc, scale=t.scale)
                                    if t.image_level else head(self.feature_channels, t.channels)
                                    for t in self.tasks} if heads else {})

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in [0, 1] -> shared feature [B, C, H/8, W/8] (SegNet: [B, 64, H, W])."""
        return self.encode_parts(images).features

    def encode_parts(self, images: torch.Tensor) -> Encoded:
        """The shared feature and, for SegNet, its bottleneck, from one pass (returned, never kept on the module)."""
        if self.image_norm == "imagenet":
            images = (images - self.mean.to(images.dtype)) / self.std.to(images.dtype)
        out = self.encoder(images)
        return Encoded(*out) if isinstance(self.encoder, SegNet) else Encoded(out)

    def decode(self, task_features: dict[str, torch.Tensor], size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """Per-task features -> predictions: dense tasks [B, C, *size] (normals unit vectors), image-level [B, C]."""
        if not len(self.heads):
            raise RuntimeError("MultiTaskNet was built without heads (heads=False: the method owns them); "
                               "predict through mtlwb.methods.forward_step")
        preds = {}
        for t in self.tasks:
            preds[t.name] = t.kind_object.activate(self.heads[t.name](task_features[t.name], size))
        return preds

    def forward(self, images: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        features = self.encode(images)
        preds = self.decode({t.name: features for t in self.tasks}, images.shape[-2:])
        return preds, features
