"""Execute a notebook in place with its stored (tiny) parameters, then drop what nbval ignores or what changes on
every run.

Usage: python tools/store_notebook.py notebooks/<name>.ipynb [...]
The notebooks are written by their generators (``tools/make_train_notebook.py``, ``tools/make_analysis_notebooks.py``)
without outputs; this stores the outputs nbval checks in CI. Outputs of cells tagged ``nbval-ignore-output``
(plotly figures with random ids and an embedded plotly.js, tqdm widgets, timings) are volatile and megabytes
large, and so are the per-cell execution timestamps and the saved widget state: none is kept in git.
"""

import subprocess
import sys
from pathlib import Path

import nbformat

IGNORE = "nbval-ignore-output"


def store(path: Path) -> None:
    path = Path(path)
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
