"""Plotly figures built from run records and models; notebooks only display them."""

import re

from plotly.io._base_renderers import NotebookRenderer

from .change import change_chart, change_charts
from .curves import history_frame, loss_curves, metric_curves
from .predictions import error_map, prediction_grid, task_to_rgb

__all__ = ["change_chart", "change_charts", "error_map", "history_frame",
           "loss_curves", "metric_curves", "prediction_grid", "task_to_rgb"]

OFFLINE_RENDERER = "mtlwb_notebook"


class OfflineNotebookRenderer(NotebookRenderer):
    """Plotly's ``notebook`` renderer (plotly.js embedded once) without the MathJax script it loads from a CDN with
    every figure: no figure here has LaTeX, and an exported report must render with no network."""

    mathjax_cdn = re.compile(r'\s*<script src="https?://[^"]*mathjax[^"]*"></script>')

    def to_mimebundle(self, fig_dict):
        bundle = super().to_mimebundle(fig_dict)
        bundle["text/html"] = self.mathjax_cdn.sub("", bundle["text/html"])
        return bundle


def use_offline_renderer() -> None:
    """Figures that render in JupyterLab (``plotly_mimetype``) *and* in exported HTML with no network."""
    import plotly.io as pio

    if OFFLINE_RENDERER not in pio.renderers:
        pio.renderers[OFFLINE_RENDERER] = OfflineNotebookRenderer()
    pio.renderers.default = f"plotly_mimetype+{OFFLINE_RENDERER}"


# Exploration figures (dataset, task affinity, gradients, latent spaces) and file export.
from . import affinity, dataset, diagnostics, export, gradients, latent, scaling  # noqa: E402
from .affinity import (  # noqa: E402
    affinity_comparison,
    affinity_evolution,
    affinity_heatmap,
    affinity_trajectories,
    image_affinity_browser,
    image_affinity_figure,
    prior_heatmap,
    prototype_projection,
    prototype_similarity,
    record_affinity_heatmap,
    task_relations,
)
from .dataset import (  # noqa: E402
    class_histogram,
    image_label_table,
    label_count_figure,
    label_count_table,
    sample_browser,
    sample_grid,
)
from .diagnostics import alignment_over_epochs, landscape_chart  # noqa: E402
from .export import export_figure, find_browser, write_html, write_png  # noqa: E402
from .gradients import gradient_affinity, gradient_affinity_heatmap  # noqa: E402
from .latent import cached_tsne, joint_latent_figure, joint_latent_over_epochs, task_feature_figure  # noqa: E402
from .scaling import cost_vs_tasks  # noqa: E402
from .sweep_curves import sweep_learning_curves  # noqa: E402
from .sweep_metrics import bar_chart, radar_chart  # noqa: E402

__all__ += ["alignment_over_epochs", "bar_chart", "diagnostics", "landscape_chart", "radar_chart"]
__all__ += ["affinity", "affinity_comparison", "affinity_evolution", "affinity_heatmap", "affinity_trajectories",
            "cached_tsne", "class_histogram", "cost_vs_tasks", "dataset", "export", "export_figure", "find_browser",
            "gradient_affinity", "gradient_affinity_heatmap", "gradients", "image_affinity_browser",
            "image_affinity_figure", "image_label_table", "joint_latent_figure", "joint_latent_over_epochs",
            "label_count_figure", "label_count_table", "latent", "prior_heatmap", "prototype_projection",
            "prototype_similarity", "record_affinity_heatmap", "sample_browser", "sample_grid", "scaling",
            "sweep_learning_curves", "task_feature_figure", "task_relations", "write_html", "write_png"]
