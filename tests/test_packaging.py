"""environment.yml and pyproject.toml list the same dependencies; the Makefile pins torch first."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ]", req, maxsplit=1)[0].lower()


def _pyproject() -> dict[str, str]:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = meta["dependencies"] + [r for group in meta["optional-dependencies"].values() for r in group]
    return {_name(r): r.replace(" ", "") for r in reqs}


def _environment() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "python=3.11" in env["dependencies"]
    return {_name(r): r.replace(" ", "") for r in pip}


def test_environment_and_pyproject_agree():
    assert _pyproject() == _environment()


def test_torch_is_pinned_and_installed_first():
    assert _pyproject()["torch"] == "torch==2.13.0"
    make = (ROOT / "Makefile").read_text()
    assert make.index("pip install -q torch==2.13.0") < make.index("pip install -q -e")
