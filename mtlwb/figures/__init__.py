"""Plotly figures built from run records and models; notebooks only display them."""

from .curves import history_frame, loss_curves, metric_curves
from .predictions import error_map, prediction_grid, task_to_rgb

__all__ = ["error_map", "history_frame", "loss_curves", "metric_curves", "prediction_grid", "task_to_rgb"]


def use_offline_renderer() -> None:
    """Figures that render in JupyterLab *and* in exported HTML with no network (plotly.js embedded)."""
    import plotly.io as pio

    pio.renderers.default = "plotly_mimetype+notebook"
