"""Execute the exploration notebooks with their defaults into reports/ and export self-contained HTML.

Run from the project root: `.venv/bin/python tools/make_analysis_reports.py`. Each report embeds plotly.js (the
notebooks call ``figures.use_offline_renderer()``), so the HTML opens with no network.
"""
from pathlib import Path

from mtlwb.sweeps.notebooks import execute, export_html

for name in ("dataset_explorer", "task_affinity", "joint_latent", "diagnostics"):
    out = execute(Path("notebooks") / f"{name}.ipynb", Path("reports") / f"{name}.ipynb", cwd="notebooks",
                  progress=False)
    html = export_html(out, Path("reports") / f"{name}.html")
    text = html.read_text()
    ok = "application/vnd.plotly.v1+json" in text or "Plotly.newPlot" in text
    print(f"{html}: {len(text) / 1e6:.1f} MB, plotly figure data: {ok}, plotly.js embedded: {'plotly.js v' in text}")
