"""Execute a notebook in place with its stored (tiny) parameters, then drop what nbval ignores or what changes on
every run.

Usage: PYTHONPATH=$PWD .venv/bin/python tools/store_notebook.py notebooks/<name>.ipynb [...]
The ``.ipynb`` files are the notebooks' one source: edit them in JupyterLab, then run this. It first rewrites the
cell after the ``parameters`` cell (the check that refuses a mistyped papermill parameter) from the parameters cell
itself, so the two never disagree, then stores the outputs nbval checks in CI. Outputs of cells tagged
``nbval-ignore-output`` (plotly figures with random ids and an embedded plotly.js, tqdm widgets, timings) are
volatile and megabytes large, and so are the per-cell execution timestamps and the saved widget state: none is
kept in git.
"""

import subprocess
import sys
from pathlib import Path

import nbformat

from mtlwb.sweeps.notebook_params import check_cell_source

IGNORE = "nbval-ignore-output"


def refresh_check_cell(path: Path) -> None:
    """The cell after the ``parameters`` cell = the check of exactly the names that cell assigns."""
    nb = nbformat.read(path, as_version=4)
    at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    source = check_cell_source(nb.cells[at].source)
    if nb.cells[at + 1].source != source:
        nb.cells[at + 1].source = source
        nbformat.write(nb, path)


def store(path: Path) -> None:
    path = Path(path)
    refresh_check_cell(path)
    subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute", "--inplace",
                    "--ExecutePreprocessor.timeout=900", path.name], cwd=path.parent, check=True)
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and IGNORE in cell.metadata.get("tags", []):
            cell.outputs = []
        cell.metadata.pop("execution", None)
    nb.metadata.pop("widgets", None)
    nbformat.write(nb, path)


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        store(Path(arg))
