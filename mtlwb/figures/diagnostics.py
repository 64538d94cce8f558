"""Mechanism diagnostics over training (``mtlwb.diagnostics``): does the cross-task signal point where the hidden
labels would, and from when?

One column per task; the top row is the prediction-level cosine between the auxiliary terms' gradient and the hidden
label's, the bottom row the same on the shared encoder. One colour per group (method / setting); thick line: mean
over the group's seeds, thin lines: the seeds. 0 (dashed) is "unrelated to the hidden label", 1 "as the label
itself". The landscape chart shows, at one epoch, the auxiliary term's value with a task's hidden entries set to the
prediction, the truth, a perturbed truth, a constant and noise.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..experiment.diagnostics import LANDSCAPE

ROW_TITLES = {"cosine": "prediction cos", "backbone_cosine": "backbone cos", "positive_share": "share cos > 0",
              "norm_ratio": "‖g_aux‖ / ‖g_sup‖", "backbone_supervised_cosine": "yardstick: labelled cos"}


def _with_groups(curves: pd.DataFrame) -> pd.DataFrame:
    """One run's ``history_frame`` has no group or seed: it is one group of one seed."""
    return curves.assign(**{k: v for k, v in (("group", "run"), ("seed", 0)) if k not in curves})


def alignment_over_epochs(curves: pd.DataFrame, measures: Sequence[str] = ("cosine", "backbone_cosine"),
                          tasks: Sequence[str] | None = None) -> go.Figure:
    """``curves``: ``aggregate.diagnostics_curves`` (a sweep) or ``diagnostics.history_frame`` (one run); one row
    per measure, one column per task, one line per group (mean over seeds, seeds thin)."""
    curves = _with_groups(curves)
    shown = curves[curves["measure"].isin(measures) & (curves["task"] != "backbone")]
    if shown.empty:
        raise ValueError(f"alignment_over_epochs: no values of {list(measures)} (a run without diagnostics=True, or "
                         "a method whose terms read no prediction and has no auxiliary term)")
    tasks = list(tasks or dict.fromkeys(shown["task"]))
    fig = make_subplots(rows=len(measures), cols=len(tasks), shared_xaxes=True, shared_yaxes=True,
                        column_titles=tasks, row_titles=[ROW_TITLES.get(m, m) for m in measures])
    colors = px.colors.qualitative.Plotly
    for g, group in enumerate(dict.fromkeys(shown["group"])):
        color = colors[g % len(colors)]
        for r, measure in enumerate(measures, start=1):
            for c, task in enumerate(tasks, start=1):
                frame = shown[(shown["group"] == group) & (shown["measure"] == measure) & (shown["task"] == task)]
                for seed, run in frame.groupby("seed"):
                    fig.add_scatter(x=run["epoch"], y=run["value"], mode="lines", row=r, col=c, showlegend=False,
                                    line={"color": color, "width": 1}, opacity=0.35, legendgroup=group,
                                    hovertemplate=f"{group}, seed {seed}: %{{y:.3g}} (epoch %{{x}})<extra></extra>")
                mean = frame.groupby("epoch", as_index=False)["value"].mean()
                fig.add_scatter(x=mean["epoch"], y=mean["value"], mode="lines+markers", row=r, col=c, name=group,
                                legendgroup=group, showlegend=r == 1 and c == 1, line={"color": color, "width": 3})
    fig.add_hline(y=0, line_dash="dash", line_color="gray")
    fig.update_xaxes(title_text="epoch", row=len(measures))
    return fig.update_layout(title="Alignment with the hidden labels (cosine: 1 = as the label, 0 = unrelated)",
                             height=300 + 220 * len(measures), legend={"orientation": "h", "y": -0.15})


def landscape_chart(curves: pd.DataFrame, epoch: int | None = None) -> go.Figure:
    """The auxiliary term per task with the task's hidden entries set to each form of ``LANDSCAPE``, minus its value
    at the prediction (so the prediction's bar is 0 and a bar below 0 is a form the term prefers), at ``epoch``
    (default: the last with a landscape), mean over each group's seeds; one panel per group."""
    curves = _with_groups(curves)
    land = curves[curves["measure"].isin([f"landscape {f}" for f in LANDSCAPE])]
    if land.empty:
        raise ValueError("landscape_chart: no landscape recorded (the method's auxiliary terms read no prediction, "
                         "or the run has no diagnostics)")
    epoch = int(land["epoch"].max()) if epoch is None else epoch
    at = land[land["epoch"] == epoch]
    if at.empty:
        raise ValueError(f"landscape_chart: no landscape at epoch={epoch}; epochs {sorted(land['epoch'].unique())}")
    mean = at.groupby(["group", "task", "measure"], as_index=False, sort=False)["value"].mean()
    mean["input"] = mean["measure"].str.removeprefix("landscape ")
    base = mean[mean["input"] == "prediction"].set_index(["group", "task"])["value"]
    mean["change"] = mean["value"] - base.reindex(pd.MultiIndex.from_frame(mean[["group", "task"]])).to_numpy()
    several = mean["group"].nunique() > 1
    fig = px.bar(mean, x="task", y="change", color="input", barmode="group", facet_row="group" if several else None,
                 category_orders={"input": list(LANDSCAPE)}, hover_data={"value": ":.4g"},
                 labels={"change": "L_aux − L_aux at the prediction", "input": "hidden entries set to"})
    return fig.update_layout(title=f"Landscape of the auxiliary term at epoch {epoch}: is it lowest at the truth?")
