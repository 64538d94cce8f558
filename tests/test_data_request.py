"""The data layer reads a small DataRequest, never the experiment config: built and validated once with the
config, its parsed values kept, read as they are by the splits and the training sources."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import mtlwb
import mtlwb.data.request as request_module
from mtlwb.config import ExperimentConfig
from mtlwb.data import DataRequest, SourceSpec, build_splits
from mtlwb.data.registry import REGISTRY


def test_the_config_builds_its_request_from_its_data_fields(tiny_root):
    cfg = ExperimentConfig(data_root=str(tiny_root), tasks=["depth", "semantic"], label_setting="randomlabel",
                           mask_seed=3, train_samples=20, eval_samples=4, val_fraction=0.25, val_seed=2,
                           sources=[{"data_root": "elsewhere", "tasks": ["depth"]}])
    req = cfg.data_request
    assert (req.dataset, req.data_root, req.tasks, req.label_setting, req.mask_seed) == (
        "scenes", str(tiny_root), ("depth", "semantic"), "randomlabel", 3)
    assert (req.train_samples, req.eval_samples, req.val_fraction, req.val_seed) == (20, 4, 0.25, 2)
    (spec,) = req.sources
    assert isinstance(spec, SourceSpec) and spec.name == "source1" and spec.label_setting == "full"
    assert cfg.sources == [spec.to_dict()]                        # the config keeps the request's parsed values
    with pytest.raises(dataclasses.FrozenInstanceError):
        req.mask_seed = 1
    assert dataclasses.replace(cfg, mask_seed=5).data_request.mask_seed == 5


@pytest.mark.parametrize(("field", "value", "message"), [
    ("dataset", "kitti", r"dataset='kitti': allowed \["),
    ("tasks", "depth", r"tasks='depth': must be a list of task names"),
    ("tasks", ["depth", "depth"], r"tasks=\['depth', 'depth'\]: give distinct task names"),
    ("label_setting", "half", r"label_setting='half'"),
    ("mask_seed", -1, r"^mask_seed=-1: must be an integer >= 0"),
    ("train_samples", 0, r"^train_samples=0: must be an integer >= 1"),
    ("val_fraction", 1.0, r"val_fraction=1.0: must be a number in \[0, 1\)"),
    ("sources", [{"tasks": ["depth"]}], r"sources\[0\]\.data_root=None: required"),
])
def test_a_bad_data_value_is_refused_by_the_request_naming_it(field, value, message):
    good = dict(dataset="scenes", data_root="data/x", tasks=["semantic", "depth"], label_setting="onelabel")
    with pytest.raises(ValueError, match=message):
        DataRequest(**{**good, field: value})
    with pytest.raises(ValueError, match=message):                # the config says the same, through its request
        ExperimentConfig(**{**good, field: value})


def test_parsing_specs_again_gives_them_back():
    req = DataRequest("scenes", "data/x", ("semantic", "depth"), "onelabel",
                      sources=[{"data_root": "b", "tasks": ["depth"], "weight": 2}])
    again = DataRequest("scenes", "data/x", ("semantic", "depth"), "onelabel", sources=req.sources)
    assert again == req and again.sources[0].weight == 2.0


def test_the_data_is_built_without_parsing_the_request_again(tiny_config, monkeypatch):
    cfg = tiny_config(train_samples=16, val_fraction=0.25)
    calls = []
    real = request_module.parse_sources
    monkeypatch.setattr(request_module, "parse_sources", lambda *a: (calls.append(a), real(*a))[1])
    exp = mtlwb.build_experiment(cfg)
    cfg.check_paths()
    assert calls == [] and len(exp.train_set) == 12 and len(exp.val_set) == 4


def test_a_request_reads_like_the_config_it_came_from(tiny_config):
    """build_splits of the request equals the splits the trainer gets from the config (same table, same ids)."""
    cfg = tiny_config(label_setting="onelabel", val_fraction=0.25)
    s = build_splits(cfg.data_request)
    exp = mtlwb.build_experiment(cfg)
    np.testing.assert_array_equal(exp.labelled.numpy(), s.labelled)
    assert list(exp.train_set.indices) == s.train_ids.tolist()


def test_a_dataset_registered_at_run_time_is_known(monkeypatch):
    monkeypatch.setitem(REGISTRY, "mine", REGISTRY["nyuv2"])
    assert DataRequest("mine", "data/mine", ("semantic",), "full").dataset == "mine"
