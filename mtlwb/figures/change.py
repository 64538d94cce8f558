"""Change vs the baseline, per task: paired mean with its confidence interval and one point per seed.

A bar from zero would show the metric's level, which hides what a reader wants from an ablation: whether the
change is larger than the seed noise. These charts plot each group's mean per-seed change (the paired
estimates of ``mtlwb.analysis.stats``) with its interval as error bars, the per-seed changes as points, and a zero line;
an interval that does not cross the line is a change beyond the seed noise.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import plotly.graph_objects as go

from ..analysis.stats import DELTA

if TYPE_CHECKING:
    from ..analysis.tables import SweepTable


def change_chart(table: SweepTable, key: str = DELTA) -> go.Figure:
    """One task's (``key`` = its name) or Δ_MTL's (``key="delta_mtl"``) paired change vs the baseline, per group."""
    names = [t.name for t in table.tasks]
    if key != DELTA and key not in names:
        raise ValueError(f"change_chart: key={key!r}: allowed {[DELTA, *names]}")
    if not table.comparisons:
        raise ValueError("change_chart: the sweep has no group compared with a baseline (no baseline given, or "
                         "no completed baseline runs)")
    groups, means, up, down, marks, px, py, pseed = [], [], [], [], [], [], [], []
    for group, (_, c) in table.comparisons.items():
        e = c.estimates[key]
        groups.append(group)
        means.append(e.mean)
        up.append(e.high - e.mean if e.enough else math.nan)
        down.append(e.mean - e.low if e.enough else math.nan)
        marks.append(f"{e.mark} p={e.p_text()}" if e.enough else f"n={e.n}: too few")
        px += [group] * c.n
        py += c.changes[key].tolist()
        pseed += list(c.seeds)
    fig = go.Figure()
    fig.add_scatter(x=groups, y=means, mode="markers+text", name=f"mean ± {_ci(table)} CI",
                    text=marks, textposition="middle right", marker={"size": 11, "symbol": "diamond"},
                    error_y={"type": "data", "array": up, "arrayminus": down, "symmetric": False, "width": 8})
    fig.add_scatter(x=px, y=py, customdata=pseed, mode="markers", name="per seed",
                    marker={"size": 6, "color": "grey", "symbol": "circle-open"},
                    hovertemplate="seed %{customdata}: %{y:+.2f} %<extra></extra>")
    fig.add_hline(y=0, line={"color": "black", "width": 1, "dash": "dash"})
    if key == DELTA:
        what = "Δ_MTL"
    else:
        task = table.tasks[names.index(key)]
        what = f"{key} {task.primary_metric}"
    return fig.update_layout(title=f"{what}: change vs {table.baseline_name} (% of the baseline, + = better), "
                                   f"paired mean ± {_ci(table)} CI", yaxis={"ticksuffix": " %"},
                             xaxis={"tickangle": -30, "range": [-0.5, len(groups) - 0.5]}, height=380)


def change_charts(table: SweepTable) -> list[go.Figure]:
    """Δ_MTL first, then one chart per task."""
    return [change_chart(table, DELTA)] + [change_chart(table, t.name) for t in table.tasks]


def _ci(table: SweepTable) -> str:
    _, c = next(iter(table.comparisons.values()))
    return f"{c.delta.confidence:.0%}"
