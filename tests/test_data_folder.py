"""The NYUv2-layout reader: items, and bad files reported by name before training."""

from __future__ import annotations

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
