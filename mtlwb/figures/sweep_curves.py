"""Learning curves of a sweep's groups: is the regime one of over-fitting?

The papers' cross-task terms are regularizers: they can only help where the supervised model over-fits its few
labels. These curves show it per group — the task's training loss (left, its supervised term on the labelled
images, comparable across methods, unlike the total) keeps falling while the validation metric (right) peaks and
then falls or plateaus. Thick line: mean over the group's seeds; thin lines: the seeds.
"""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots


def sweep_learning_curves(curves: pd.DataFrame, task: str, metric: str = "", split: str = "val") -> go.Figure:
    """``curves``: ``aggregate.learning_curves``; one figure: training loss and ``task``'s metric on ``split``."""
    if split not in ("val", "test"):
        raise ValueError(f"sweep_learning_curves: split={split!r}: allowed ['val', 'test']")
    shown = curves[(curves["split"] == split) & (curves["task"] == task)]
    if shown.empty:
        have = sorted(curves.loc[curves["split"] == split, "task"].unique())
        raise ValueError(f"sweep_learning_curves: no {split} curve of task={task!r} (have {have}; a run without "
                         "val_fraction has no validation split: use split='test')")
    train = curves[(curves["split"] == "train") & (curves["task"] == task)]
    name = {"val": "validation", "test": "test"}[split]
    fig = make_subplots(rows=1, cols=2, subplot_titles=(f"train loss: {task}", f"{name}: {task} {metric}".strip()))
    colors = px.colors.qualitative.Plotly
    for i, group in enumerate(dict.fromkeys(shown["group"])):
        color = colors[i % len(colors)]
        for col, frame in ((1, train[train["group"] == group]), (2, shown[shown["group"] == group])):
            for seed, runs in frame.groupby("seed"):
                fig.add_scatter(x=runs["epoch"], y=runs["value"], mode="lines", row=1, col=col, showlegend=False,
                                line={"color": color, "width": 1}, opacity=0.35, legendgroup=group,
                                hovertemplate=f"{group}, seed {seed}: %{{y:.4g}} (epoch %{{x}})<extra></extra>")
            mean = frame.groupby("epoch", as_index=False)["value"].mean()
            fig.add_scatter(x=mean["epoch"], y=mean["value"], mode="lines", row=1, col=col, name=group,
                            legendgroup=group, showlegend=col == 2, line={"color": color, "width": 3})
    fig.update_xaxes(title_text="epoch")
    fig.update_yaxes(type="log", row=1, col=1)
    return fig.update_layout(title=f"{task}: learning curves per group (thick: mean over seeds; thin: seeds)",
                             height=520, legend={"orientation": "h", "y": -0.2})
