"""Prediction grids: image, ground truth, prediction and error for each task."""

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


@torch.no_grad()
def prediction_grid(model, method, dataset, tasks: list[TaskSpec], indices: list[int],
                    device: torch.device | str = "cpu") -> go.Figure:
    """Rows = samples; per task the columns ground truth / prediction / error."""
    model.eval()
    method.eval()
    items = [dataset[i] for i in indices]
    images = torch.stack([it["image"] for it in items]).to(device)
    _, _, preds = forward_step(model, method, images)
    cols = ["image"] + [f"{t.name} {kind}" for t in tasks for kind in ("gt", "pred", "error")]
    fig = make_subplots(rows=len(items), cols=len(cols), subplot_titles=cols + [""] * (len(cols) * (len(items) - 1)),
                        horizontal_spacing=0.005, vertical_spacing=0.02)
    for r, item in enumerate(items, 1):
        fig.add_trace(go.Image(z=(item["image"].numpy().transpose(1, 2, 0) * 255).astype(np.uint8)), r, 1)
        c = 2
        for t in tasks:
            gt = item[t.name]
            pred = preds[t.name][r - 1].float().cpu()
            fig.add_trace(go.Image(z=task_to_rgb(t, gt.numpy())), r, c)
            fig.add_trace(go.Image(z=task_to_rgb(t, pred.numpy())), r, c + 1)
            err = error_map(t, pred, gt)
            fig.add_trace(go.Heatmap(z=err[::-1], colorscale="Inferno", showscale=False), r, c + 2)
            c += 3
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    h, w = items[0]["image"].shape[-2:]
    return fig.update_layout(height=110 * len(items) * h / w * 1.25 + 60, width=110 * len(cols) + 40,
                             margin=dict(l=5, r=5, t=40, b=5), title="Predictions (error: task units)")
