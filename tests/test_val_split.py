"""Validation split and model selection: seeded held-out training images, eval_every, best-on-validation epoch."""

from __future__ import annotations

import math

import numpy as np
import pytest

import mtlwb
from mtlwb.config import ExperimentConfig
from mtlwb.data import build_splits, validation_ids
from mtlwb.experiment.loop import build_experiment, load_record
from mtlwb.experiment.selection import best_on_validation, validation_score
from mtlwb.tasks import TaskSpec

TASKS = [TaskSpec("semantic", "segmentation", 7, "miou", False), TaskSpec("depth", "depth", 1, "abs_err", True)]


@pytest.mark.parametrize(("n", "fraction"), [(24, 0.25), (10, 0.15), (1000, 0.1), (7, 0.5)])
def test_split_is_seeded_disjoint_and_sized(n, fraction):
    train, val = validation_ids(n, fraction, val_seed=3)
    again_train, again_val = validation_ids(n, fraction, val_seed=3)
    np.testing.assert_array_equal(val, again_val)
    np.testing.assert_array_equal(train, again_train)
    assert len(val) == round(fraction * n)
    assert not set(train) & set(val) and sorted(set(train) | set(val)) == list(range(n))
    other = validation_ids(n, fraction, val_seed=4)[1]
    assert not np.array_equal(val, other)          # another val_seed, another draw


def test_split_that_leaves_nothing_is_refused():
    with pytest.raises(ValueError, match="val_fraction"):
        validation_ids(3, 0.1, 0)                  # round(0.3) = 0 validation images
    with pytest.raises(ValueError, match="val_fraction"):
        ExperimentConfig(val_fraction=1.0)
    with pytest.raises(ValueError, match="val_fraction"):
        ExperimentConfig(val_fraction=-0.1)
    with pytest.raises(ValueError, match="eval_every"):
        ExperimentConfig(eval_every=0)


def test_build_splits_holds_out_training_images_never_test_ones(tiny_config):
    cfg = tiny_config(val_fraction=0.25, val_seed=1, train_samples=20)
    s = build_splits(cfg.data_request)
    assert len(s.val) == 5 and len(s.train) == 15
    trained = {s.train[i]["index"] for i in range(len(s.train))}
    held_out = {s.val[i]["index"] for i in range(len(s.val))}
    assert held_out == set(s.val_ids.tolist()) and not trained & held_out
    assert s.val.dataset is s.train.dataset and s.val.dataset.split_dir.name == "train"
    assert s.test.split_dir.name == "val"          # the eval (test) split is another split on disk
    assert s.labelled.shape[0] == 20               # the mask is the one drawn without a validation split
    np.testing.assert_array_equal(s.labelled, build_splits(tiny_config(train_samples=20).data_request).labelled)
    exp = build_experiment(cfg)
    assert exp.val_set is not None and sorted(exp.train_set.indices) == sorted(trained)


def test_old_configs_keep_their_run_id():
    # ids computed by the code before val_fraction / val_seed / eval_every existed (jtr's changed once, when the
    # identity began to hash the resolved method options: docs/changelog.md)
    assert ExperimentConfig().run_id == "supervised-onelabel-s0-d137c8e8"
    cfg = ExperimentConfig(method="jtr", label_setting="randomlabel", seed=3, epochs=7, train_samples=100)
    assert cfg.run_id == "jtr-randomlabel-s3-4d66d4e7"
    assert ExperimentConfig(val_fraction=0.2).run_id != ExperimentConfig().run_id
    assert ExperimentConfig(eval_every=2).run_id != ExperimentConfig().run_id


def _entry(epoch, miou, abs_err, test_miou=0.0):
    return {"epoch": epoch, "val": {"semantic": {"miou": miou}, "depth": {"abs_err": abs_err}},
            "eval": {"semantic": {"miou": test_miou}, "depth": {"abs_err": 1.0}}}


def test_best_on_validation_picks_the_best_validation_score_not_the_best_test():
    history = [_entry(1, 0.40, 1.00, test_miou=0.9),     # the best *test* epoch: must not be chosen
               {"epoch": 2, "train": {}},                  # not evaluated (eval_every)
               _entry(3, 0.50, 1.10, test_miou=0.3),     # score ((0.1/0.4) - (0.1/1.0)) / 2 = +7.5 %
               _entry(4, 0.44, 0.80, test_miou=0.5)]     # score ((0.04/0.4) + (0.2/1.0)) / 2 = +15 %
    best = best_on_validation(history, TASKS)
    assert best["epoch"] == 4 and best["score"] == pytest.approx(15.0)
    assert best["test"]["semantic"]["miou"] == 0.5 and best["val"] == history[3]["val"]
    assert validation_score(history[2]["val"], history[0]["val"], TASKS) == pytest.approx(7.5)
    tie = [_entry(1, 0.4, 1.0), _entry(2, 0.5, 1.0), _entry(3, 0.5, 1.0)]
    assert best_on_validation(tie, TASKS)["epoch"] == 2            # earliest on ties
    assert best_on_validation([{"epoch": 1, "eval": {}}], TASKS) is None


def test_eval_every_skips_evaluations_but_evaluates_the_last_epoch(tiny_config):
    record = mtlwb.train(tiny_config(epochs=3, eval_every=2, train_samples=8, eval_samples=8))
    assert [h["epoch"] for h in record["history"]] == [1, 2, 3]
    assert ["eval" in h for h in record["history"]] == [False, True, True]
    assert record["final"] == record["history"][-1]["eval"] and "best_val" not in record


def test_tiny_run_records_test_metrics_at_the_best_validation_epoch(tiny_config, tmp_path):
    cfg = tiny_config(epochs=3, val_fraction=0.25, train_samples=12, eval_samples=8, batch_size=4,
                      run_dir=str(tmp_path / "val"))
    record = mtlwb.train(cfg)
    assert record["num_train"] == 9 and record["num_val"] == 3
    validated = [h for h in record["history"] if "val" in h]
    assert len(validated) == 3
    scores = [validation_score(h["val"], validated[0]["val"], record_tasks(record)) for h in validated]
    best = record["best_val"]
    assert best["epoch"] == validated[int(np.argmax(scores))]["epoch"]
    assert best["test"] == record["history"][best["epoch"] - 1]["eval"] and best["criterion"]
    assert record["final"] == record["history"][-1]["eval"]
    assert sum(record["labelled_per_task"].values()) == 9           # onelabel: one label per trained image
    assert all(math.isfinite(v) for m in best["val"].values() for v in m.values())


def test_resume_with_validation_is_exact(tiny_config, tmp_path):
    kw = dict(val_fraction=0.25, train_samples=12, eval_samples=8, batch_size=4)
    straight = mtlwb.train(tiny_config(epochs=2, run_dir=str(tmp_path / "a"), **kw))
    mtlwb.train(tiny_config(epochs=1, run_dir=str(tmp_path / "b"), **kw))
    resumed = mtlwb.train(tiny_config(epochs=2, run_dir=str(tmp_path / "b"), **kw))
    assert resumed["best_val"] == straight["best_val"] and resumed["final"] == straight["final"]
    assert [h["val"] for h in resumed["history"]] == [h["val"] for h in straight["history"]]
    assert load_record(tmp_path / "b")["best_val"] == straight["best_val"]


def record_tasks(record):
    return [TaskSpec(**t) for t in record["tasks"]]


def test_curves_show_validation_and_the_selected_epoch():
    from mtlwb import figures

    history = [{"epoch": 1, "train": {"total": 1.0}}, {**_entry(2, 0.4, 1.0), "train": {"total": 0.5}},
               {**_entry(3, 0.5, 0.9), "train": {"total": 0.4}}]
    record = {"run_id": "r", "history": history, "best_val": best_on_validation(history, TASKS)}
    frame = figures.history_frame(record)
    assert set(frame[frame.split == "validation"].epoch) == {2, 3}          # epoch 1 was not evaluated
    assert len(frame[(frame.split == "test") & (frame.name == "miou")]) == 2
    fig = figures.metric_curves(record)
    assert any(shape.x0 == 3 for shape in fig.layout.shapes)                 # the best-on-validation epoch
