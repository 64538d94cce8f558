"""Execute a notebook in place with its stored (tiny) parameters, then drop the outputs that nbval ignores.

Usage: python tools/store_notebook.py notebooks/<name>.ipynb [...]
Outputs of cells tagged ``nbval-ignore-output`` (plotly figures with random ids and an embedded plotly.js,
tqdm widgets, timings) are volatile and megabytes large: they are not kept in git. Every other output is
what nbval checks in CI.
"""

import subprocess
import sys
from pathlib import Path

import nbformat


def store(path: Path) -> None:
    subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute", "--inplace",
                    "--ExecutePreprocessor.timeout=900", path.name], cwd=path.parent, check=True)
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and "nbval-ignore-output" in cell.metadata.get("tags", []):
            cell.outputs = []
    nbformat.write(nb, path)


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        store(Path(arg))
