"""Procedural scene renderer and dataset writer: shapes, determinism, cross-task consistency, atomic writes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mtlwb.data import generate as gen
from mtlwb.data.scenes import CLASS_NAMES, FLOOR, KEYS, NUM_CLASSES, render_batch, render_scene


@pytest.fixture(scope="module")
def scenes() -> list[dict[str, np.ndarray]]:
    return [render_scene(s) for s in range(20)]


@pytest.mark.parametrize("hw", [(64, 80), (128, 160)])
def test_shapes_dtypes_ranges(hw: tuple[int, int]) -> None:
    h, w = hw
    r = render_scene(3, h, w)
    expected = {"image": (h, w, 3), "label": (h, w), "depth": (h, w, 1), "normal": (h, w, 3), "edge": (h, w, 1)}
    assert set(r) == set(KEYS)
    for key, shape in expected.items():
        assert r[key].shape == shape, key
        assert r[key].dtype == np.float32, key
        assert np.isfinite(r[key]).all(), key
    assert 0.0 <= r["image"].min() and r["image"].max() <= 1.0
    assert set(np.unique(r["label"])) <= set(range(-1, NUM_CLASSES))
    assert r["depth"].min() >= 0.0 and r["depth"].max() < 20.0
    assert np.abs(r["normal"]).max() <= 1.0 + 1e-5
    assert set(np.unique(r["edge"])) <= {0.0, 1.0}


def test_determinism() -> None:
    a, b, c = render_scene(11), render_scene(11), render_scene(12)
    for key in KEYS:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["image"], c["image"])
    assert not np.array_equal(a["depth"], c["depth"])


def test_same_scene_at_any_resolution() -> None:
    small, large = render_scene(5, 64, 80)["label"], render_scene(5, 128, 160)["label"]
    assert (large[::2, ::2] == small).mean() > 0.9


def test_batch_matches_single() -> None:
    batch = render_batch([1, 2], 64, 80)
    assert batch["image"].shape == (2, 64, 80, 3)
    np.testing.assert_array_equal(batch["normal"][1], render_scene(2)["normal"])


def test_depth_and_normals_consistent(scenes: list[dict[str, np.ndarray]]) -> None:
    for r in scenes:
        hit = r["label"] >= 0
        assert hit.mean() > 0.99
        assert (r["depth"][..., 0][hit] > 0).all()
        norm = np.linalg.norm(r["normal"], axis=-1)
        np.testing.assert_allclose(norm[hit], 1.0, atol=1e-4)
        assert (norm[~hit] == 0).all() and (r["depth"][..., 0][~hit] == 0).all()


def test_floor_normals_point_up(scenes: list[dict[str, np.ndarray]]) -> None:
    # camera y axis points down and pitch is small, so the floor normal is close to -y
    floor_y = np.concatenate([r["normal"][..., 1][r["label"] == FLOOR] for r in scenes])
    assert floor_y.size > 1000
    assert (floor_y < -0.85).all()


def test_normals_face_camera(scenes: list[dict[str, np.ndarray]]) -> None:
    h, w = scenes[0]["label"].shape
    f = 0.81 * w
    rays = np.stack(np.meshgrid((np.arange(w) + 0.5 - w / 2) / f, (np.arange(h) + 0.5 - h / 2) / f), -1)
    rays = np.concatenate([rays, np.ones((h, w, 1))], -1)
    for r in scenes:
        assert ((r["normal"] * rays).sum(-1) <= 1e-4).all()


def test_edges_where_labels_change(scenes: list[dict[str, np.ndarray]]) -> None:
    for r in scenes:
        lab, edge = r["label"], r["edge"][..., 0] > 0
        change = np.zeros_like(edge)
        dh, dv = lab[:, 1:] != lab[:, :-1], lab[1:] != lab[:-1]
        change[:, 1:] |= dh
        change[:, :-1] |= dh
        change[1:] |= dv
        change[:-1] |= dv
        assert edge[change].all()  # every semantic boundary is an edge
        assert 0 < edge.mean() < 0.3


def test_all_classes_appear(scenes: list[dict[str, np.ndarray]]) -> None:
    seen = set(np.unique(np.concatenate([r["label"].ravel() for r in scenes])).astype(int))
    assert len(CLASS_NAMES) == NUM_CLASSES >= 7
    assert set(range(NUM_CLASSES)) <= seen


def test_generate_layout_and_noop(tmp_path) -> None:
    root = gen.generate_dataset(tmp_path / "ds", n_train=3, n_val=2, height=16, width=24, seed=4, progress=False)
    assert root == tmp_path / "ds" and gen.dataset_is_complete(root)
    shapes = {"image": (16, 24, 3), "label": (16, 24), "depth": (16, 24, 1), "normal": (16, 24, 3),
              "edge": (16, 24, 1)}  # fmt: skip
    for split, n in (("train", 3), ("val", 2)):
        for key, shape in shapes.items():
            files = sorted(p.name for p in (root / split / key).iterdir())
            assert files == sorted(f"{i}.npy" for i in range(n))
            arr = np.load(root / split / key / "0.npy")
            assert arr.shape == shape and arr.dtype == np.float32
    meta = json.loads((root / "meta.json").read_text())
    assert meta["generator"] == "mtlwb.scenes" and meta["version"] == 1
    assert meta["num_classes"] == NUM_CLASSES and meta["class_names"] == list(CLASS_NAMES)
    assert (meta["n_train"], meta["n_val"], meta["height"], meta["width"], meta["seed"]) == (3, 2, 16, 24, 4)
    train0 = np.load(root / "train" / "image" / "0.npy")
    assert not np.array_equal(train0, np.load(root / "val" / "image" / "0.npy"))
    assert not list(tmp_path.glob("ds.tmp-*"))
    mtime = (root / "meta.json").stat().st_mtime_ns
    gen.generate_dataset(root, n_train=3, n_val=2, height=16, width=24, seed=4, progress=False)
    assert (root / "meta.json").stat().st_mtime_ns == mtime
    with pytest.raises(ValueError, match="height"):
        gen.generate_dataset(root, n_train=3, n_val=2, height=32, width=24, seed=4, progress=False)


def test_interrupted_generation_leaves_nothing(tmp_path, monkeypatch) -> None:
    calls = {"n": 0}
    real = gen._write_scene

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("disk full")
        real(*args, **kwargs)

    monkeypatch.setattr(gen, "_write_scene", flaky)
    with pytest.raises(RuntimeError, match="disk full"):
        gen.generate_dataset(tmp_path / "ds", n_train=4, n_val=1, height=16, width=16, progress=False)
    assert not (tmp_path / "ds").exists()
    assert not gen.dataset_is_complete(tmp_path / "ds")
    assert list(tmp_path.iterdir()) == []


def test_incomplete_root_is_rejected(tmp_path) -> None:
    (tmp_path / "ds" / "train").mkdir(parents=True)
    assert not gen.dataset_is_complete(tmp_path / "ds")
    with pytest.raises(FileExistsError):
        gen.generate_dataset(tmp_path / "ds", n_train=1, n_val=1, height=16, width=16, progress=False)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"n_train": 0}, "n_train"), ({"n_val": 0}, "n_val"), ({"height": 8}, "height"), ({"width": 84}, "width"),
     ({"height": 20}, "height")],
)  # fmt: skip
def test_bad_args(tmp_path, kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        gen.generate_dataset(tmp_path / "ds", progress=False, **kwargs)
    assert not (tmp_path / "ds").exists()


@pytest.mark.parametrize("kwargs", [{"height": 12}, {"width": 81}])
def test_render_bad_size(kwargs: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        render_scene(0, **kwargs)


def test_seeds_split_disjoint() -> None:
    train = {gen.scene_seed(0, "train", i) for i in range(200)}
    val = {gen.scene_seed(0, "val", i) for i in range(200)}
    assert len(train) == 200 and not train & val


def test_ensure_dataset_takes_the_size_from_the_root_name(tmp_path) -> None:
    """data_root: .../scenes-16x24 on a fresh clone generates 16x24 scenes; explicit sizes and other names win."""
    from mtlwb.data import ensure_dataset, scene_size_from_root

    assert scene_size_from_root("data/scenes-32x40") == {"height": 32, "width": 40}
    assert scene_size_from_root("data/scenes-32x40-B") == {} and scene_size_from_root("data/mine") == {}
    root = ensure_dataset(tmp_path / "scenes-16x24", n_train=2, n_val=1, progress=False)
    meta = json.loads((root / "meta.json").read_text())
    assert (meta["height"], meta["width"]) == (16, 24)
    assert np.load(root / "train" / "image" / "0.npy").shape == (16, 24, 3)
    other = ensure_dataset(tmp_path / "scenes-16x24-copy", n_train=1, n_val=1, height=16, width=16, progress=False)
    assert json.loads((other / "meta.json").read_text())["width"] == 16
    with pytest.raises(ValueError, match="different dataset"):   # a name that lies about a complete copy is no help
        gen.generate_dataset(root, n_train=2, n_val=1, height=32, width=40, progress=False)
