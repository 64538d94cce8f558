"""The NYUv2-layout reader: items, and bad files reported by name before training."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from mtlwb.data import MultiTaskFolder
from mtlwb.tasks import make_tasks

TASKS = make_tasks(["semantic", "depth", "normal", "edge"], 7)


def test_items_have_the_documented_shapes(tiny_root):
    ds = MultiTaskFolder(tiny_root, "train", TASKS)
    assert len(ds) == 24
    item = ds[3]
    assert item["image"].shape == (3, 32, 40) and item["semantic"].shape == (32, 40)
    assert item["depth"].shape == (1, 32, 40) and item["normal"].shape == (3, 32, 40)
    assert item["edge"].shape == (1, 32, 40) and item["index"] == 3
    assert str(item["semantic"].dtype) == "torch.int64"
    assert len(MultiTaskFolder(tiny_root, "train", TASKS, limit=5)) == 5


@pytest.fixture
def broken_root(tiny_root, tmp_path):
    root = tmp_path / "broken"
    shutil.copytree(tiny_root, root)
    return root


def test_truncated_file_is_named(broken_root):
    path = broken_root / "train" / "depth" / "7.npy"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"depth/7\.npy is unreadable or truncated"):
        MultiTaskFolder(broken_root, "train", TASKS)


def test_wrong_shape_is_named(broken_root):
    np.save(broken_root / "train" / "normal" / "2.npy", np.zeros((32, 40, 2), np.float32))
    with pytest.raises(ValueError, match=r"normal/2\.npy: shape \(32, 40, 2\).*expected shape \(32, 40, 3\)"):
        MultiTaskFolder(broken_root, "train", TASKS)


def test_missing_folder_and_file_are_named(broken_root):
    (broken_root / "val" / "edge" / "1.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"edge/1\.npy"):
        MultiTaskFolder(broken_root, "val", TASKS)
    shutil.rmtree(broken_root / "train" / "label")
    with pytest.raises(FileNotFoundError, match=r"train/label"):
        MultiTaskFolder(broken_root, "train", TASKS)


def test_bad_split_is_refused(tiny_root):
    with pytest.raises(ValueError, match=r"split='test': allowed"):
        MultiTaskFolder(tiny_root, "test", TASKS)


# --- dtypes: labels may be integers (uint8 with 255 = ignore), values any float width -----------------------
LABELS = np.array([[0, 3, 6], [-1, 2, -1]])            # classes and ignore (-1)


def _tile(pattern: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    reps = [-(-s // p) for s, p in zip(shape, pattern.shape)]
    return np.tile(pattern, reps)[tuple(slice(0, s) for s in shape)]


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8"])
def test_label_files_of_any_integer_or_float_dtype_load_with_the_right_values(broken_root, dtype):
    expected = _tile(LABELS, (32, 40))
    stored = np.where(expected < 0, 255, expected) if dtype == "uint8" else expected   # 8-bit releases: 255
    for i in (0, 5):
        np.save(broken_root / "train" / "label" / f"{i}.npy", stored.astype(dtype))
    ds = MultiTaskFolder(broken_root, "train", TASKS)
    label = ds[5]["semantic"]
    assert str(label.dtype) == "torch.int64"
    np.testing.assert_array_equal(label.numpy(), expected)                   # uint8 255 -> -1 ignore
    assert (label == -1).sum() == (expected == -1).sum() > 0


@pytest.mark.parametrize("folder, channels", [("image", 3), ("depth", 1), ("normal", 3), ("edge", 1)])
@pytest.mark.parametrize("dtype", ["float16", "float64"])
def test_value_files_of_any_float_width_load(broken_root, folder, channels, dtype):
    values = np.random.default_rng(0).uniform(0, 1, (32, 40, channels))
    np.save(broken_root / "train" / folder / "2.npy", values.astype(dtype))
    item = MultiTaskFolder(broken_root, "train", TASKS)[2]
    key = {"image": "image", "depth": "depth", "normal": "normal", "edge": "edge"}[folder]
    assert str(item[key].dtype) == "torch.float32"
    np.testing.assert_allclose(item[key].numpy(), values.astype(dtype).transpose(2, 0, 1), rtol=0, atol=1e-7)


@pytest.mark.parametrize("folder, array, why", [
    ("label", np.zeros((32, 40), np.complex64), "complex64"),
    ("label", np.zeros((32, 40), bool), "bool"),
    ("label", np.zeros((32, 40), object), "object"),
    ("label", np.zeros((32, 40, 1), np.int64), r"shape \(32, 40, 1\)"),
    ("depth", np.zeros((32, 40, 1), np.int16), "int16"),              # depth is real-valued
    ("image", np.zeros((32, 40, 3), np.uint8), "uint8"),
    ("normal", np.zeros((32, 40, 3), np.complex128), "complex128"),
    ("edge", np.zeros((32, 40, 1), bool), "bool"),
])
def test_dtypes_that_cannot_be_right_are_refused_naming_the_file(broken_root, folder, array, why):
    path = broken_root / "train" / folder / "4.npy"
    np.save(path, array, allow_pickle=True)
    with pytest.raises(ValueError, match=rf"{folder}/4\.npy: .*{why}") as e:
        MultiTaskFolder(broken_root, "train", TASKS)
    assert "expected shape" in str(e.value)


# --- image-level labels (built-in scenes): image_labels.json, one list per label ------------------------------------
VIEW = make_tasks(["depth", "camera_view", "num_objects"], 7)


def _rewrite_labels(root, change) -> None:
    path = root / "train" / "image_labels.json"
    table = json.loads(path.read_text())
    change(table)
    path.write_text(json.dumps(table))


def test_camera_view_loads_as_a_class_id_per_image(tiny_root):
    table = json.loads((tiny_root / "train" / "image_labels.json").read_text())
    assert set(table["camera_view"]) <= {0, 1, 2} and len(table["camera_view"]) == 24
    item = MultiTaskFolder(tiny_root, "train", VIEW)[5]
    assert str(item["camera_view"].dtype) == "torch.int64" and item["camera_view"].shape == ()
    assert item["camera_view"].item() == table["camera_view"][5]


def test_a_label_file_without_the_tasks_label_is_refused_naming_it_and_the_fix(broken_root):
    _rewrite_labels(broken_root, lambda t: t.pop("camera_view"))          # as written before camera_view existed
    with pytest.raises(FileNotFoundError, match=r"tasks \['camera_view'\] need image-level labels that "
                                                r".*train/image_labels\.json lacks.*mtlwb generate --root"):
        MultiTaskFolder(broken_root, "train", VIEW)
    MultiTaskFolder(broken_root, "train", make_tasks(["depth", "num_objects"], 7))   # the labels it has load


def test_a_camera_view_outside_its_three_classes_is_refused(broken_root):
    _rewrite_labels(broken_root, lambda t: t["camera_view"].__setitem__(3, 3))
    with pytest.raises(ValueError, match=r"'camera_view' must hold class ids in \[0, 3\) or -1"):
        MultiTaskFolder(broken_root, "train", VIEW)


def test_a_small_split_is_read_from_disk_once(broken_root):
    """Decoded items stay in memory: a file changed after the first read no longer matters, the item is equal."""
    ds = MultiTaskFolder(broken_root, "train", TASKS)
    first = ds[4]
    for folder in ("image", "label", "depth", "normal", "edge"):
        (broken_root / "train" / folder / "4.npy").unlink()
    again = ds[4]
    assert ds.cache is True and again is not first                    # a fresh dict each time, same tensors
    assert all(again[k] is first[k] for k in first)
    again["image"] = None                                              # the caller's dict, not the cache's
    assert ds[4]["image"] is first["image"]


def test_a_split_too_large_for_the_cache_is_read_each_time(broken_root, monkeypatch):
    monkeypatch.setattr("mtlwb.data.folder.CACHE_BYTES", 1000)
    ds = MultiTaskFolder(broken_root, "train", TASKS)
    ds[4]
    assert ds.cache is False
    np.save(broken_root / "train" / "depth" / "4.npy", np.full((32, 40, 1), 7.0, np.float32))
    assert float(ds[4]["depth"].min()) == 7.0
    off = MultiTaskFolder(broken_root, "train", TASKS, cache=False)
    off[5]
    (broken_root / "train" / "depth" / "5.npy").unlink()
    with pytest.raises(FileNotFoundError):
        off[5]


def test_a_class_map_folder_loads_as_class_ids_whatever_its_task_is_called(broken_root):
    """A folder declared 2-D (channels 0) holds class ids, also for a task other than semantic (here ``parts``,
    read from its own folder): integers with 255 = ignore are read as int64 with −1, not as float values."""
    expected = _tile(LABELS, (32, 40))
    (broken_root / "train" / "parts").mkdir()
    for i in range(24):
        np.save(broken_root / "train" / "parts" / f"{i}.npy", np.where(expected < 0, 255, expected).astype("uint8"))
    ds = MultiTaskFolder(broken_root, "train", make_tasks(["parts", "depth"], 7),
                         folders={"parts": ("parts", 0), "depth": ("depth", 1)})
    parts = ds[2]["parts"]
    assert str(parts.dtype) == "torch.int64"
    np.testing.assert_array_equal(parts.numpy(), expected)
