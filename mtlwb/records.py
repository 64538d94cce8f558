"""Run records (``metrics.json``) turned into tables."""

from __future__ import annotations

import pandas as pd


def final_metrics_frame(record: dict) -> pd.DataFrame:
    """One row per (task, metric) of the last evaluation."""
    rows = [{"task": task, "metric": name, "value": value}
            for task, metrics in record["final"].items() for name, value in metrics.items()]
    return pd.DataFrame(rows, columns=["task", "metric", "value"])


def run_summary(record: dict) -> dict:
    """What a run was: the stable facts that should reproduce exactly."""
    cfg = record["config"]
    return {"run_id": record["run_id"], "status": record["status"], "method": cfg["method"],
            "label_setting": cfg["label_setting"], "tasks": cfg["tasks"], "epochs": len(record["history"]),
            "train images": record["num_train"], "eval images": record["num_eval"],
            "labelled per task": record["labelled_per_task"]}
