"""Shared fixtures: a tiny generated dataset (session-scoped) and tiny configs."""

from __future__ import annotations

import pytest

from mtlwb.data import generate_dataset


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory):
    """24 train / 8 val scenes at 32×40 in the NYUv2 layout."""
    root = tmp_path_factory.mktemp("data") / "scenes-tiny"
    generate_dataset(root, n_train=24, n_val=8, height=32, width=40, seed=0, progress=False)
    return root


@pytest.fixture
def tiny_config(tiny_root, tmp_path):
    from mtlwb.config import ExperimentConfig

    def make(**kw):
        base = dict(data_root=str(tiny_root), epochs=1, batch_size=8, run_dir=str(tmp_path / "run"),
                    progress=False, device="cpu")
        return ExperimentConfig(**{**base, **kw})

    return make
