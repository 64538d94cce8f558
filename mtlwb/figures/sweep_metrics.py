"""Charts of a sweep's groups: each task's primary metric per group (bars, one point per seed), and each group's
relative gain per task over its baseline (radar).

Here, not in ``mtlwb.analysis``: the analysis layer computes the tables (``analysis.tables``: ``metrics_long``, the
runs of a group) and draws nothing; the figures layer draws them. The report notebook (``ablation_report.ipynb``,
which ``sweeps.report`` executes) calls these, so no layer below this one needs a chart.
"""

from __future__ import annotations

import math

import plotly.express as px
import plotly.graph_objects as go

from ..analysis.tables import SweepTable, group_runs, metric_column, metrics_long


def bar_chart(table: SweepTable, task: str) -> go.Figure:
    """One task's primary metric per group, error bars = std over seeds, one point per seed."""
    long = metrics_long(table)
    sub = long[long["task"] == task]
    if sub.empty:
        raise ValueError(f"bar_chart: task {task!r} not in this sweep; tasks {[t.name for t in table.tasks]}")
    metric, lower = sub["metric"].iloc[0], bool(sub["lower_is_better"].iloc[0])
    fig = px.bar(sub, x="group", y="mean", error_y=sub["std"].fillna(0), color="is_baseline",
                 hover_data=["n_seeds"], labels={"mean": metric, "group": "", "is_baseline": "baseline"},
                 title=f"{task}: {metric} ({'lower' if lower else 'higher'} is better), mean ± std over seeds")
    done, col = table.runs[table.runs["status"] == "completed"], metric_column(task, metric)
    points = [(r["group"], run[col], run["seed"]) for _, r in table.summary.iterrows()
              for _, run in group_runs(done, r, table).iterrows()]
    fig.add_scatter(x=[p[0] for p in points], y=[p[1] for p in points], customdata=[p[2] for p in points],
                    mode="markers", name="per seed", marker={"color": "black", "size": 7, "symbol": "circle-open"},
                    hovertemplate="seed %{customdata}: %{y}<extra></extra>")
    return fig.update_layout(xaxis_tickangle=-30)


def radar_chart(table: SweepTable) -> go.Figure:
    """Per-task relative gain (%) over the matching baseline, one trace per group (0 = baseline)."""
    base = table.summary[table.summary["is_baseline"]]
    match = [k for k in table.group_keys if not base.empty and base[k].nunique() > 1]
    fig = go.Figure()
    names = [t.name for t in table.tasks]
    for _, row in table.summary.iterrows():
        same = base
        for k in match:
            same = same[same[k] == row[k]]
        if same.empty:
            continue
        gains = []
        for t in table.tasks:
            col = f"{metric_column(t.name, t.primary_metric)} mean"
            m, b = row[col], same.iloc[0][col]
            sign = -1.0 if t.lower_is_better else 1.0
            gains.append(sign * (m - b) / b * 100 if b else math.nan)
        fig.add_trace(go.Scatterpolar(r=[*gains, gains[0]], theta=[*names, names[0]], name=row["group"]))
    return fig.update_layout(title=f"relative gain per task (%) vs {table.baseline_name}",
                             polar={"radialaxis": {"ticksuffix": "%"}})


__all__ = ["bar_chart", "radar_chart"]
