"""Sweep aggregation on hand-made records (no training): mean ± std over seeds, Δ_MTL pairing, outputs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from mtlwb import aggregate

TASKS = [{"name": "semantic", "kind": "segmentation", "channels": 13, "primary_metric": "miou",
          "lower_is_better": False},
         {"name": "depth", "kind": "depth", "channels": 1, "primary_metric": "abs_err", "lower_is_better": True}]

# (method, label_setting, seed, miou, abs_err)
RUNS = [("supervised", "onelabel", 0, 0.40, 1.0), ("supervised", "onelabel", 1, 0.50, 1.2),
        ("tpkr", "onelabel", 0, 0.50, 0.9), ("tpkr", "onelabel", 1, 0.60, 1.1),
        ("supervised", "randomlabel", 0, 0.60, 1.0), ("tpkr", "randomlabel", 0, 0.66, 0.8)]


def _write_sweep(root: Path) -> Path:
    runs = {}
    for i, (method, setting, seed, miou, abs_err) in enumerate(RUNS):
        rid = f"r{i}"
        params = {"method": method, "label_setting": setting, "seed": seed, "epochs": 2}
        runs[rid] = {"params": params, "status": "completed", "error": None, "notebook": f"{rid}/train.ipynb"}
        (root / rid).mkdir(parents=True)
        record = {"run_id": rid, "status": "completed", "config": params, "tasks": TASKS,
                  "final": {"semantic": {"miou": miou, "pixel_acc": 0.9}, "depth": {"abs_err": abs_err}}}
        (root / rid / "metrics.json").write_text(json.dumps(record))
    runs["bad"] = {"params": {"method": "tpkr", "label_setting": "onelabel", "seed": 2, "epochs": 2},
                   "status": "failed", "error": "ValueError: boom", "notebook": "bad/train.ipynb"}
    state = {"name": "hand", "baseline": {"method": "supervised"}, "runs": runs}
    (root / "state.json").write_text(json.dumps(state))
    return root


@pytest.fixture
def table(tmp_path: Path) -> aggregate.SweepTable:
    return aggregate.load_table(_write_sweep(tmp_path / "hand"))


def _row(table: aggregate.SweepTable, method: str, setting: str) -> pd.Series:
    s = table.summary
    return s[(s["method"] == method) & (s["label_setting"] == setting)].iloc[0]


def test_mean_std_over_seeds(table):
    row = _row(table, "supervised", "onelabel")
    assert row["n_seeds"] == 2
    assert row["semantic/miou mean"] == pytest.approx(0.45)
    assert row["semantic/miou std"] == pytest.approx(math.sqrt(0.005))   # sample std of (0.4, 0.5)
    assert row["depth/abs_err mean"] == pytest.approx(1.1)
    assert row["depth/abs_err std"] == pytest.approx(math.sqrt(0.02))
    assert math.isnan(_row(table, "tpkr", "randomlabel")["semantic/miou std"])  # one seed: no std
    assert len(table.summary) == 4 and set(table.varying) == {"method", "label_setting"}


def test_delta_vs_baseline_with_same_label_setting(table):
    col = table.delta_column
    assert col == "Δ_MTL vs method=supervised (%)"
    # onelabel: ((0.55 - 0.45) / 0.45 - (1.0 - 1.1) / 1.1) / 2 * 100
    assert _row(table, "tpkr", "onelabel")[col] == pytest.approx((0.1 / 0.45 + 0.1 / 1.1) / 2 * 100)
    # randomlabel is compared with the randomlabel baseline: ((0.66 - 0.6) / 0.6 + (1.0 - 0.8) / 1.0) / 2 * 100
    assert _row(table, "tpkr", "randomlabel")[col] == pytest.approx(15.0)
    assert _row(table, "supervised", "randomlabel")[col] == pytest.approx(0.0)
    assert any("label_setting" in note for note in table.notes)


def test_failed_runs_are_listed_not_averaged(table):
    assert list(table.failures["run_id"]) == ["bad"]
    assert _row(table, "tpkr", "onelabel")["n_seeds"] == 2


def test_write_summary_files(tmp_path):
    sweep = _write_sweep(tmp_path / "hand")
    md = aggregate.write_summary(sweep).read_text()
    csv = pd.read_csv(sweep / "summary.csv")
    assert "Δ_MTL vs method=supervised (%)" in csv.columns and "semantic/pixel_acc mean" in csv.columns
    assert "method=supervised" in md and "0.45 ± 0.071" in md and "+15.00" in md
    assert "`bad` (failed): ValueError: boom" in md


def test_figures(table):
    bar = aggregate.bar_chart(table, "depth")
    bars = {x: y for trace in bar.data for x, y in zip(trace.x, trace.y)}
    assert bars["tpkr · label_setting=onelabel"] == pytest.approx(1.0)
    assert bars["supervised · label_setting=onelabel"] == pytest.approx(1.1)
    radar = aggregate.radar_chart(table)
    assert len(radar.data) == 4
    tpkr_one = next(t for t in radar.data if t.name == "tpkr · label_setting=onelabel")
    assert list(tpkr_one.r)[:2] == pytest.approx([0.1 / 0.45 * 100, 0.1 / 1.1 * 100])
    with pytest.raises(ValueError, match="edge"):
        aggregate.bar_chart(table, "edge")
