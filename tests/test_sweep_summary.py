"""A sweep summary describes runs by the values they ran with (their records), including their label split."""

from __future__ import annotations

import json
from pathlib import Path

from mtlwb.analysis import summary, tables
from mtlwb.config import ExperimentConfig

TASKS = [{"name": "depth", "kind": "depth", "channels": 1, "primary_metric": "abs_err", "lower_is_better": True}]
GENERATED = {"source": "generated", "setting": "onelabel", "mask_seed": 0, "fallback": False, "reason": None}


def _sweep(root: Path, splits: list[dict]) -> Path:
    """Runs whose sweep file set only method and seed; everything else is in their recorded config."""
    runs = {}
    for i, (method, split) in enumerate(zip(["supervised", "tpkr"] * len(splits), splits)):
        rid, params = f"r{i}", {"method": method, "seed": i // 2}
        config = ExperimentConfig(method=method, seed=i // 2, train_samples=100).to_dict()
        (root / rid).mkdir(parents=True)
        (root / rid / "metrics.json").write_text(json.dumps(
            {"status": "completed", "config": config, "tasks": TASKS, "label_split": split,
             "final": {"depth": {"abs_err": 1.0 + i}}}))
        runs[rid] = {"params": params, "status": "completed", "error": None, "notebook": f"{rid}/train.ipynb"}
    (root / "state.json").write_text(json.dumps({"name": "s", "baseline": {"method": "supervised"}, "runs": runs}))
    return root


def _same_line(table: tables.SweepTable) -> str:
    return next(line for line in summary.describe(table) if line.startswith("same for every group: "))


def test_same_for_every_group_lists_the_effective_values_from_the_records(tmp_path):
    table = tables.load_table(_sweep(tmp_path / "s", [GENERATED] * 4))
    line = _same_line(table)
    # not set in the sweep file, so only the records know them: the config defaults and train_samples=100
    for text in ("epochs=10", "eval_samples=null", "train_samples=100", "batch_size=16", "lr=0.001",
                 "label_setting=onelabel", "label_split=generated onelabel (mask_seed=0)"):
        assert text in line, text
    assert "num_workers" not in line and "device" not in line and "run_dir" not in line
    assert table.varying == ["method"] and list(table.summary["n_seeds"]) == [2, 2]


def test_a_label_split_fallback_is_a_line_of_the_summary(tmp_path):
    fallback = {**GENERATED, "fallback": True, "reason": "published file x/settings/onelabel.pth not found"}
    sweep = _sweep(tmp_path / "s", [GENERATED, GENERATED, fallback, fallback])
    table = tables.load_table(sweep)
    assert "label_split" in table.varying                    # runs on different splits are not averaged together
    notes = summary.describe(table)
    assert "LABEL SPLIT FALLBACK in 2 run(s) (r2, r3): the published split file was missing, a generated split " \
           "was used (not the papers')" in notes
    md = summary.write_summary(sweep).read_text()
    assert "LABEL SPLIT FALLBACK in 2 run(s)" in md and "generated onelabel (mask_seed=0) FALLBACK" in md
