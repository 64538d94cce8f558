"""Photometric RandAugment of the JTR reference loader (``ImgAugment``), on tensors, deterministic by generator.

The JTR code augments every view's image with a RandAugment variant restricted to photometric operations, so the
dense labels never need to follow a geometric change: 2 operations per image, each drawn uniformly from

    Identity, Brightness, Color, Contrast, Sharpness, Posterize, Solarize, AutoContrast, Equalize

with a magnitude bin drawn uniformly from [0, magnitude) out of 31 bins (magnitude 6), and a random sign for the
signed operations. Strengths per bin: Brightness / Color / Contrast / Sharpness factor 1 ± linspace(0, 0.9, 31);
Posterize keeps 8 − round(bin / 7.5) bits; Solarize inverts pixels above linspace(1, 0, 31)[bin] (255 → 0 on
8-bit images in the reference).

The image operations come from kornia (``kornia.enhance``: sharpness, posterize, solarize, equalize); Brightness,
Color and Contrast are written as the blends the reference uses (torchvision's definitions: scale; blend with the
grayscale image; blend with the grayscale mean), because kornia's functions of those names are defined
differently (additive brightness, HSV saturation, contrast without the mean). AutoContrast stretches each channel to
[0, 1]. Parameters are drawn on the CPU generator the trainer passes (resume replays them); images are [3, H, W]
in [0, 1] and stay in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import kornia.enhance as K
import torch

OPS = ("Identity", "Brightness", "Color", "Contrast", "Sharpness", "Posterize", "Solarize", "AutoContrast",
       "Equalize")
SIGNED = {"Brightness", "Color", "Contrast", "Sharpness"}


@dataclass(frozen=True)
class RandAugmentOptions:
    num_ops: int = 2
    magnitude: int = 6            # bins drawn uniformly from [0, magnitude)
    num_bins: int = 31

    def __post_init__(self) -> None:
        if self.num_ops < 0:
            raise ValueError(f"randaugment.num_ops={self.num_ops}: must be >= 0")
        if not 1 <= self.magnitude <= self.num_bins:
            raise ValueError(f"randaugment.magnitude={self.magnitude}: must be in [1, num_bins={self.num_bins}]")


def _gray(image: torch.Tensor) -> torch.Tensor:
    return (0.2989 * image[0] + 0.587 * image[1] + 0.114 * image[2])[None]          # [1, H, W]


def _blend(image: torch.Tensor, other: torch.Tensor, factor: float) -> torch.Tensor:
    return (factor * image + (1.0 - factor) * other).clamp(0.0, 1.0)


def apply_op(image: torch.Tensor, op: str, level: float) -> torch.Tensor:
    """One operation at strength ``level`` (a factor offset, bit count or threshold, as drawn) on [3, H, W]."""
    if op == "Identity":
        return image
    if op == "Brightness":
        return (image * (1.0 + level)).clamp(0.0, 1.0)
    if op == "Color":
        return _blend(image, _gray(image), 1.0 + level)
    if op == "Contrast":
        return _blend(image, _gray(image).mean(), 1.0 + level)
    if op == "Sharpness":
        return K.sharpness(image[None], 1.0 + level)[0].clamp(0.0, 1.0)
    if op == "Posterize":
        return K.posterize(image[None], int(level))[0]            # keep the top ``level`` bits of the 8-bit value
    if op == "Solarize":
        return K.solarize(image[None], thresholds=level)[0]
    if op == "AutoContrast":
        lo = image.amin(dim=(1, 2), keepdim=True)
        hi = image.amax(dim=(1, 2), keepdim=True)
        return torch.where(hi > lo, (image - lo) / (hi - lo).clamp_min(1e-12), image)
    if op == "Equalize":
        return K.equalize(image[None])[0]
    raise ValueError(f"randaugment op {op!r}: allowed {OPS}")


def level_of(op: str, bin_index: int, num_bins: int) -> float:
    """The reference's strength table: bin → factor offset, kept bits or solarize threshold (in [0, 1])."""
    if op in SIGNED:
        return 0.9 * bin_index / (num_bins - 1)
    if op == "Posterize":
        return float(8 - round(bin_index / ((num_bins - 1) / 4)))
    if op == "Solarize":
        return 1.0 - bin_index / (num_bins - 1)
    return 0.0


def rand_augment(image: torch.Tensor, gen: torch.Generator, options: RandAugmentOptions = RandAugmentOptions()
                 ) -> torch.Tensor:
    """image [3, H, W] in [0, 1] → augmented copy; every draw comes from ``gen`` (CPU)."""
    for _ in range(options.num_ops):
        op = OPS[int(torch.randint(len(OPS), (), generator=gen))]
        bin_index = int(torch.randint(options.magnitude, (), generator=gen))
        level = level_of(op, bin_index, options.num_bins)
        if op in SIGNED and bool(torch.randint(2, (), generator=gen)):
            level = -level
        image = apply_op(image, op, level)
    return image
