"""Hand-made sweep folders (state.json and each run's metrics.json, no training) for the analysis and report tests."""

from __future__ import annotations

import json
from pathlib import Path

TASKS = [{"name": "semantic", "kind": "segmentation", "channels": 13, "primary_metric": "miou",
          "lower_is_better": False},
         {"name": "depth", "kind": "depth", "channels": 1, "primary_metric": "abs_err", "lower_is_better": True}]


# (method, seed, miou, abs_err): jtr and supervised share seeds 0, 1, 2; seeds 3 and 4 have no partner
PAIRED = [("supervised", 0, 0.5, 1.0), ("supervised", 1, 0.5, 1.0), ("supervised", 2, 0.5, 1.0),
          ("supervised", 3, 0.5, 1.0),
          ("jtr", 0, 0.505, 0.98), ("jtr", 1, 0.51, 0.975), ("jtr", 2, 0.53, 0.97), ("jtr", 4, 0.9, 0.1),
          ("mtpsl", 0, 0.6, 1.0), ("mtpsl", 1, 0.6, 1.0)]


def write_paired(root: Path, best_val: bool = False) -> Path:
    runs = {}
    for i, (method, seed, miou, abs_err) in enumerate(PAIRED):
        rid = f"p{i}"
        params = {"method": method, "seed": seed, "label_setting": "onelabel"}
        runs[rid] = {"params": params, "status": "completed", "error": None, "notebook": f"{rid}/train.ipynb"}
        (root / rid).mkdir(parents=True)
        record = {"run_id": rid, "status": "completed", "config": params, "tasks": TASKS,
                  "final": {"semantic": {"miou": 0.1}, "depth": {"abs_err": 5.0}}}    # last epoch: not shown
        best = {"semantic": {"miou": miou}, "depth": {"abs_err": abs_err}}
        if best_val:
            record["best_val"] = {"epoch": 1, "criterion": "c", "test": best, "val": best}
        else:
            record["final"] = best
        (root / rid / "metrics.json").write_text(json.dumps(record))
    (root / "state.json").write_text(json.dumps({"name": "paired", "baseline": {"method": "supervised"},
                                                 "runs": runs}))
    return root
