"""environment.yml and pyproject.toml list the same dependencies; torch: a range in the metadata, one pin elsewhere.

The package metadata asks for a compatible torch range, so ``pip install -e .`` keeps a CUDA build already
installed; the Makefile's set-up step and environment.yml's CPU variant pin the tested CPU build, and that pin
must lie inside the range.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return Requirement(req).name.lower()


def _pyproject() -> dict[str, str]:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = meta["dependencies"] + [r for group in meta["optional-dependencies"].values() for r in group]
    return {_name(r): r.replace(" ", "") for r in reqs}


def _environment() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "python=3.11" in env["dependencies"]
    return {_name(r): r.replace(" ", "") for r in pip}


def _makefile_torch_pin() -> str:
    pins = re.findall(r"pip install -q (torch==[\w.+]+)", (ROOT / "Makefile").read_text())
    assert len(pins) == 1, f"expected one torch pin in the Makefile, found {pins}"
    return pins[0]


def test_environment_and_pyproject_list_the_same_packages():
    py, env = _pyproject(), _environment()
    assert set(py) == set(env)
    assert {k: v for k, v in py.items() if k != "torch"} == {k: v for k, v in env.items() if k != "torch"}


def test_torch_is_a_range_in_the_metadata_and_the_pins_satisfy_it():
    spec = Requirement(_pyproject()["torch"]).specifier
    assert not any(s.operator == "==" for s in spec), "pyproject.toml must not pin torch (it replaces a CUDA build)"
    env_pin = Requirement(_environment()["torch"])
    (pin,) = env_pin.specifier
    assert pin.operator == "==" and spec.contains(pin.version), f"environment.yml {env_pin} outside {spec}"
    assert _makefile_torch_pin() == str(env_pin)


def test_torch_is_installed_first_by_the_makefile():
    make = (ROOT / "Makefile").read_text()
    assert make.index(f"pip install -q {_makefile_torch_pin()}") < make.index("pip install -q -e")


def test_kornia_is_a_dependency():
    assert Requirement(_pyproject()["kornia"]).specifier.contains("0.7.0")
