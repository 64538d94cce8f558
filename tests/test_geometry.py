"""Normals from depth (data/geometry.py) and the geometric oracle built on them (data/pseudo_labels.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtlwb.config import ExperimentConfig
from mtlwb.data import build_splits
from mtlwb.data.folder import MultiTaskFolder
from mtlwb.data.geometry import Intrinsics, normals_from_depth, scenes_intrinsics
from mtlwb.data.registry import get_dataset
from mtlwb.experiment.loop import build_experiment, train
from mtlwb.experiment.record import read_record
from mtlwb.identity import identity


def _angles(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Degrees between unit normals a, b [N, 3, H, W] where both are valid (non-zero)."""
    valid = (a.norm(dim=1) > 0.5) & (b.norm(dim=1) > 0.5)
    cos = (a * b).sum(1).clamp(-1, 1)
    return torch.rad2deg(torch.acos(cos))[valid]


def test_plane_gives_its_exact_normal_facing_the_camera():
    camera = Intrinsics(30.0, 30.0, 19.5, 15.5)
    n = torch.tensor([0.3, -0.5, -0.8], dtype=torch.float64)
    n = n / n.norm()                                   # facing the camera: n · ray < 0 for rays with z > 0
    u, v = torch.meshgrid(torch.arange(40.0), torch.arange(32.0), indexing="xy")
    ray = torch.stack([(u - camera.cx) / camera.fx, (v - camera.cy) / camera.fy, torch.ones_like(u)]).double()
    depth = -2.0 / torch.einsum("c,chw->hw", n, ray)    # the plane n · P = −2 along each ray (z-depth)
    got = normals_from_depth(depth, camera)             # [3, H, W]
    assert torch.allclose(got, n[:, None, None].expand_as(got), atol=1e-9)


def test_invalid_depth_gives_invalid_normals_and_isolated_pixels_too():
    camera = Intrinsics(30.0, 30.0, 19.5, 15.5)
    depth = torch.full((32, 40), 3.0, dtype=torch.float64)
    depth[10, :] = 0.0                                  # an invalid row
    depth[20, 20] = 9.0                                 # a pixel whose neighbours all sit on another surface
    got = normals_from_depth(depth, camera)
    assert (got[:, 10] == 0).all() and (got[:, 20, 20] == 0).all()
    assert torch.allclose(got[:, 5, 5], torch.tensor([0.0, 0.0, -1.0], dtype=torch.float64))


@pytest.mark.parametrize("size", [(32, 40)])
def test_matches_the_scenes_stored_normals(tiny_root, size):
    """The oracle's premise: the stored normals follow from the stored depth and the camera (issue: ~1.1° mean
    angle at 32x40; creases and occluding edges are where a pixel's neighbours sit on other surfaces)."""
    info = get_dataset("scenes")
    tasks = info.make_tasks(["depth", "normal"], tiny_root)
    items = [MultiTaskFolder(tiny_root, split, tasks, None)[i] for split in ("train", "val") for i in range(8)]
    depth = torch.stack([it["depth"][0] for it in items]).double()          # [N, H, W]
    stored = torch.stack([it["normal"] for it in items]).double()            # [N, 3, H, W]
    assert depth.shape[-2:] == size
    got = normals_from_depth(depth, scenes_intrinsics(tiny_root, *size))
    angles = _angles(got, stored)
    assert angles.numel() > 0.99 * depth.numel()                            # almost every pixel has a normal
    assert angles.mean() < 2.0
    assert torch.quantile(angles, 0.5) < 0.5                                # most pixels exact


def test_oracle_config_is_refused_where_it_cannot_apply():
    with pytest.raises(ValueError, match=r"^pseudo_labels='normals_from_depth': needs tasks"):
        ExperimentConfig(tasks=["semantic", "depth"], pseudo_labels="normals_from_depth")
    with pytest.raises(ValueError, match=r"^pseudo_labels='depth': allowed"):
        ExperimentConfig(pseudo_labels="depth")
    with pytest.raises(ValueError, match=r"^pseudo_labels='normals_from_depth': dataset 'nyuv2' has no known camera"):
        ExperimentConfig(dataset="nyuv2", pseudo_labels="normals_from_depth")


def test_oracle_gives_unlabelled_normals_the_depths_normals(tiny_root):
    config = ExperimentConfig(data_root=str(tiny_root), tasks=["depth", "normal"],
                              label_setting="ratio:normal=0.25", val_fraction=0.25,
                              pseudo_labels="normals_from_depth", device="cpu", progress=False)
    plain = build_splits(ExperimentConfig(**{**config.to_dict(), "pseudo_labels": "none"}).data_request)
    s = build_splits(config.data_request)
    assert plain.pseudo is None or not plain.pseudo.any()
    # exactly the trained rows whose normals are unlabelled get one; validation rows never
    expected = np.zeros_like(s.pseudo)
    expected[s.train_ids, 1] = plain.labelled[s.train_ids, 1] == 0
    assert (s.pseudo == expected).all() and s.pseudo.any()
    assert (s.labelled[s.train_ids] == 1).all()
    assert (s.labelled[s.val_ids] == plain.labelled[s.val_ids]).all()
    camera = scenes_intrinsics(tiny_root, 32, 40)
    for pos in range(len(s.train)):
        item, truth = s.train[pos], plain.train[pos]
        row = int(item["index"])
        if s.pseudo[row, 1]:
            assert torch.equal(item["normal"], normals_from_depth(truth["depth"][0], camera).float())
            assert not torch.equal(item["normal"], truth["normal"])
        else:
            assert torch.equal(item["normal"], truth["normal"])
    for pos in range(len(s.val)):                                           # validation: stored ground truth
        assert torch.equal(s.val[pos]["normal"], plain.val[pos]["normal"])


def test_oracle_normals_are_computed_once_per_image_while_they_fit(tiny_root, monkeypatch):
    """A second epoch reads the oracle's normals from memory (same values); past ``cache_bytes`` they are
    recomputed at every load instead of kept."""
    import mtlwb.data.pseudo_labels as pseudo_labels

    config = ExperimentConfig(data_root=str(tiny_root), tasks=["depth", "normal"], label_setting="ratio:normal=0.25",
                              val_fraction=0.25, pseudo_labels="normals_from_depth", device="cpu", progress=False)
    calls = []
    compute = pseudo_labels.normals_from_depth
    monkeypatch.setattr(pseudo_labels, "normals_from_depth", lambda *a: calls.append(1) or compute(*a))
    train_set = build_splits(config.data_request).train
    first = [train_set[i]["normal"] for i in range(len(train_set))]
    computed = len(calls)
    second = [train_set[i]["normal"] for i in range(len(train_set))]
    assert computed > 0 and len(calls) == computed                       # none recomputed
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    oracle = train_set
    while not isinstance(oracle, pseudo_labels.NormalsFromDepth):           # the split is a view of it
        oracle = oracle.dataset
    oracle._normals.clear()
    oracle.cache_bytes = oracle._cached_bytes = 0
    again = [train_set[i]["normal"] for i in range(len(train_set))]
    assert len(calls) == 2 * computed and not oracle._normals             # over the limit: computed, not kept
    assert all(torch.equal(a, b) for a, b in zip(first, again))


def test_oracle_run_records_true_and_pseudo_counts(tiny_root, tmp_path):
    config = ExperimentConfig(data_root=str(tiny_root), tasks=["depth", "normal"], label_setting="ratio:normal=0.25",
                              pseudo_labels="normals_from_depth", epochs=1, batch_size=8, device="cpu",
                              progress=False, run_dir=str(tmp_path / "run"))
    exp = build_experiment(config)
    assert bool(exp.labelled.all())                     # what the methods read: every trained entry labelled
    train(config, exp)
    record = read_record(tmp_path / "run")
    assert record["labelled_per_task"] == {"depth": 24, "normal": 6}
    assert record["pseudo_per_task"] == {"depth": 0, "normal": 18}
    plain = ExperimentConfig(**{**config.to_dict(), "pseudo_labels": "none"})
    assert plain.run_id != config.run_id
    assert "pseudo_labels" not in identity(plain.to_dict())     # runs named before the option keep their ids
