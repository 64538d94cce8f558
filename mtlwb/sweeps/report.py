"""A sweep's report: the ablation report notebook executed on the sweep folder and exported to ``summary.html``.

Here rather than in ``mtlwb.analysis``, because it runs a notebook (``sweeps.notebooks``); the tables, the header
and the check of the folder it shows are the analysis layer's (``analysis.tables``, ``analysis.summary``); its
charts, the figures layer's (the notebook calls ``mtlwb.figures``).
"""

from __future__ import annotations

from pathlib import Path

from ..analysis.summary import report_sweep_dir
from ..analysis.tables import SELECTIONS
from ..experiment.files import REPORT_NOTEBOOK as REPORT_OUTPUT
from ..experiment.files import SUMMARY_HTML
from .notebooks import execute, export_html

REPORT_NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / REPORT_OUTPUT   # its executed copy: same name


def render_report(sweep_dir: str | Path, notebook: str | Path = REPORT_NOTEBOOK, select: str = "auto") -> Path:
    """Execute the ablation report notebook on ``sweep_dir`` and export it, code cells hidden, to ``summary.html``.

    A folder with nothing to report is refused first (``report_sweep_dir``), before a kernel starts."""
    if select not in SELECTIONS:
        raise ValueError(f"select={select!r}: allowed {list(SELECTIONS)}")
    sweep_dir = report_sweep_dir(Path(sweep_dir)).resolve()
    out = execute(notebook, sweep_dir / REPORT_OUTPUT, {"sweep_dir": str(sweep_dir), "select": select},
                  progress=False)
    return export_html(out, sweep_dir / SUMMARY_HTML, hide_code=True)
