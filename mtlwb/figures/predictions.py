"""Prediction grids: image, ground truth, prediction and error, one row per (image, task)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from ..losses import valid_pixels
from ..methods import forward_step
from ..tasks import TaskSpec


def _palette(n: int) -> np.ndarray:
    rng = np.random.default_rng(3)
    return (rng.uniform(0.15, 1.0, (max(n, 1), 3)) * 255).astype(np.uint8)


def task_to_rgb(task: TaskSpec, array: np.ndarray) -> np.ndarray:
    """Render a task map [C, H, W] (or [H, W] labels) as an RGB uint8 image [H, W, 3]."""
    if task.kind == "segmentation":
        labels = array if array.ndim == 2 else array.argmax(0)
        rgb = _palette(task.channels)[np.clip(labels, 0, None).astype(int) % task.channels]
        rgb[labels < 0] = 0
        return rgb
    if task.kind == "normal":
        return ((np.clip(array.transpose(1, 2, 0), -1, 1) + 1) * 127.5).astype(np.uint8)
    x = array[0]
    if task.kind == "edge" and x.min() < 0:       # logits
        x = 1 / (1 + np.exp(-x))
    hi = np.percentile(x, 99) if x.max() > 0 else 1.0
    gray = (np.clip(x / max(hi, 1e-6), 0, 1) * 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, -1)


def error_map(task: TaskSpec, pred: torch.Tensor, target: torch.Tensor) -> np.ndarray:
    """Per-pixel error [H, W] in the task's own unit (0 where the target is invalid)."""
    valid = valid_pixels(task, target[None])[0, 0].numpy()
    if task.kind == "segmentation":
        err = (pred.argmax(0) != target).float().numpy()
    elif task.kind == "normal":
        cos = torch.nn.functional.cosine_similarity(pred, target, dim=0).clamp(-1, 1)
        err = torch.rad2deg(torch.arccos(cos)).numpy()
    elif task.kind == "edge":
        err = (torch.sigmoid(pred[0]) - target[0]).abs().numpy()
    else:
        err = (pred[0] - target[0]).abs().numpy()
    return np.where(valid, err, 0.0)


# what the error panel of each task kind measures (its title)
ERROR_UNITS = {"segmentation": "wrong class", "depth": "|error|", "normal": "angle °", "edge": "|p − y|"}
GRID_COLUMNS = ("image", "ground truth", "prediction", "error")


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
    _, _, preds = forward_step(model, method, images)
    h, w = items[0]["image"].shape[-2:]
    rows = [(r, t) for r in range(len(items)) for t in tasks]
    titles = [title for r, t in rows
              for title in (f"image {indices[r]}", f"{t.name} ground truth", f"{t.name} prediction",
                            f"{t.name} error ({ERROR_UNITS.get(t.kind, '|error|')})")]
    panel_height = panel_width * h / w
    title_px, gap_px = 22, 6
    height = len(rows) * (panel_height + title_px + gap_px) + 50
    fig = make_subplots(rows=len(rows), cols=len(GRID_COLUMNS), subplot_titles=titles,
                        horizontal_spacing=0.01, vertical_spacing=(title_px + gap_px) / height)
    for row, (r, t) in enumerate(rows, 1):
        item = items[r]
        gt = item[t.name]
        pred = preds[t.name][r].float().cpu()
        fig.add_trace(go.Image(z=(item["image"].numpy().transpose(1, 2, 0) * 255).astype(np.uint8)), row, 1)
        fig.add_trace(go.Image(z=task_to_rgb(t, gt.numpy())), row, 2)
        fig.add_trace(go.Image(z=task_to_rgb(t, pred.numpy())), row, 3)
        err = error_map(t, pred, gt)                                        # [H, W]
        fig.add_trace(go.Heatmap(z=err[::-1], colorscale="Inferno", showscale=False), row, 4)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_annotations(font_size=11)
    return fig.update_layout(height=round(height), width=panel_width * len(GRID_COLUMNS) + 40,
                             margin=dict(l=5, r=5, t=50, b=5), title="Predictions (error in task units)")
