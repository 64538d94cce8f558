"""Prediction grids: image, ground truth, prediction and error, one row per (image, task).

An image-level task's row shows values instead of maps: bars of the true one-hot and the predicted class
probabilities (classification) or of the true and predicted value (regression), the error as a bar (1 − p(true
class), or |ŷ − y| in the task's unit), and the numbers in the panel titles.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from ..methods import forward_step
from ..objectives.losses import valid_pixels
from ..tasks import CLASS_NAMES, TaskSpec


def task_to_rgb(task: TaskSpec, array: np.ndarray) -> np.ndarray:
    """Render a task map [C, H, W] (or [H, W] labels) as an RGB uint8 image [H, W, 3] (the task kind's colours)."""
    return task.kind_object.to_rgb(task, array)


def error_map(task: TaskSpec, pred: torch.Tensor, target: torch.Tensor) -> np.ndarray:
    """Per-pixel error [H, W] in the task's own unit (0 where the target is invalid)."""
    valid = valid_pixels(task, target[None])[0, 0].numpy()
    return np.where(valid, task.kind_object.error_map(task, pred, target), 0.0)


# Error colours: one fixed range per task, never per panel (a panel scaled to its own maximum paints its worst
# pixel the same colour whether it is off by 1 % or by 100 %). Bounded errors get their natural range
# (``TaskKind.error_range``); what the panel measures is ``TaskKind.error_unit``.
ERROR_COLORSCALE = "Inferno"
# classes: two colours only, the same "wrong class" colour in every panel
WRONG_CLASS_COLORSCALE = [[0.0, "#202020"], [0.5, "#202020"], [0.5, "crimson"], [1.0, "crimson"]]


def error_range(task: TaskSpec, errors: list[np.ndarray]) -> tuple[float, float]:
    """The colour range of all of ``task``'s error panels: fixed for the bounded errors (``error_range`` of its
    kind), else 0 to the 99th percentile of every shown map of the task together (depth in metres: one scale for
    all images)."""
    if task.kind_object.error_range is not None:
        return task.kind_object.error_range
    values = np.concatenate([e.ravel() for e in errors]) if errors else np.zeros(1)
    return 0.0, max(float(np.percentile(values, 99)), 1e-6)


def error_heatmap(task: TaskSpec, error: np.ndarray, zrange: tuple[float, float], bar_x: float,
                  bar_y: tuple[float, float]) -> go.Heatmap:
    """One error panel [H, W] on its task's fixed range, with its colour bar beside it (``bar_y``: the row's
    vertical extent, in figure fractions)."""
    bar = dict(x=bar_x, xanchor="left", y=(bar_y[0] + bar_y[1]) / 2, yanchor="middle", len=bar_y[1] - bar_y[0],
               lenmode="fraction", thickness=10, tickfont=dict(size=9), outlinewidth=0)
    kind = task.kind_object
    scale = WRONG_CLASS_COLORSCALE if kind.categorical else ERROR_COLORSCALE
    if kind.error_ticks is not None:
        bar.update(tickvals=list(kind.error_ticks[0]), ticktext=list(kind.error_ticks[1]))
    return go.Heatmap(z=error[::-1], zmin=zrange[0], zmax=zrange[1], zauto=False, colorscale=scale,
                      showscale=True, colorbar=bar, name=f"{task.name} error",
                      hovertemplate=f"{task.name} {kind.error_unit}: %{{z:.3g}}<extra></extra>")


def class_name(task: TaskSpec, index: int) -> str:
    """A classification task's class name (its index if the task names none; 'undefined' for −1)."""
    names = CLASS_NAMES.get(task.name, ())
    if index < 0:
        return "undefined"
    return names[index] if index < len(names) else str(index)


def image_level_panels(task: TaskSpec, pred: torch.Tensor, target: torch.Tensor) -> tuple[list[str], list[go.Bar]]:
    """Titles and bar traces of the ground truth, prediction and error panels of one image-level prediction.

    pred [C] (logits or values in the task's unit), target [] (class id) or [C] (values).
    """
    if task.kind_object.categorical:
        names = [class_name(task, c) for c in range(task.channels)]
        prob = pred.float().softmax(0).numpy()
        true = int(target)
        onehot = np.eye(task.channels)[true] if true >= 0 else np.zeros(task.channels)
        err = 1.0 - prob[true] if true >= 0 else float("nan")
        guess = int(prob.argmax())
        titles = [f"{task.name}: {class_name(task, true)}", f"predicted: {names[guess]} ({prob[guess]:.0%})",
                  f"error ({task.kind_object.error_unit}): {err:.2f}"]
        bars = [go.Bar(x=names, y=onehot, marker_color="seagreen"),
                go.Bar(x=names, y=prob, marker_color="steelblue", text=[f"{p:.2f}" for p in prob]),
                go.Bar(x=["1 − p"], y=[err], marker_color="indianred", text=[f"{err:.2f}"])]
        return titles, bars
    true, value = target.float().numpy().reshape(-1), pred.float().numpy().reshape(-1)
    err = np.abs(value - true)
    labels = [f"{task.name}[{c}]" if task.channels > 1 else task.name for c in range(task.channels)]
    fmt = ", ".join
    titles = [f"{task.name}: {fmt(f'{v:.2f}' for v in true)}", f"predicted: {fmt(f'{v:.2f}' for v in value)}",
              f"error ({task.kind_object.error_unit}): {fmt(f'{v:.2f}' for v in err)}"]
    bars = [go.Bar(x=labels, y=true, marker_color="seagreen", text=[f"{v:.2f}" for v in true]),
            go.Bar(x=labels, y=value, marker_color="steelblue", text=[f"{v:.2f}" for v in value]),
            go.Bar(x=labels, y=err, marker_color="indianred", text=[f"{v:.2f}" for v in err])]
    return titles, bars
GRID_COLUMNS = ("image", "ground truth", "prediction", "error")
COLORBAR_PX = 60   # right margin for the error panels' colour bars and their tick labels


@torch.no_grad()
def prediction_grid(model, method, dataset, tasks: list[TaskSpec], indices: list[int],
                    device: torch.device | str = "cpu", panel_width: int = 180) -> go.Figure:
    """One row per (image, task), four columns: image | ground truth | prediction | error.

    Why rows and not one column per task: four columns fit a notebook page whatever the number of tasks (the
    earlier 1 + 3·T columns cut the last task off at T = 3); more tasks make the figure taller, not wider.
    """
    model.eval()
    method.eval()
    items = [dataset[i] for i in indices]
    images = torch.stack([it["image"] for it in items]).to(device)   # [B, 3, H, W]
    preds = forward_step(model, method, images).predictions
    h, w = items[0]["image"].shape[-2:]
    rows = [(r, t) for r in range(len(items)) for t in tasks]
    level = {(r, t.name): image_level_panels(t, preds[t.name][r].cpu(), items[r][t.name])
             for r, t in rows if t.image_level}
    titles = [title for r, t in rows
              for title in ([f"image {indices[r]}", *level[(r, t.name)][0]] if t.image_level else
                            (f"image {indices[r]}", f"{t.name} ground truth", f"{t.name} prediction",
                             f"{t.name} error ({t.kind_object.error_unit})"))]
    panel_height = panel_width * h / w
    title_px, gap_px = 22, 6
    height = len(rows) * (panel_height + title_px + gap_px) + 50
    fig = make_subplots(rows=len(rows), cols=len(GRID_COLUMNS), subplot_titles=titles,
                        horizontal_spacing=0.01, vertical_spacing=(title_px + gap_px) / height)
    errors = {(r, t.name): error_map(t, preds[t.name][r].float().cpu(), items[r][t.name])   # [H, W] each
              for r, t in rows if not t.image_level}
    ranges = {t.name: error_range(t, [e for (_, name), e in errors.items() if name == t.name])
              for t in tasks if not t.image_level}
    for row, (r, t) in enumerate(rows, 1):
        item = items[r]
        gt = item[t.name]
        pred = preds[t.name][r].float().cpu()
        fig.add_trace(go.Image(z=(item["image"].numpy().transpose(1, 2, 0) * 255).astype(np.uint8)), row, 1)
        if t.image_level:
            for col, bar in enumerate(level[(r, t.name)][1], 2):
                fig.add_trace(bar.update(showlegend=False, textposition="auto"), row, col)
            continue
        fig.add_trace(go.Image(z=task_to_rgb(t, gt.numpy())), row, 2)
        fig.add_trace(go.Image(z=task_to_rgb(t, pred.numpy())), row, 3)
        panel = fig.get_subplot(row, len(GRID_COLUMNS))
        fig.add_trace(error_heatmap(t, errors[(r, t.name)], ranges[t.name], bar_x=panel.xaxis.domain[1] + 0.01,
                                    bar_y=panel.yaxis.domain), row, len(GRID_COLUMNS))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_annotations(font_size=11)
    return fig.update_layout(height=round(height), width=panel_width * len(GRID_COLUMNS) + 40 + COLORBAR_PX,
                             margin=dict(l=5, r=5 + COLORBAR_PX, t=50, b=5),
                             title="Predictions (error in task units; one colour range per task)")
