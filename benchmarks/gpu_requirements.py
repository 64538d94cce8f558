"""What the GPU benchmark imports and this interpreter lacks, as pip requirements (standard library only).

``benchmarks/gpu.sh`` runs this before anything else, with whichever Python it picked, so that on a machine that
has never seen the project only the missing packages are installed, and an existing CUDA build of torch is kept.
The benchmark does not install the project itself (``pip install -e .`` would also pull the notebook and figure
stack, and the package metadata pins the Python version): it runs from the checkout with the repository root on
``sys.path``. The requirement strings (version ranges) are read from ``pyproject.toml``, the one source of them.

Run as ``python benchmarks/gpu_requirements.py``: prints one requirement per line (nothing when all are there).
"""

from __future__ import annotations

import importlib.util
import re
import tomllib
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: import name -> distribution name, for every third-party package that ``gpu_bench.py`` imports (directly or
#: through mtlwb's training path); tests/test_benchmarks.py checks that this list is complete
NEEDED = {"torch": "torch", "numpy": "numpy", "PIL": "pillow", "tqdm": "tqdm", "yaml": "pyyaml", "kornia": "kornia"}


def _dist_name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower()


def pyproject_requirements(pyproject: Path = ROOT / "pyproject.toml") -> dict[str, str]:
    """Distribution name -> requirement string of the project's run-time dependencies."""
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    return {_dist_name(r): r.replace(" ", "") for r in deps}


def missing(find_spec: Callable[[str], object] = importlib.util.find_spec,
            pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """Requirement strings of the needed packages that this interpreter cannot import."""
    reqs = pyproject_requirements(pyproject)
    out = []
    for module, dist in NEEDED.items():
        try:
            found = find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            out.append(reqs.get(dist, dist))
    return out


if __name__ == "__main__":
    for requirement in missing():
        print(requirement)
