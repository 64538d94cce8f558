"""Partial-label settings: invariants of each generator, published files, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mtlwb.data.masks import check_setting, label_mask, load_mask_file, make_mask

TASKS = ["semantic", "depth", "normal"]


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 400), t=st.integers(1, 6), seed=st.integers(0, 2**31 - 1))
def test_onelabel_one_task_per_image_balanced(n, t, seed):
    m = make_mask("onelabel", n, [f"t{i}" for i in range(t)], seed)
    assert m.shape == (n, t)
    assert (m.sum(1) == 1).all()
    counts = m.sum(0)
    assert counts.max() - counts.min() <= 1


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 400), t=st.integers(2, 6), seed=st.integers(0, 2**31 - 1))
def test_randomlabel_nonempty_not_all(n, t, seed):
    m = make_mask("randomlabel", n, [f"t{i}" for i in range(t)], seed)
    per_image = m.sum(1)
    assert (per_image >= 1).all() and (per_image <= t - 1).all()


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 300), seed=st.integers(0, 2**31 - 1), r=st.floats(0.01, 1.0))
def test_ratio_counts_exact(n, seed, r):
    m = make_mask(f"ratio:semantic={r}", n, TASKS, seed)
    assert m[:, 0].sum() == max(1, round(r * n))
    assert (m[:, 1:] == 1).all()


def test_same_seed_same_mask_different_seed_differs():
    a = make_mask("randomlabel", 200, TASKS, 3)
    assert np.array_equal(a, make_mask("randomlabel", 200, TASKS, 3))
    assert not np.array_equal(a, make_mask("randomlabel", 200, TASKS, 4))


def test_full_is_all_ones():
    assert (make_mask("full", 10, TASKS) == 1).all()


@pytest.mark.parametrize("setting, message", [
    ("halflabel", "allowed"),
    ("ratio:semantic=0", "no labels"),
    ("ratio:segmentation=0.5", "semantic"),
    ("ratio:depth=abc", "not a number"),
    ("missing/file.pt", "does not exist"),
])
def test_bad_settings_name_the_parameter(setting, message):
    with pytest.raises(ValueError, match="label_setting") as e:
        check_setting(setting, TASKS)
    assert message in str(e.value)


def test_randomlabel_needs_two_tasks():
    with pytest.raises(ValueError, match="at least 2 tasks"):
        check_setting("randomlabel", ["depth"])


def test_published_torch_format_roundtrip(tmp_path):
    table = torch.zeros(795, 3)
    table[torch.arange(795), torch.arange(795) % 3] = 1
    path = tmp_path / "onelabel.pt"
    torch.save({"labels_weights": table}, path)
    loaded = load_mask_file(path, 795, TASKS)
    assert loaded.shape == (795, 3) and loaded.sum() == 795
    with pytest.raises(ValueError, match=r"expected \(N, T\) = \(700, 3\)"):
        load_mask_file(path, 700, TASKS)
    with pytest.raises(ValueError, match=r"\(795, 2\)"):
        load_mask_file(path, 795, TASKS[:2])


def test_npy_format_and_task_without_labels(tmp_path):
    table = np.zeros((10, 3), np.float32)
    table[:, :2] = 1
    np.save(tmp_path / "m.npy", table)
    with pytest.raises(ValueError, match=r"\['normal'\] with no labelled image"):
        load_mask_file(tmp_path / "m.npy", 10, TASKS)


def test_truncated_mask_file_is_refused(tmp_path):
    path = tmp_path / "m.pt"
    torch.save({"labels_weights": torch.ones(10, 3)}, path)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ValueError, match="cannot read"):
        load_mask_file(path, 10, TASKS)


def test_label_mask_is_saved_next_to_dataset_and_reused(tmp_path):
    a = label_mask("onelabel", tmp_path, 30, TASKS, seed=1)
    files = list((tmp_path / "masks").glob("*.pt"))
    assert len(files) == 1
    saved = torch.load(files[0], weights_only=True)["labels_weights"].numpy()
    assert np.array_equal(saved, a)
    assert np.array_equal(label_mask("onelabel", tmp_path, 30, TASKS, seed=1), a)
