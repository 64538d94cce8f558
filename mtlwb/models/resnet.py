"""ResNet encoders (He et al., CVPR 2016), dilated for dense prediction.

Module names follow torchvision's state-dict layout (conv1, bn1, layer1..4,
downsample) so that a local ImageNet checkpoint in that layout loads with
``load_backbone_weights``. The dilated variants replace the strides of the
last stages by dilation (DeepLab), giving output stride 8.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 3, stride, dilation, dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, dilation, dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, dilation, dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, width * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class ResNet(nn.Module):
    """Image [B, 3, H, W] -> feature [B, out_channels, H/s, W/s]."""

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: list[int],
                 widths: list[int], dilated: bool = True, stem_width: int = 64,
                 deep_stem_pool: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, stem_width, 7 if deep_stem_pool else 3,
                               2, 3 if deep_stem_pool else 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1) if deep_stem_pool else nn.Identity()
        self.cin = stem_width
        strides = [1, 2, 2, 2][: len(layers)]
        dilations = [1] * len(layers)
        if dilated and len(layers) == 4:  # output stride 8: stages 3, 4 dilate
            strides[2:], dilations[2:] = [1, 1], [2, 4]
        stages = [self._stage(block, w, n, s, d) for w, n, s, d in zip(widths, layers, strides, dilations)]
        for i, stage in enumerate(stages, 1):
            self.add_module(f"layer{i}", stage)
        self.num_stages = len(stages)
        self.out_channels = widths[-1] * block.expansion

    def _stage(self, block, width: int, blocks: int, stride: int, dilation: int) -> nn.Sequential:
        down = None
        if stride != 1 or self.cin != width * block.expansion:
            down = nn.Sequential(nn.Conv2d(self.cin, width * block.expansion, 1, stride, bias=False),
                                 nn.BatchNorm2d(width * block.expansion))
        mods = [block(self.cin, width, stride, max(1, dilation // 2), down)]
        self.cin = width * block.expansion
        mods += [block(self.cin, width, 1, dilation) for _ in range(blocks - 1)]
        return nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{i}")(x)
        return x


def resnet18(dilated: bool = True) -> ResNet:
    return ResNet(BasicBlock, [2, 2, 2, 2], [64, 128, 256, 512], dilated)


def resnet50(dilated: bool = True) -> ResNet:
    return ResNet(Bottleneck, [3, 4, 6, 3], [64, 128, 256, 512], dilated)


class MultiScaleResNet(ResNet):
    """A ResNet (strides 4, 8, 16, 32; no dilation) whose four stage outputs are resized bilinearly to half the
    stride-4 size (stride 8) and concatenated: 64 + 128 + 256 + 512 = 960 channels for ResNet-18.

    Why: DiffusionMTL's network (prismformore/DiffusionMTL ``models/diffusion_net.py``, like ATRC's and MTI-Net's
    multi-scale heads) reads all stages, not only the deepest one; as a backbone, any method can use it.
    """

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: list[int], widths: list[int]) -> None:
        super().__init__(block, layers, widths, dilated=False)
        self.out_channels = sum(w * block.expansion for w in widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        stages = []
        for i in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{i}")(x)
            stages.append(x)
        size = (stages[0].shape[-2] // 2, stages[0].shape[-1] // 2)            # stride 8 (int(h4 * 0.5))
        return torch.cat([F.interpolate(s, size=size, mode="bilinear", align_corners=False) for s in stages], 1)


def resnet18_multiscale() -> MultiScaleResNet:
    return MultiScaleResNet(BasicBlock, [2, 2, 2, 2], [64, 128, 256, 512])


def resnet_small() -> ResNet:
    """The CPU-sized default: three basic stages, output stride 8, 128 channels."""
    return ResNet(BasicBlock, [1, 1, 1], [32, 64, 128], dilated=False, stem_width=32,
                  deep_stem_pool=False)


def load_backbone_weights(encoder: ResNet, path: str | Path) -> None:
    """Load a local torchvision-layout ImageNet state dict; the fc layer is dropped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"backbone_weights={str(path)!r}: no such file")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    own = encoder.state_dict()
    wrong = [f"{k} {tuple(v.shape)} != {tuple(own[k].shape)}" for k, v in state.items()
             if k in own and v.shape != own[k].shape]
    if wrong:
        raise ValueError(f"backbone_weights={str(path)!r}: tensor shapes do not match the encoder ({wrong[:3]})")
    missing, unexpected = encoder.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"backbone_weights={str(path)!r}: does not match the encoder "
                         f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
