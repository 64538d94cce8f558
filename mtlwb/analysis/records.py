"""Run records (``metrics.json``) turned into tables and one-line descriptions."""

from __future__ import annotations

import pandas as pd


def final_metrics_frame(record: dict) -> pd.DataFrame:
    """One row per (task, metric) of the last evaluation."""
    rows = [{"task": task, "metric": name, "value": value}
            for task, metrics in record["final"].items() for name, value in metrics.items()]
    return pd.DataFrame(rows, columns=["task", "metric", "value"])


def label_split_text(split: dict | None) -> str:
    """Which label split a run used, in one line: the file (and its checksum) or the generator and its seed.

    A split generated because a published file was missing says FALLBACK, so no table hides it.
    """
    if not split:
        return "not recorded"
    if split.get("source") == "file":
        text = f"file {split.get('path')} (sha256 {str(split.get('sha256'))[:12]})"
    elif split.get("source") == "generated":
        text = f"generated {split.get('setting')} (mask_seed={split.get('mask_seed')})"
    else:
        text = str(split.get("source"))
    return f"{text} FALLBACK" if split.get("fallback") else text


def run_summary(record: dict) -> dict:
    """What a run was: the stable facts that should reproduce exactly."""
    cfg = record["config"]
    return {"run_id": record["run_id"], "status": record["status"], "method": cfg["method"],
            "label_setting": cfg["label_setting"], "tasks": cfg["tasks"], "epochs": len(record["history"]),
            "train images": record["num_train"], "eval images": record["num_eval"],
            "labelled per task": record["labelled_per_task"]}
