"""A figure that redraws when ipywidgets controls change — the one interactive pattern the notebooks use."""

from __future__ import annotations

from collections.abc import Callable, Sequence


def figure_browser(controls: Sequence, make_figure: Callable[[], object], rows: Sequence[Sequence] | None = None):
    """VBox of the controls above an Output that shows ``make_figure()`` and is redrawn on every change.

    The Output's ``outputs`` are replaced directly instead of printing inside ``with out:``: capturing
    display messages needs a front end that routes them, and a headless kernel (papermill, nbval) can
    stall on it. Replacing the trait works the same live in JupyterLab.
    """
    import ipywidgets as widgets

    out = widgets.Output()

    def redraw(*_) -> None:
        out.outputs = ()
        out.append_display_data(make_figure())

    for control in controls:
        control.observe(redraw, names="value")
    redraw()
    layout = [widgets.HBox(list(row)) for row in rows] if rows else [widgets.HBox(list(controls))]
    return widgets.VBox([*layout, out])
