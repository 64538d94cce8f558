"""Training-time augmentation of a whole batch, deterministic given a torch.Generator.

The papers (MTAN, MTPSL, JTR) train with a random scale-crop: pick s in
{1.0, 1.2, 1.5}, crop an (H/s)x(W/s) window, resize it back to HxW. A crop
that is s times closer makes the scene look s times nearer, so depth is
divided by s. Labels, depth and edges use nearest resizing so that ignore
values (-1, 0) are never blended into valid ones; the image is bilinear.
Normals (``normal_mode``): ``"bilinear"`` is the references' (MTPSL's and
JTR's RandomScaleCrop, align_corners=True): interpolated normals are shorter
than 1 between differing directions, and an invalid (zero) pixel blends into
its valid neighbours (which the references' dot-product normal loss then
weighs by their length); ``"nearest"`` keeps every normal a unit vector (or
zero) and the invalid pixels apart. A horizontal flip mirrors the scene, so
the normal's x component changes sign. Photometric jitter touches only the
image.

Parameters are drawn per sample on the CPU generator (so a resumed epoch,
reseeded from (seed, epoch), replays the same augmentations whatever the
device) and applied to tensors where they live. Only the training path
calls this; evaluation sees the data as stored.

Image-level labels (classification, regression) pass through unchanged: a label of the whole scene, kept for the
crop — an approximation where a crop cuts an object out of view (num_objects, dominant_class) or moves the
optical axis off the crop's centre (camera_pitch, by at most a few degrees at s = 1.5).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..tasks import TaskSpec

SCALES = (1.0, 1.2, 1.5)
NORMAL_MODES = ("bilinear", "nearest")


@dataclass(frozen=True)
class AugmentOptions:
    scales: tuple[float, ...] = SCALES
    flip: bool = True
    brightness: float = 0.2     # factor drawn from [1 - b, 1 + b]
    contrast: float = 0.2
    saturation: float = 0.2
    normal_mode: str = "nearest"   # "bilinear": the references' normal crop (see the module docstring)

    def __post_init__(self) -> None:
        if self.normal_mode not in NORMAL_MODES:
            raise ValueError(f"normal_crop={self.normal_mode!r}: allowed {list(NORMAL_MODES)}")


def _uniform(gen: torch.Generator, spread: float) -> float:
    return 1.0 + spread * (2.0 * float(torch.rand((), generator=gen)) - 1.0)


def _resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """[C, h, w] -> [C, H, W]; "bilinear_corners": bilinear with align_corners=True (the references' normals)."""
    if mode == "nearest":
        return F.interpolate(x[None].float(), size=size, mode="nearest")[0].to(x.dtype)
    return F.interpolate(x[None], size=size, mode="bilinear", align_corners=mode == "bilinear_corners")[0]


def _jitter(image: torch.Tensor, b: float, c: float, s: float) -> torch.Tensor:
    """image [3, H, W] in [0, 1] -> jittered, clamped to [0, 1]."""
    image = image * b
    mean = image.mean()
    image = (image - mean) * c + mean
    gray = (0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2])[None]   # [1, H, W]
    image = (image - gray) * s + gray
    return image.clamp(0.0, 1.0)


def augment_sample(item: dict, tasks: list[TaskSpec], gen: torch.Generator,
                   options: AugmentOptions = AugmentOptions()) -> dict:
    """One sample's tensors (image [3,H,W], semantic [H,W], depth [1,H,W], ...) -> augmented copy."""
    out = dict(item)
    h, w = item["image"].shape[-2:]
    scale = options.scales[int(torch.randint(len(options.scales), (), generator=gen))]
    ch, cw = int(h / scale), int(w / scale)
    top = int(torch.randint(h - ch + 1, (), generator=gen))
    left = int(torch.randint(w - cw + 1, (), generator=gen))
    flip = options.flip and bool(torch.rand((), generator=gen) < 0.5)
    b, c, s = (_uniform(gen, options.brightness), _uniform(gen, options.contrast),
               _uniform(gen, options.saturation))

    def geometric(x: torch.Tensor, mode: str) -> torch.Tensor:
        squeeze = x.dim() == 2                                   # segmentation [H, W]
        x = x[None] if squeeze else x
        if scale != 1.0:
            x = _resize(x[:, top:top + ch, left:left + cw], (h, w), mode)
        if flip:
            x = x.flip(-1)
        return x[0] if squeeze else x

    out["image"] = _jitter(geometric(item["image"], "bilinear"), b, c, s)
    for t in tasks:
        if t.name not in item or t.image_level:
            continue
        kind = t.kind_object
        bilinear_normal = kind.directional and options.normal_mode == "bilinear"
        x = kind.rescaled(geometric(item[t.name], "bilinear_corners" if bilinear_normal else "nearest"), scale)
        out[t.name] = kind.flipped(x) if flip else x
    return out


def augment_batch(batch: dict, tasks: list[TaskSpec], gen: torch.Generator,
                  options: AugmentOptions = AugmentOptions()) -> dict:
    """Augment every sample of a collated batch independently; non-tensor and index entries pass through."""
    keys = ["image"] + [t.name for t in tasks if t.name in batch]
    n = batch["image"].shape[0]
    samples = [augment_sample({k: batch[k][i] for k in keys}, tasks, gen, options) for i in range(n)]
    out = dict(batch)
    for k in keys:
        out[k] = torch.stack([smp[k] for smp in samples])
    return out
