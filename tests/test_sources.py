"""Several training sources: validation, the seeded weighted mixture, per-source evaluation, the single-source path."""

from __future__ import annotations

import importlib
import json
import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

import mtlwb
from mtlwb.config import ExperimentConfig
from mtlwb.core.runtime import epoch_seed
from mtlwb.data import build_splits, generate_dataset
from mtlwb.data.sources import SourceMixture, TrainingSource, ensure_sources
from mtlwb.methods import METHODS
from mtlwb.objectives.weighting import build_weighting

train_module = importlib.import_module("mtlwb.experiment.loop")


@pytest.fixture(scope="module")
def root_b(tmp_path_factory):
    """A second source: other rooms (seed 1) in style B, same size as the tiny main root."""
    root = tmp_path_factory.mktemp("data") / "scenes-b"
    generate_dataset(root, n_train=16, n_val=6, height=32, width=40, seed=1, progress=False, style="B")
    return root


def _b(root, **kw) -> dict:
    return {"name": "B", "data_root": str(root), "tasks": ["depth"], "eval_samples": 6, **kw}


@pytest.mark.parametrize(("source", "message"), [
    ({"data_root": "x", "colour": 1}, r"sources\[0\]: unknown keys \['colour'\]"),
    ({"tasks": ["depth"]}, r"sources\[0\]\.data_root=None: required"),
    ({"data_root": "x", "tasks": ["edge"]}, r"sources\[0\]\.tasks=\['edge'\]: give distinct tasks from"),
    ({"data_root": "x", "tasks": []}, r"sources\[0\]\.tasks=\[\]: must name at least one labelled task"),
    ({"data_root": "x", "weight": 0}, r"sources\[0\]\.weight=0: must be a finite number > 0"),
    ({"data_root": "x", "weight": -1.5}, r"sources\[0\]\.weight=-1.5"),
    ({"data_root": "x", "name": "main"}, r"sources\[0\]\.name='main'"),
    ({"data_root": "x", "dataset": "kitti"}, r"sources\[0\]\.dataset='kitti': allowed"),
    ({"data_root": "x", "label_setting": "half"}, r"sources\[0\]: label_setting='half'"),
    ({"data_root": "x", "tasks": ["depth"], "label_setting": "randomlabel"}, r"sources\[0\]: .*at least 2 tasks"),
    ({"data_root": "x", "train_samples": 0}, r"sources\[0\]\.train_samples=0"),
    ({"data_root": "x", "evaluate": "yes"}, r"sources\[0\]\.evaluate='yes'"),
    ({"data_root": "x", "generate": {"style": "Z"}}, r"sources\[0\]\.generate: style='Z'"),
    ({"data_root": "x", "generate": {"colours": 3}}, r"sources\[0\]\.generate: unknown keys \['colours'\]"),
    ({"data_root": "x", "dataset": "nyuv2", "generate": {"seed": 1}}, r"only a source of dataset 'scenes'"),
    ("data/x", r"sources\[0\]='data/x': must be a dict"),
])
def test_bad_sources_are_refused_naming_the_culprit(source, message):
    with pytest.raises(ValueError, match=message):
        ExperimentConfig(sources=[source])


def test_sources_must_be_a_list_and_names_unique():
    with pytest.raises(ValueError, match=r"sources=\{'data_root': 'x'\}: must be a list"):
        ExperimentConfig(sources={"data_root": "x"})
    with pytest.raises(ValueError, match=r"sources\[1\]\.name='B'"):
        ExperimentConfig(sources=[{"data_root": "x", "name": "B"}, {"data_root": "y", "name": "B"}])


def test_sources_are_normalized_and_named_in_the_run_id():
    a = ExperimentConfig(sources=[{"data_root": "x", "tasks": ["depth"]}])
    b = ExperimentConfig(sources=[{"data_root": "x", "tasks": ["depth"], "weight": 1.0, "label_setting": "full"}])
    assert a.sources == b.sources and a.run_id == b.run_id
    assert a.sources[0]["name"] == "source1" and a.sources[0]["dataset"] == "scenes"
    assert a.run_id != ExperimentConfig().run_id
    assert ExperimentConfig.from_dict(a.to_dict()).run_id == a.run_id


def test_check_paths_names_the_missing_source(tiny_root, tmp_path):
    cfg = ExperimentConfig(data_root=str(tiny_root), sources=[{"name": "far", "data_root": str(tmp_path / "no")}])
    with pytest.raises(FileNotFoundError, match=r"sources\[0\] \(far\): data_root=.*ensure_sources"):
        cfg.check_paths()


def test_ensure_sources_generates_a_styled_root(tmp_path):
    cfg = ExperimentConfig(sources=[{"data_root": str(tmp_path / "b"), "tasks": ["depth"],
                                     "generate": {"style": "B", "n_train": 2, "n_val": 1, "height": 16,
                                                  "width": 16, "seed": 3}}])
    (root,) = ensure_sources(cfg.data_request)
    meta = json.loads((root / "meta.json").read_text())
    assert meta["style"]["name"] == "B" and meta["seed"] == 3 and meta["n_train"] == 2


def _fake_source(name: str, n: int, weight: float) -> TrainingSource:
    items = [{"image": torch.zeros(3, 2, 2), "index": i} for i in range(n)]
    return TrainingSource(name, name, weight, ["depth"], items, np.ones((n, 1), np.float32), np.arange(n), None, {})


def test_mixture_sampler_is_seeded_and_respects_the_weights():
    mixture = SourceMixture([_fake_source("a", 30, 1.0), _fake_source("b", 90, 3.0)])
    assert len(mixture) == 120 and mixture[30]["index"] == 30 and mixture.source_of(29) == 0
    first = list(mixture.sampler(epoch_seed(0, 0)))
    assert first == list(mixture.sampler(epoch_seed(0, 0)))                    # seeded: resume replays it
    assert first != list(mixture.sampler(epoch_seed(0, 1)))
    draws = np.concatenate([list(mixture.sampler(epoch_seed(0, e))) for e in range(50)])
    n, p = len(draws), 3.0 / 4.0                                                # P(source b) = 3 / (1 + 3)
    from_b = int((draws >= 30).sum())
    assert abs(from_b - n * p) < 4 * math.sqrt(n * p * (1 - p))                # within 4 binomial sd
    per_image = np.bincount(draws[draws >= 30] - 30, minlength=90)              # uniform within a source
    assert per_image.min() > 0 and abs(per_image.mean() - from_b / 90) < 1e-9
    shards = [list(mixture.sampler(epoch_seed(0, 0), rank, 2)) for rank in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 60 and shards[0] != shards[1]


def test_no_sources_is_the_single_source_path(tiny_config, monkeypatch):
    """sources=[]: the same label table and dataset as build_splits, and the batches of the old shuffle."""
    cfg = tiny_config(method="supervised", label_setting="onelabel", val_fraction=0.25)
    exp = mtlwb.build_experiment(cfg)
    splits = build_splits(cfg.data_request)
    assert not isinstance(exp.train_set, SourceMixture) and type(exp.train_set) is type(splits.train)
    assert list(exp.train_set.indices) == list(splits.train.indices)
    assert torch.equal(exp.labelled, torch.from_numpy(splits.labelled))
    seen = []
    real_to = train_module._to
    monkeypatch.setattr(train_module, "_to", lambda batch, device: (seen.append(batch["index"].clone()),
                                                                    real_to(batch, device))[1])
    weighting = build_weighting("equal", [t.name for t in exp.tasks])
    train_module.train_epoch(exp, weighting, train_module._optimizer(exp, weighting), 0, progress=False)
    old = DataLoader(splits.train, batch_size=cfg.batch_size, shuffle=True, drop_last=True,
                     generator=torch.Generator().manual_seed(epoch_seed(cfg.seed, 0)))   # the loader before sources
    # iterated through tqdm as the trainer does (tqdm's iteration itself draws from the loader's generator)
    assert [b.tolist() for b in seen] == [b["index"].tolist() for b in tqdm(old, disable=True)]
    record = mtlwb.train(cfg)
    assert "sources" not in record and "final_by_source" not in record
    assert all("eval_by_source" not in h for h in record["history"])


def test_second_source_rows_placeholders_and_record(tiny_config, root_b):
    cfg = tiny_config(label_setting="onelabel", train_samples=16, sources=[_b(root_b, train_samples=8)])
    exp = mtlwb.build_experiment(cfg)
    assert isinstance(exp.train_set, SourceMixture) and len(exp.train_set) == 16 + 8
    assert exp.labelled.shape == (24, 3)
    assert exp.labelled[16:].tolist() == [[0.0, 1.0, 0.0]] * 8                 # B: depth only
    item = exp.train_set[16]
    assert item["index"] == 16 and (item["semantic"] == -1).all() and (item["normal"] == 0).all()
    assert (item["depth"] > 0).any()
    record = mtlwb.train(cfg, exp)
    assert record["num_train"] == 24
    assert record["final_by_source"]["main"] == record["final"]
    assert set(record["final_by_source"]) == {"main", "B"}
    assert record["final_by_source"]["B"] != record["final"]
    assert all(set(h["eval_by_source"]) == {"main", "B"} for h in record["history"])
    by_name = {s["name"]: s for s in record["sources"]}
    assert by_name["B"]["labelled_per_task"] == [0, 8, 0] and by_name["B"]["num_eval"] == 6
    assert record["labelled_per_task"]["depth"] == by_name["main"]["labelled_per_task"][1] + 8


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_trains_on_two_sources(tiny_config, root_b, method):
    record = mtlwb.train(tiny_config(method=method, train_samples=16, sources=[_b(root_b)]))
    assert record["status"] == "completed"
    assert all(math.isfinite(v) for v in record["history"][-1]["train"].values())
    assert set(record["final_by_source"]["B"]) == {"semantic", "depth", "normal"}


def test_two_sources_resume_exactly(tiny_config, root_b, tmp_path):
    def cfg(run, epochs):
        return tiny_config(method="supervised", train_samples=16, sources=[_b(root_b, weight=2.0)], epochs=epochs,
                           lr_step=1, run_dir=str(tmp_path / run))

    full = mtlwb.train(cfg("full", 2))
    mtlwb.train(cfg("part", 1))
    resumed = mtlwb.train(cfg("part", 2))
    assert json.dumps(resumed["final_by_source"], sort_keys=True) == json.dumps(full["final_by_source"],
                                                                                sort_keys=True)
    assert resumed["history"][1]["train"] == full["history"][1]["train"]


def test_a_source_with_other_image_size_is_refused(tiny_config, tmp_path):
    small = generate_dataset(tmp_path / "small", n_train=2, n_val=1, height=16, width=16, progress=False)
    with pytest.raises(ValueError, match=r"source 'B' .*images of shape \(3, 16, 16\)"):
        mtlwb.build_experiment(tiny_config(sources=[_b(small)]))


def test_shipped_sources_sweep_validates():
    from mtlwb.sweeps.spec import load_spec

    spec = load_spec("sweeps/sources.yaml")
    runs = spec.runs()
    assert len(runs) == 4 * 2 * 3                       # methods × with/without B × seeds
    assert {r.params["seed"] for r in runs} == {0, 1, 2}  # ≥ 3 paired seeds: intervals exist
    with_b = [r for r in runs if r.effective["sources"]]
    assert len(with_b) == len(runs) // 2
    assert with_b[0].effective["sources"][0]["generate"]["style"] == "B"


def test_image_level_tasks_get_placeholders_too(tiny_config, root_b):
    """An image-level task the extra source does not label collates as 'undefined' (classification) / zeros."""
    cfg = tiny_config(tasks=["semantic", "depth", "dominant_class", "camera_height"], label_setting="onelabel",
                      train_samples=16, sources=[_b(root_b, train_samples=4)])
    exp = mtlwb.build_experiment(cfg)
    item = exp.train_set[16]
    assert item["dominant_class"].item() == -1 and item["dominant_class"].dtype == torch.int64
    assert item["camera_height"].tolist() == [0.0] * exp.tasks[3].channels
    batch = next(iter(DataLoader(exp.train_set, batch_size=20)))
    assert batch["dominant_class"].shape == (20,)
    assert mtlwb.train(cfg, exp)["status"] == "completed"
