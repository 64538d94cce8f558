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


@dataclass(frozen=True)
class Draw:
    """One sample's augmentation: scale-crop window, flip and jitter factors."""

    scale: float
    top: int
    left: int
    flip: bool
    brightness: float
    contrast: float
    saturation: float

    def crop(self, h: int, w: int) -> tuple[slice, slice]:
        ch, cw = int(h / self.scale), int(w / self.scale)
        return slice(self.top, self.top + ch), slice(self.left, self.left + cw)


def draw(gen: torch.Generator, h: int, w: int, options: AugmentOptions = AugmentOptions()) -> Draw:
    """One sample's parameters, drawn from ``gen`` in a fixed order (scale, top, left, flip, b, c, s), so a batch
    augmented at once and its samples augmented one by one read the same random stream."""
    scale = options.scales[int(torch.randint(len(options.scales), (), generator=gen))]
    ch, cw = int(h / scale), int(w / scale)
    top = int(torch.randint(h - ch + 1, (), generator=gen))
    left = int(torch.randint(w - cw + 1, (), generator=gen))
    flip = options.flip and bool(torch.rand((), generator=gen) < 0.5)
    b, c, s = (_uniform(gen, options.brightness), _uniform(gen, options.contrast),
               _uniform(gen, options.saturation))
    return Draw(scale, top, left, flip, b, c, s)


def _resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """[N, C, h, w] -> [N, C, H, W]; "bilinear_corners": bilinear with align_corners=True (the references' normals)."""
    if mode == "nearest":
        return F.interpolate(x.float(), size=size, mode="nearest").to(x.dtype)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=mode == "bilinear_corners")


def _jitter(image: torch.Tensor, b: float, c: float, s: float) -> torch.Tensor:
    """image [3, H, W] in [0, 1] -> jittered, clamped to [0, 1]."""
    image = image * b
    mean = image.mean()
    image = (image - mean) * c + mean
    gray = (0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2])[None]   # [1, H, W]
    image = (image - gray) * s + gray
    return image.clamp(0.0, 1.0)


def _mode(task: TaskSpec, options: AugmentOptions) -> str:
    """How a target is resampled: unit vectors bilinearly with the references' ``normal_mode``, else nearest."""
    return "bilinear_corners" if task.kind_object.directional and options.normal_mode == "bilinear" else "nearest"


def augment_sample(item: dict, tasks: list[TaskSpec], gen: torch.Generator,
                   options: AugmentOptions = AugmentOptions()) -> dict:
    """One sample's tensors (image [3,H,W], semantic [H,W], depth [1,H,W], ...) -> augmented copy."""
    out = dict(item)
    h, w = item["image"].shape[-2:]
    d = draw(gen, h, w, options)
    rows, cols = d.crop(h, w)

    def geometric(x: torch.Tensor, mode: str) -> torch.Tensor:
        squeeze = x.dim() == 2                                   # segmentation [H, W]
        x = x[None] if squeeze else x
        if d.scale != 1.0:
            x = _resize(x[None, :, rows, cols], (h, w), mode)[0]
        if d.flip:
            x = x.flip(-1)
        return x[0] if squeeze else x

    out["image"] = _jitter(geometric(item["image"], "bilinear"), d.brightness, d.contrast, d.saturation)
    for t in tasks:
        if t.name not in item or t.image_level:
            continue
        kind = t.kind_object
        x = kind.rescaled(geometric(item[t.name], _mode(t, options)), d.scale)
        out[t.name] = kind.flipped(x) if d.flip else x
    return out


def augment_batch(batch: dict, tasks: list[TaskSpec], gen: torch.Generator,
                  options: AugmentOptions = AugmentOptions()) -> dict:
    """Augment every sample of a collated batch independently; non-tensor, index and image-level entries pass
    through.

    Equal, value for value, to ``augment_sample`` on each sample in turn (``tests/test_augment.py``), but with one
    tensor operation per key and crop size instead of one per sample: the parameters are drawn per sample in
    ``augment_sample``'s order (the random stream is the same), the crops of one scale are resized together
    (interpolation works plane by plane, so batching changes no value), and the jitter is applied to the batch.
    Only each image's mean is taken one image at a time: a reduction over the whole batch may sum in another order
    and differ in the last bit, which training would amplify.
    """
    image = batch["image"]
    n, (h, w) = image.shape[0], tuple(image.shape[-2:])
    draws = [draw(gen, h, w, options) for _ in range(n)]
    flipped = torch.tensor([d.flip for d in draws], device=image.device)
    groups: dict[float, list[int]] = {}
    for i, d in enumerate(draws):
        if d.scale != 1.0:
            groups.setdefault(d.scale, []).append(i)

    def geometric(x: torch.Tensor, mode: str, task: TaskSpec | None = None) -> torch.Tensor:
        """[N, ...] → scale-cropped and flipped; a task's targets then as its kind says (``rescaled``: depth
        divided by the scale; ``flipped``: a normal's x negated), each sample as ``augment_sample`` does it."""
        squeeze = x.dim() == 3                                    # segmentation [N, H, W]
        x = x[:, None] if squeeze else x
        out = x.clone()
        for rows in groups.values():
            crops = torch.stack([x[i, :, draws[i].crop(h, w)[0], draws[i].crop(h, w)[1]] for i in rows])
            out[rows] = _resize(crops, (h, w), mode)               # [n_scale, C, H, W]
        if flipped.any():
            out[flipped] = out[flipped].flip(-1)
        out = out[:, 0] if squeeze else out
        if task is not None:
            kind = task.kind_object
            out = torch.stack([kind.flipped(kind.rescaled(o, d.scale)) if d.flip else kind.rescaled(o, d.scale)
                               for o, d in zip(out, draws)])
        return out

    out = dict(batch)
    factors = [torch.tensor([getattr(d, k) for d in draws], dtype=image.dtype, device=image.device).view(-1, 1, 1, 1)
               for k in ("brightness", "contrast", "saturation")]
    b, c, s = factors
    x = geometric(image, "bilinear") * b                          # [N, 3, H, W]
    mean = torch.stack([im.mean() for im in x]).view(-1, 1, 1, 1)
    x = (x - mean) * c + mean
    gray = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None]          # [N, 1, H, W]
    out["image"] = ((x - gray) * s + gray).clamp(0.0, 1.0)
    for t in tasks:
        if t.name in batch and not t.image_level:
            out[t.name] = geometric(batch[t.name], _mode(t, options), t)
    return out
