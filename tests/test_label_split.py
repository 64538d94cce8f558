"""Every run record says which label split it used: a file (path + sha256) or a generator (setting + mask_seed),
and whether it was a fallback from a missing published file."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

import mtlwb
from mtlwb.analysis.records import label_split_text
from mtlwb.config import ExperimentConfig
from mtlwb.data import build_datasets
from mtlwb.data.registry import SETTINGS_DIR
from tests.helpers.fixtures_real import onelabel_table, write_mask_pt, write_nyuv2


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _table_sha256(table) -> str:
    return hashlib.sha256(np.ascontiguousarray(table, np.float32).tobytes()).hexdigest()


def test_a_generated_split_is_recorded_with_its_generator_and_seed(tiny_config):
    record = mtlwb.train(tiny_config(epochs=0, label_setting="randomlabel", mask_seed=3))
    split = record["label_split"]
    assert split["source"] == "generated" and split["setting"] == "randomlabel" and split["mask_seed"] == 3
    assert split["generator"] == "mtlwb.data.masks.make_mask" and split["fallback"] is False
    saved = torch.load(split["cache"], weights_only=True)["labels_weights"].numpy()   # the table the run used
    assert split["table_sha256"] == _table_sha256(saved)
    assert sum(record["labelled_per_task"].values()) == saved.sum()
    assert label_split_text(split) == "generated randomlabel (mask_seed=3)"
    other = mtlwb.train(tiny_config(epochs=0, label_setting="randomlabel", mask_seed=4,
                                    run_dir=split["cache"] + ".run"))
    assert other["label_split"]["table_sha256"] != split["table_sha256"]     # another seed, another split


def test_a_mask_file_is_recorded_with_its_path_and_checksum(tiny_config, tmp_path):
    path = write_mask_pt(tmp_path / "mine.pt", onelabel_table(24, 3))
    record = mtlwb.train(tiny_config(epochs=0, label_setting=str(path)))
    split = record["label_split"]
    assert split["source"] == "file" and split["path"] == str(path) and split["sha256"] == _sha256(path)
    assert split["fallback"] is False and split["table_sha256"] == _table_sha256(onelabel_table(24, 3))
    assert label_split_text(split) == f"file {path} (sha256 {_sha256(path)[:12]})"


def test_a_published_file_is_recorded_and_a_missing_one_is_a_flagged_fallback(tmp_path):
    root = write_nyuv2(tmp_path / "nyuv2")
    config = dict(dataset="nyuv2", data_root=str(root), device="cpu", progress=False, epochs=0)
    with pytest.warns(UserWarning, match="randomlabels.pth"):
        record = mtlwb.train(ExperimentConfig(**config, label_setting="randomlabel", run_dir=str(tmp_path / "a")))
    split = record["label_split"]
    assert split["fallback"] is True and split["source"] == "generated" and split["mask_seed"] == 0
    assert f"published file {root / SETTINGS_DIR / 'randomlabels.pth'} not found" in split["reason"]
    assert label_split_text(split).endswith("FALLBACK")
    published = write_mask_pt(root / SETTINGS_DIR / "onelabel.pth", onelabel_table(8, 3))
    _, train_set, _, _ = build_datasets(ExperimentConfig(**config, label_setting="onelabel").data_request)
    assert train_set.label_split["source"] == "file" and train_set.label_split["published"] is True
    assert train_set.label_split["sha256"] == _sha256(published) and train_set.label_split["fallback"] is False
