"""Cost against the number of tasks: the figure of the regularizer benchmark (JTR linear, MTPSL quadratic)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.express as px
import plotly.graph_objects as go


def cost_vs_tasks(points: Sequence[dict], title: str = "Regularizer cost vs number of tasks") -> go.Figure:
    """Rows {method, labels, T, ms/step} -> measured points and their linear (dotted) and quadratic (dashed)
    least-squares fits, one colour per (method, labels) curve."""
    fig = go.Figure()
    curves = list(dict.fromkeys((r["method"], r["labels"]) for r in points))
    for i, (method, labels) in enumerate(curves):
        pts = sorted((r["T"], r["ms/step"]) for r in points if (r["method"], r["labels"]) == (method, labels))
        ts, ms = np.array([p[0] for p in pts], float), np.array([p[1] for p in pts], float)
        grid = np.linspace(ts.min(), ts.max(), 50)
        color = px.colors.qualitative.Plotly[i % len(px.colors.qualitative.Plotly)]
        name = f"{method} ({labels})"
        fig.add_scatter(x=ts, y=ms, mode="markers", name=name, marker={"color": color, "size": 9})
        for degree, dash in ((1, "dot"), (2, "dash")):
            fig.add_scatter(x=grid, y=np.polyval(np.polyfit(ts, ms, degree), grid), mode="lines",
                            line={"color": color, "dash": dash}, name=f"{name} fit deg {degree}")
    fig.update_layout(title=title, xaxis_title="tasks T", yaxis_title="ms per step", template="plotly_white")
    return fig
