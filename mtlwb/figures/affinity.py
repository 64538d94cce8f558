"""Task affinity of the task-prototype method (tpkr): test-averaged, over epochs, per image, and its prototypes.

Why: tpkr links tasks through an affinity A[t, s] (task t's features vs. prototype slot s, rows sum to 1) rather
than through predictions; these figures show what the links became and how they formed during training.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.express as px
import plotly.graph_objects as go
import torch
import torch.nn.functional as F
from plotly.subplots import make_subplots

from ..methods import forward_step
from .widgets import figure_browser


def cell_text(matrix: np.ndarray, decimals: int = 2) -> list[list[str]]:
    """The numbers written in a heatmap's cells, as text rounded to ``decimals`` (``np.round`` of a float32 matrix
    still prints 0.7200000286102295 once plotly has turned it into a float64)."""
    return [[f"{v:.{decimals}f}" for v in row] for row in np.asarray(matrix, dtype=float)]


def record_affinities(record: dict) -> tuple[list[int], np.ndarray]:
    """Epochs and the [E, T, T] test-averaged affinity logged in a tpkr run's history."""
    rows = [(h["epoch"], h["summaries"]["affinity"]) for h in record["history"]
            if "affinity" in h.get("summaries", {})]
    if not rows:
        raise ValueError(f"run {record.get('run_id')!r} (method {record['config']['method']!r}) logged no "
                         "'affinity' summary; the affinity figures need a tpkr run")
    return [e for e, _ in rows], np.asarray([a for _, a in rows], dtype=float)


def task_names(record: dict) -> list[str]:
    return [t["name"] for t in record["tasks"]]


def affinity_heatmap(matrix: np.ndarray, names: Sequence[str], title: str = "Task affinity",
                     xlabel: str = "prototype slot", ylabel: str = "task features", zmin: float = 0.0,
                     zmax: float = 1.0, colorscale: str = "Blues") -> go.Figure:
    """T×T heatmap with the values written in each cell (the matrix is small; exact numbers matter)."""
    fig = px.imshow(np.asarray(matrix, dtype=float), x=list(names), y=list(names), zmin=zmin, zmax=zmax,
                    color_continuous_scale=colorscale, text_auto=".2f", aspect="equal",
                    labels={"x": xlabel, "y": ylabel, "color": "value"})
    return fig.update_layout(title=title, height=380, width=440, margin=dict(l=10, r=10, t=50, b=10))


def record_affinity_heatmap(record: dict, epoch_index: int = -1) -> go.Figure:
    """The affinity averaged over the test split at one logged epoch (default: the last)."""
    epochs, mats = record_affinities(record)
    return affinity_heatmap(mats[epoch_index], task_names(record),
                            title=f"Test-averaged task affinity, epoch {epochs[epoch_index]}")


def affinity_evolution(record: dict) -> go.Figure:
    """One animation frame per epoch (play button and slider), so the formation of the links can be replayed."""
    epochs, mats = record_affinities(record)
    names = task_names(record)

    def heat(m: np.ndarray) -> go.Heatmap:
        return go.Heatmap(z=m, x=names, y=names, zmin=0, zmax=1, colorscale="Blues", text=cell_text(m),
                          texttemplate="%{text}", hovertemplate="task %{y} → slot %{x}: %{z:.3f}<extra></extra>")

    frames = [go.Frame(data=[heat(m)], name=str(e)) for e, m in zip(epochs, mats)]
    steps = [{"label": str(e), "method": "animate",
              "args": [[str(e)], {"mode": "immediate", "frame": {"duration": 0, "redraw": True}}]} for e in epochs]
    fig = go.Figure(data=[heat(mats[-1])], frames=frames)
    fig.update_layout(
        title="Task affinity over epochs (test-averaged)", height=460, width=480,
        xaxis_title="prototype slot", yaxis_title="task features", yaxis_autorange="reversed",
        sliders=[{"active": len(epochs) - 1, "currentvalue": {"prefix": "epoch "}, "steps": steps}],
        updatemenus=[{"type": "buttons", "showactive": False, "x": 0, "y": -0.25, "xanchor": "left",
                      "buttons": [{"label": "▶ play", "method": "animate",
                                   "args": [None, {"frame": {"duration": 500, "redraw": True},
                                                   "fromcurrent": False}]}]}])
    return fig


def affinity_trajectories(record: dict) -> go.Figure:
    """Every A[t, s] as a line over epochs: the static counterpart of the animation (readable in a PNG)."""
    epochs, mats = record_affinities(record)
    names = task_names(record)
    rows = [{"epoch": e, "task": t, "slot": s, "affinity": mats[k, i, j]}
            for k, e in enumerate(epochs) for i, t in enumerate(names) for j, s in enumerate(names)]
    fig = px.line(rows, x="epoch", y="affinity", color="slot", facet_col="task", markers=True,
                  title="Affinity of each task's features to each slot, per epoch")
    return fig.update_layout(height=340).update_yaxes(range=[0, 1])


def prototype_similarity(slots: torch.Tensor | np.ndarray, names: Sequence[str]) -> go.Figure:
    """Cosine similarity between the learned prototype slots (what the affinity softmax compares against)."""
    v = F.normalize(torch.as_tensor(np.asarray(slots), dtype=torch.float32), dim=-1)
    sim = (v @ v.t()).numpy()
    return affinity_heatmap(sim, names, title="Cosine similarity of prototype slots", xlabel="slot",
                            ylabel="slot", zmin=-1, zmax=1, colorscale="RdBu")


def prototype_projection(slots: torch.Tensor | np.ndarray, names: Sequence[str],
                         keys: np.ndarray | None = None, key_tasks: Sequence[str] | None = None) -> go.Figure:
    """PCA of the (unit-normalised) slots, optionally with per-image task keys in the same plane.

    Cosine similarity drives the affinity, so everything is normalised before the projection.
    """
    v = F.normalize(torch.as_tensor(np.asarray(slots), dtype=torch.float32), dim=-1).numpy()
    pts = v if keys is None else np.concatenate([v, F.normalize(torch.as_tensor(keys), dim=-1).numpy()])
    k = min(2, pts.shape[0], pts.shape[1])
    from sklearn.decomposition import PCA  # lazy: see latent.cached_tsne

    xy = PCA(n_components=k, random_state=0).fit_transform(pts)
    if k < 2:
        xy = np.concatenate([xy, np.zeros((len(xy), 2 - k))], axis=1)
    fig = go.Figure()
    if keys is not None:
        kt = np.asarray(list(key_tasks)) if key_tasks is not None else np.full(len(keys), "key")
        for name in dict.fromkeys(kt):
            sel = np.nonzero(kt == name)[0] + len(v)
            fig.add_trace(go.Scatter(x=xy[sel, 0], y=xy[sel, 1], mode="markers", name=f"{name} keys",
                                     marker=dict(size=6, opacity=0.5)))
    fig.add_trace(go.Scatter(x=xy[: len(v), 0], y=xy[: len(v), 1], mode="markers+text", text=list(names),
                             textposition="top center", name="prototype slots",
                             marker=dict(size=16, symbol="star", color="black")))
    return fig.update_layout(title="Prototype slots (PCA of unit vectors)", height=420, width=520,
                             xaxis_title="PC 1", yaxis_title="PC 2")


@torch.no_grad()
def task_keys(exp, indices: Sequence[int]) -> tuple[np.ndarray, list[str]]:
    """Per-image task keys W·pool(f^t) [N·T, d] of a tpkr experiment (the vectors compared with the slots)."""
    method, model = exp.method, exp.model
    model.eval()
    method.eval()
    images = torch.stack([exp.eval_set[i]["image"] for i in indices]).to(exp.device)
    keys = method.task_keys(model.encode(images))                                 # [B, T, d]
    names = [t.name for t in exp.tasks]
    return keys.reshape(-1, keys.shape[-1]).cpu().numpy(), names * len(indices)


@torch.no_grad()
def image_affinity(exp, index: int, split: str = "eval") -> tuple[np.ndarray, np.ndarray]:
    """(image [H, W, 3] uint8, A [T, T]) for one image of a tpkr experiment."""
    dataset = exp.eval_set if split == "eval" else exp.train_set
    exp.model.eval()
    exp.method.eval()
    image = dataset[index]["image"][None].to(exp.device)
    features = exp.model.encode(image)
    a = exp.method.task_affinity(features, image)[0].float().cpu().numpy()
    return (image[0].cpu().numpy().transpose(1, 2, 0) * 255).clip(0, 255).astype(np.uint8), a


def image_affinity_figure(exp, index: int, split: str = "eval") -> go.Figure:
    """The image next to its own T×T affinity: how far one image departs from the test average."""
    image, a = image_affinity(exp, index, split)
    names = [t.name for t in exp.tasks]
    fig = make_subplots(rows=1, cols=2, column_widths=[0.45, 0.55],
                        subplot_titles=[f"{split} image {index}", "its task affinity"])
    fig.add_trace(go.Image(z=image), 1, 1)
    fig.add_trace(go.Heatmap(z=a.astype(float), x=names, y=names, zmin=0, zmax=1, colorscale="Blues",
                             text=cell_text(a), texttemplate="%{text}", showscale=False,
                             hovertemplate="task %{y} → slot %{x}: %{z:.3f}<extra></extra>"), 1, 2)
    fig.update_xaxes(visible=False, row=1, col=1)
    fig.update_yaxes(visible=False, row=1, col=1)
    fig.update_yaxes(autorange="reversed", row=1, col=2)
    return fig.update_layout(height=340, width=720, margin=dict(l=10, r=10, t=50, b=10))


def affinity_comparison(prototype: np.ndarray, gradient: np.ndarray, names: Sequence[str]) -> go.Figure:
    """Prototype affinity (tpkr only) beside gradient cosine (any method): do the two notions of 'related' agree?"""
    return task_relations(names, prototype=prototype, gradient=gradient).update_layout(
        title="Two task affinities side by side")


def prior_heatmap(prior: np.ndarray | torch.Tensor, names: Sequence[str]) -> go.Figure:
    """The configured ``task_prior`` (parsed, P[s, t] = how task s relates to task t) as a heatmap."""
    return affinity_heatmap(np.asarray(prior, dtype=float), names, title="Prior task relations (task_prior)",
                            xlabel="task t", ylabel="task s", colorscale="Greens")


# (title, colour scale, lowest value) of each panel of task_relations, in display order
_RELATION_PANELS = {"prior": ("prior (task_prior)", "Greens", 0.0),
                    "prototype": ("prototype affinity (rows sum to 1)", "Blues", 0.0),
                    "gradient": ("gradient cosine on the shared encoder", "RdBu", -1.0)}


# Side-by-side T×T panels must fit a JupyterLab notebook with the file browser open (about 900 px at a 1400 px
# wide window): the panels share one task axis (labels once, on the left) and each colour bar lies flat under its
# own panel, where its labels cannot run into the next panel's.
RELATIONS_MAX_WIDTH = 860
RELATIONS_LABELS_PX = 80      # the shared y axis' task names, left of the first panel


def task_relations(names: Sequence[str], prior: np.ndarray | torch.Tensor | None = None,
                   prototype: np.ndarray | None = None, gradient: np.ndarray | None = None) -> go.Figure:
    """What was assumed beside what was learned: the prior, TPKR's prototype affinity and the gradient cosine,
    one panel each for those given (at least one), in that order, on a shared task order."""
    given = {k: np.asarray(m, dtype=float) for k, m in
             (("prior", prior), ("prototype", prototype), ("gradient", gradient)) if m is not None}
    if not given:
        raise ValueError("task_relations: give at least one of prior, prototype, gradient")
    T = len(names)
    for key, m in given.items():
        if m.shape != (T, T):
            raise ValueError(f"task_relations: {key} has shape {m.shape}, expected ({T}, {T}) for tasks {list(names)}")
    n = len(given)
    width = min(RELATIONS_MAX_WIDTH, RELATIONS_LABELS_PX + 260 * n)
    fig = make_subplots(rows=1, cols=n, subplot_titles=[_RELATION_PANELS[k][0] for k in given],
                        horizontal_spacing=0.04, shared_yaxes=True)
    for col, (key, m) in enumerate(given.items(), 1):
        _, scale, zmin = _RELATION_PANELS[key]
        domain = fig.get_subplot(1, col).xaxis.domain
        bar = dict(orientation="h", x=(domain[0] + domain[1]) / 2, xanchor="center", len=0.8 * (domain[1] - domain[0]),
                   lenmode="fraction", y=-0.2, yanchor="top", thickness=10, tickfont=dict(size=10))
        fig.add_trace(go.Heatmap(z=m, x=list(names), y=list(names), zmin=zmin, zmax=1, colorscale=scale,
                                 text=cell_text(m), texttemplate="%{text}", name=key, colorbar=bar,
                                 hovertemplate="%{y} · %{x}: %{z:.3f}<extra></extra>"), 1, col)
    fig.update_yaxes(autorange="reversed")
    fig.update_annotations(font_size=12)
    return fig.update_layout(height=400, width=width, title="Task relations: assumed and learned",
                             margin=dict(l=RELATIONS_LABELS_PX, r=20, t=80, b=110))


def mean_affinity(exp, limit: int | None = None) -> np.ndarray:
    """The T×T affinity averaged over (the first ``limit``) evaluation images, recomputed from the model."""
    total, count = 0.0, 0
    n = len(exp.eval_set) if limit is None else min(limit, len(exp.eval_set))
    exp.model.eval()
    exp.method.eval()
    with torch.no_grad():
        for start in range(0, n, exp.config.batch_size):
            stop = min(n, start + exp.config.batch_size)
            images = torch.stack([exp.eval_set[i]["image"] for i in range(start, stop)]).to(exp.device)
            refined = forward_step(exp.model, exp.method, images).refined
            total = total + refined.extras["affinity"].sum(0).float().cpu().numpy()
            count += images.shape[0]
    return total / max(count, 1)


def image_affinity_browser(exp, index: int = 0, split: str = "eval"):
    """Slider over images (ipywidgets) redrawing ``image_affinity_figure``: find images whose links differ."""
    import ipywidgets as widgets

    n = len(exp.eval_set if split == "eval" else exp.train_set)
    slider = widgets.IntSlider(value=min(index, n - 1), min=0, max=n - 1, description="image",
                               continuous_update=False)
    return figure_browser([slider], lambda: image_affinity_figure(exp, slider.value, split))
