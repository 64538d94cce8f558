"""Dataset explorer: samples with their partial labels, class content, and label counts per setting.

Why: a partial-label result means little without knowing what each image was labelled for; these figures put
the label table of a setting next to the images it masks.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from tqdm.auto import tqdm

from ..data.generate import IMAGE_LABELS_FILE, derive_image_labels, scene_seed
from ..data.masks import make_mask
from ..data.scenes import IMAGE_LABEL_NAMES, scene_image_labels
from ..tasks import CAMERA_VIEW, DOMINANT_CLASS, TaskSpec
from .predictions import class_name, task_to_rgb
from .widgets import figure_browser

DEFAULT_SETTINGS = ("full", "onelabel", "randomlabel", "ratio:semantic=0.1")


def _image_rgb(item: dict) -> np.ndarray:
    return (item["image"].numpy().transpose(1, 2, 0) * 255).clip(0, 255).astype(np.uint8)


def _dim(rgb: np.ndarray) -> np.ndarray:
    """Unlabelled panels are faded towards grey and cross-hatched: the ground truth exists, training never sees it."""
    out = (0.3 * rgb + 0.7 * 128).astype(np.uint8)
    h, w = out.shape[:2]
    yy, xx = np.mgrid[:h, :w]
    out[((yy + xx) % 12 == 0) | ((yy - xx) % 12 == 0)] = 60
    return out


def sample_grid(dataset, tasks: Sequence[TaskSpec], indices: Sequence[int], table: np.ndarray | None = None,
                show: Sequence[str] | None = None, setting: str = "") -> go.Figure:
    """Rows = images; columns = image and each shown task's ground truth, faded where the setting leaves it unlabelled.

    ``table`` is the [N, T] label table of a setting (rows = dataset indices, columns in ``tasks`` order).
    Image-level tasks have no map: their labels are written in the image's title (✗ = unlabelled in the setting).
    """
    names = [u.name for u in tasks]
    level = [t for t in tasks if t.image_level and (show is None or t.name in show)]
    shown = [t for t in tasks if not t.image_level and (show is None or t.name in show)]
    cols = ["image"] + [t.name for t in shown]
    titles = []
    for i in indices:
        item = dataset[i] if level else None
        labels = []
        for t in level:
            mark = "" if table is None else ("" if table[i, names.index(t.name)] else " ✗")
            labels.append(f"{t.name}={image_label_text(t, item[t.name])}{mark}")
        titles.append(f"#{i}" + ("<br>" + "<br>".join(labels) if labels else ""))
        for t in shown:
            j = [u.name for u in tasks].index(t.name)
            mark = "" if table is None else (" ✓" if table[i, j] else " ✗ unlabelled")
            titles.append(t.name + mark)
    h, w = dataset[indices[0]]["image"].shape[-2:]
    lines = 1 + len(level)                          # the image's title carries one line per image-level label
    fig = titled_image_grid(len(indices), len(cols), titles, panel_width=170, aspect=h / w, title_lines=lines)
    for r, i in enumerate(indices, 1):
        item = dataset[i]
        fig.add_trace(go.Image(z=_image_rgb(item), name=f"image {i}"), r, 1)
        for c, t in enumerate(shown, 2):
            j = [u.name for u in tasks].index(t.name)
            rgb = task_to_rgb(t, item[t.name].numpy())
            if table is not None and not table[i, j]:
                rgb = _dim(rgb)
            fig.add_trace(go.Image(z=rgb, name=f"{t.name} {i}"), r, c)
    title = "Samples and ground truth" + (f" — setting {setting!r} (faded = not labelled)" if setting else "")
    return fig.update_layout(title=title)


TITLE_LINE_PX = 15   # one line of an 11 px subplot title


def titled_image_grid(rows: int, cols: int, titles: Sequence[str], panel_width: int, aspect: float,
                      title_lines: int = 1) -> go.Figure:
    """Empty subplots for a grid of image panels, each with a title of up to ``title_lines`` lines.

    The space between rows is set in pixels (a title's height plus a gap) rather than as a fraction of the figure,
    so a title sits in its own band and never over the image above it, whatever the number of rows.
    """
    panel_height = panel_width * aspect
    band = title_lines * TITLE_LINE_PX + 8
    top, bottom = 50 + band, 5                       # figure title, then the first row's subplot titles
    plot_height = rows * panel_height + (rows - 1) * band
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=list(titles), horizontal_spacing=0.01,
                        vertical_spacing=band / plot_height if rows > 1 else 0.0)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_annotations(font_size=11)
    return fig.update_layout(height=round(plot_height + top + bottom), width=panel_width * cols + 20,
                             margin=dict(l=5, r=5, t=top, b=bottom))


def style_comparison(styled: dict[str, Sequence[np.ndarray]], indices: Sequence[int]) -> go.Figure:
    """One row per rendering style, one column per scene (``styled``: style name -> the scenes' images [H, W, 3] in
    [0, 1]): the same rooms, so what differs between the rows is the domain gap a second source brings."""
    names = list(styled)
    h, w = np.asarray(styled[names[0]][0]).shape[:2]
    titles = [f"{name} · scene {i}" for name in names for i in indices]
    fig = titled_image_grid(len(names), len(indices), titles, panel_width=170, aspect=h / w)
    for r, name in enumerate(names, 1):
        for c, image in enumerate(styled[name], 1):
            rgb = (np.clip(np.asarray(image, dtype=float), 0, 1) * 255).astype(np.uint8)
            fig.add_trace(go.Image(z=rgb, name=f"{name} {indices[c - 1]}"), r, c)
    return fig.update_layout(title="The same scenes in two rendering styles")


def image_label_text(task: TaskSpec, value) -> str:
    """An image-level label as text: the class name, or the value(s) to 2 decimals."""
    if task.kind_object.categorical:
        return class_name(task, int(value))
    return ", ".join(f"{float(v):.2f}" for v in np.asarray(value).reshape(-1))


def image_label_table(data_root: str | Path, split: str, indices: Sequence[int]) -> pd.DataFrame | None:
    """The built-in scenes' image-level labels of some images (rows = indices), class names spelled out.

    Read from ``<split>/image_labels.json`` (an older version's file gets the labels derived from its stored ones,
    e.g. camera_view from camera_pitch); a dataset generated before those files existed gets them recomputed from
    each scene's seed (geometry and primary rays only). Nothing is written. None for other datasets.
    """
    root = Path(data_root)
    meta_path = root / "meta.json"
    if not meta_path.is_file():
        return None
    path = root / split / IMAGE_LABELS_FILE
    if path.is_file():
        table = derive_image_labels(json.loads(path.read_text()))
        rows = [{k: table[k][i] for k in IMAGE_LABEL_NAMES} for i in indices]
    else:
        meta = json.loads(meta_path.read_text())
        rows = [scene_image_labels(scene_seed(meta["seed"], split, i), meta["height"], meta["width"]) for i in indices]
    frame = pd.DataFrame(rows, index=pd.Index(list(indices), name="image"))
    for task in (DOMINANT_CLASS, CAMERA_VIEW):
        frame[task.name] = [class_name(task, int(c)) for c in frame[task.name]]
    return frame.round(3)


def class_histogram(dataset, class_names: Sequence[str] | None = None, limit: int | None = None,
                    progress: bool = True) -> go.Figure:
    """Share of labelled pixels per class, and share of images containing the class (two bars per class)."""
    n = len(dataset) if limit is None else min(limit, len(dataset))
    counts: np.ndarray | None = None
    present: np.ndarray | None = None
    for i in tqdm(range(n), desc="class histogram", disable=not progress, leave=False):
        lab = dataset[i]["semantic"].numpy().ravel()
        c = np.bincount(lab[lab >= 0], minlength=len(class_names) if class_names else 1)
        if counts is None:
            counts, present = np.zeros_like(c), np.zeros_like(c)
        if len(c) > len(counts):
            counts, present = np.pad(counts, (0, len(c) - len(counts))), np.pad(present, (0, len(c) - len(counts)))
        counts[: len(c)] += c
        present[: len(c)] += c > 0
    assert counts is not None and present is not None
    names = list(class_names) if class_names else [str(k) for k in range(len(counts))]
    names += [str(k) for k in range(len(names), len(counts))]
    df = pd.DataFrame({"class": names * 2,
                       "share": np.concatenate([counts / max(counts.sum(), 1), present / max(n, 1)]),
                       "measure": ["pixels"] * len(names) + ["images containing it"] * len(names)})
    fig = px.bar(df, x="class", y="share", color="measure", barmode="group",
                 title=f"Semantic classes over {n} images")
    return fig.update_layout(height=360, yaxis_tickformat=".0%")


def label_count_table(n: int, task_names: Sequence[str], settings: Sequence[str] = DEFAULT_SETTINGS,
                      seed: int = 0) -> pd.DataFrame:
    """Labelled images per task for each setting (the same tables training uses: generated from ``seed``)."""
    rows = []
    for s in settings:
        table = make_mask(s, n, list(task_names), seed)
        row = {"setting": s}
        row.update({name: int(table[:, j].sum()) for j, name in enumerate(task_names)})
        row["images with a label"] = int((table.sum(1) > 0).sum())
        row["labels per image"] = round(float(table.sum(1).mean()), 3)
        rows.append(row)
    return pd.DataFrame(rows).set_index("setting")


def label_count_figure(counts: pd.DataFrame, task_names: Sequence[str]) -> go.Figure:
    """The label-count table as grouped bars (one group per setting)."""
    df = counts[list(task_names)].reset_index().melt(id_vars="setting", var_name="task", value_name="labelled images")
    fig = px.bar(df, x="setting", y="labelled images", color="task", barmode="group", text="labelled images",
                 title="Labelled training images per task and setting")
    return fig.update_layout(height=360)


def sample_browser(dataset, tasks: Sequence[TaskSpec], table: np.ndarray | None = None, setting: str = ""):
    """Interactive browser (ipywidgets): a slider over images and one toggle per task."""
    import ipywidgets as widgets
    slider = widgets.IntSlider(value=0, min=0, max=len(dataset) - 1, description="image", continuous_update=False)
    toggles = {t.name: widgets.ToggleButton(value=True, description=t.name) for t in tasks}
    def figure():
        shown = [n for n, b in toggles.items() if b.value]
        return sample_grid(dataset, tasks, [slider.value], table, show=shown, setting=setting)

    return figure_browser([slider, *toggles.values()], figure)
