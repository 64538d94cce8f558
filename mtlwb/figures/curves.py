"""Training curves: every logged loss term and every metric, per epoch."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go


def history_frame(record: dict) -> pd.DataFrame:
    """Long table (epoch, group, name, value) of a run's history: train terms and eval metrics."""
    rows = []
    for h in record["history"]:
        for name, value in h.get("train", {}).items():
            rows.append({"epoch": h["epoch"], "group": "train loss", "name": name, "value": value})
        for task, metrics in h.get("eval", {}).items():
            for name, value in metrics.items():
                rows.append({"epoch": h["epoch"], "group": task, "name": name, "value": value})
    return pd.DataFrame(rows, columns=["epoch", "group", "name", "value"])


def loss_curves(record: dict) -> go.Figure:
    df = history_frame(record)
    df = df[df.group == "train loss"]
    fig = px.line(df, x="epoch", y="value", color="name", markers=True,
                  title=f"Training loss terms — {record['run_id']}", labels={"value": "loss", "name": "term"})
    return fig.update_layout(height=380)


def metric_curves(record: dict) -> go.Figure:
    df = history_frame(record)
    df = df[df.group != "train loss"]
    fig = px.line(df, x="epoch", y="value", color="name", facet_col="group", markers=True,
                  title=f"Evaluation metrics — {record['run_id']}")
    fig.update_yaxes(matches=None, showticklabels=True)
    return fig.update_layout(height=380)
