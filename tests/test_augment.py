"""The batched scale-crop / flip / jitter equals the per-sample one exactly, with one resize per key and crop size."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mtlwb.data.augment import AugmentOptions, augment_batch, augment_sample
from mtlwb.tasks import make_tasks

TASKS = make_tasks(["semantic", "depth", "normal", "edge", "camera_height"], 7)


def _batch(n: int, h: int, w: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"image": torch.rand(n, 3, h, w, generator=g), "semantic": torch.randint(-1, 7, (n, h, w), generator=g),
            "depth": torch.rand(n, 1, h, w, generator=g) * 5,
            "edge": (torch.rand(n, 1, h, w, generator=g) > 0.8).float(),
            "normal": F.normalize(torch.randn(n, 3, h, w, generator=g), dim=1),
            "camera_height": torch.rand(n, 1, generator=g), "index": torch.arange(n)}


def _one_by_one(batch: dict, gen: torch.Generator, options: AugmentOptions) -> dict:
    keys = ["image", "semantic", "depth", "edge", "normal", "camera_height"]
    samples = [augment_sample({k: batch[k][i] for k in keys}, TASKS, gen, options) for i in range(len(batch["index"]))]
    return {**batch, **{k: torch.stack([s[k] for s in samples]) for k in keys}}


@pytest.mark.parametrize(("n", "h", "w"), [(1, 32, 40), (16, 32, 40), (5, 33, 41), (3, 288, 384)])
@pytest.mark.parametrize("options", [AugmentOptions(), AugmentOptions(normal_mode="bilinear", flip=False),
                                     AugmentOptions(brightness=0.0, contrast=0.0, saturation=0.0)])
def test_batch_equals_its_samples_augmented_one_by_one(n, h, w, options):
    batch = _batch(n, h, w, seed=n + h)
    for seed in range(3):
        a = augment_batch(batch, TASKS, torch.Generator().manual_seed(seed), options)
        b = _one_by_one(batch, torch.Generator().manual_seed(seed), options)
        for key in b:
            assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


def test_one_resize_per_key_and_crop_size(monkeypatch):
    calls = []
    interpolate = F.interpolate
    monkeypatch.setattr(F, "interpolate", lambda x, *a, **k: calls.append(x.shape[0]) or interpolate(x, *a, **k))
    batch = _batch(16, 32, 40, seed=0)
    augment_batch(batch, TASKS, torch.Generator().manual_seed(0))
    assert 1 < len(calls) <= 5 * 2 and sum(calls) > len(calls)     # 5 dense keys x 2 scales > 1, several rows each
