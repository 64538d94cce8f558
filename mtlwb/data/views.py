"""Several augmented views of one training batch, for methods whose reference code trains on more than one.

MTPSL's loader returns a second view, a further random scale-crop of the first (``aug_twice``): the supervised
losses read view 0, the cross-task consistency view 1. JTR's returns three (views 1 and 2 are scale-crops of view
0, each), and augments every view's image with a photometric RandAugment: view 0 supervised, view 1 model-side
distance, view 2 the joint network's terms. A method states what it needs in a ``ViewSpec``; the trainer makes the
views here, runs the model once on the concatenated images (BatchNorm sees all views, as in the references) and
hands the extra views to the method in ``Step.views``.

A further view is made from view 0 *as augmented* (its image, labels, depth divided by the scale, normals), with
the same scale-crop as ``augment.py`` (normals resized as ``normal_mode`` says) and no flip or jitter; every draw
comes from the trainer's augmentation generator, so a resumed epoch replays the same views.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..tasks import TaskSpec
from .augment import AugmentOptions, augment_batch
from .randaugment import RandAugmentOptions, rand_augment

PHOTOMETRIC = ("none", "randaugment")


@dataclass(frozen=True)
class ViewSpec:
    extra: int = 0                  # further views per sample (each a random scale-crop of view 0)
    photometric: str = "none"       # applied to every view's image, view 0 included

    def __post_init__(self) -> None:
        if self.extra < 0:
            raise ValueError(f"ViewSpec.extra={self.extra}: must be >= 0")
        if self.photometric not in PHOTOMETRIC:
            raise ValueError(f"ViewSpec.photometric={self.photometric!r}: allowed {PHOTOMETRIC}")

    @property
    def active(self) -> bool:
        return self.extra > 0 or self.photometric != "none"


def make_views(batch: dict, tasks: list[TaskSpec], spec: ViewSpec, gen: torch.Generator,
               randaugment: RandAugmentOptions = RandAugmentOptions(), normal_mode: str = "nearest") -> list[dict]:
    """A collated batch → [view 0, view 1, …] (1 + spec.extra collated batches of the same samples)."""
    n = batch["image"].shape[0]
    crop_only = AugmentOptions(flip=False, brightness=0.0, contrast=0.0, saturation=0.0, normal_mode=normal_mode)
    views = [batch]
    for _ in range(spec.extra):
        views.append(augment_batch(batch, tasks, gen, crop_only))
    if spec.photometric == "randaugment":
        views = [dict(v, image=torch.stack([rand_augment(v["image"][i], gen, randaugment) for i in range(n)]))
                 for v in views]
    return views
