"""Training curves: every logged loss term and every metric, per epoch (test and, if any, validation split)."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

SPLITS = {"eval": "test", "val": "validation"}    # history key -> split shown


def history_frame(record: dict) -> pd.DataFrame:
    """Long table (epoch, group, name, value, split) of a run's history: train terms, test and validation metrics.

    Epochs without an evaluation (``eval_every`` > 1) contribute only their train terms.
    """
    rows = []
    for h in record["history"]:
        for name, value in h.get("train", {}).items():
            rows.append({"epoch": h["epoch"], "group": "train loss", "name": name, "value": value, "split": "train"})
        for key, split in SPLITS.items():
            for task, metrics in h.get(key, {}).items():
                for name, value in metrics.items():
                    rows.append({"epoch": h["epoch"], "group": task, "name": name, "value": value, "split": split})
    return pd.DataFrame(rows, columns=["epoch", "group", "name", "value", "split"])


def loss_curves(record: dict) -> go.Figure:
    df = history_frame(record)
    df = df[df.group == "train loss"]
    fig = px.line(df, x="epoch", y="value", color="name", markers=True,
                  title=f"Training loss terms — {record['run_id']}", labels={"value": "loss", "name": "term"})
    return fig.update_layout(height=380)


def metric_curves(record: dict) -> go.Figure:
    """Metrics per task; validation dashed, the epoch chosen on validation (``best_val``) marked."""
    df = history_frame(record)
    df = df[df.group != "train loss"]
    fig = px.line(df, x="epoch", y="value", color="name", facet_col="group", markers=True,
                  line_dash="split" if (df.split == "validation").any() else None,
                  title=f"Evaluation metrics — {record['run_id']}")
    fig.update_yaxes(matches=None, showticklabels=True)
    best = record.get("best_val")
    if best:
        fig.add_vline(x=best["epoch"], line={"color": "grey", "dash": "dot"},
                      annotation_text=f"best on validation: epoch {best['epoch']}")
    return fig.update_layout(height=380)
