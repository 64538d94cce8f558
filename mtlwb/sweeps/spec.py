"""The sweep file: a YAML grid of training-notebook parameters, read and validated before any run starts.

A sweep file names the notebook parameters of every run::

    name: methods                      # folder: reports/sweeps/<name>/
    notebook: notebooks/train.ipynb    # default
    description: free text             # optional
    baseline: {method: supervised}     # identifies the baseline runs for Δ_MTL
    fixed: {epochs: 4}                 # parameters of every run
    grid:                              # cartesian product
      method: [supervised, tpkr]
      seed: [0, 1, 2]
    include:                           # optional extra runs over ``fixed``, each crossed with
      - {method: tpkr, method_options: {use_vq: false}}   # the grid axes it does not set (here: seed)

Everything is validated before the first kernel starts: each key must be a parameter of the notebook with the
default's type, and each run's values must build an ``ExperimentConfig``; the error names the key (and the run).
Expanding the grid names every run (``SweepSpec.runs``; the ids are ``run_ids``'). What is done with the runs is
decided elsewhere: ``planning`` (what a sweep folder already holds), ``run`` (executing them).
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .run_ids import SET_BY_SWEEP, canonical, effective_params, params_run_id, run_id

DEFAULT_NOTEBOOK = "notebooks/train.ipynb"
SPEC_KEYS = ("name", "description", "notebook", "baseline", "fixed", "grid", "include", "reuse_from", "claims")


@dataclass(frozen=True)
class RunSpec:
    """One run: its stable id, the parameters the sweep file sets, and the effective value of every notebook
    parameter that the run is given (the file's value, else the ``ExperimentConfig`` default)."""

    run_id: str
    params: dict[str, Any]
    effective: dict[str, Any] = field(default_factory=dict)
    training: bool = False                  # a run of the training notebook (its parameters build a config)


@dataclass
class SweepSpec:
    """A validated sweep file."""

    name: str
    notebook: str = DEFAULT_NOTEBOOK
    description: str = ""
    baseline: dict[str, Any] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list] = field(default_factory=dict)
    include: list[dict[str, Any]] = field(default_factory=list)
    reuse_from: list[str] = field(default_factory=list)   # other sweeps (names under the same root) to copy runs from
    # {name, group, vs, relation, on}: tested in the summary (on: a task, its primary metric instead of Δ_MTL)
    claims: list[dict[str, Any]] = field(default_factory=list)

    def runs(self) -> list[RunSpec]:
        """Grid product (over ``fixed``), then each ``include`` entry; duplicates collapse to one."""
        combos: list[dict] = []
        if self.grid:
            keys = list(self.grid)
            combos = [dict(zip(keys, values)) for values in itertools.product(*(self.grid[k] for k in keys))]
        for extra in self.include:  # crossed with the grid axes it leaves open (typically seed)
            open_keys = [k for k in self.grid if k not in extra]
            for values in itertools.product(*(self.grid[k] for k in open_keys)):
                combos.append({**dict(zip(open_keys, values)), **extra})
        from .notebooks import notebook_parameters

        defaults = notebook_parameters(self.notebook)
        training = _is_training_notebook(defaults)
        if training:
            _check_training_notebook(self.notebook, defaults)
        out: dict[str, RunSpec] = {}
        for combo in combos:
            params = {**self.fixed, **combo}
            if training:
                effective = effective_params(params, defaults)
                rid = run_id(effective)
            else:
                effective, rid = dict(params), params_run_id(params)
            out.setdefault(rid, RunSpec(rid, params, effective, training))
        return list(out.values())

    def is_baseline(self, params: dict[str, Any]) -> bool:
        return bool(self.baseline) and all(canonical(params.get(k)) == canonical(v) for k, v in self.baseline.items())


def load_spec(spec: str | Path | dict | SweepSpec) -> SweepSpec:
    """Read (YAML path or dict) and validate a sweep; ValueError names the offending key and run."""
    if isinstance(spec, SweepSpec):
        raw = dataclasses.asdict(spec)
    elif isinstance(spec, dict):
        raw = dict(spec)
    else:
        path = Path(spec)
        if not path.is_file():
            raise FileNotFoundError(f"sweep file {str(path)!r} does not exist")
        raw = _read_yaml(path) or {}
        if not isinstance(raw, dict):
            raise ValueError(f"sweep file {str(path)!r}: expected a mapping of {list(SPEC_KEYS)}")
        raw.setdefault("name", path.stem)
    unknown = sorted(set(raw) - set(SPEC_KEYS))
    if unknown:
        raise ValueError(f"sweep: unknown top-level keys {unknown}; allowed {list(SPEC_KEYS)}")
    for key, kind in (("baseline", dict), ("fixed", dict), ("grid", dict), ("include", list)):
        if raw.get(key) is None:
            raw.pop(key, None)
        elif not isinstance(raw[key], kind):
            raise ValueError(f"sweep {key!r} must be a {kind.__name__}, got {type(raw[key]).__name__}")
    spec = SweepSpec(**raw)
    validate(spec)
    return spec


def _read_yaml(path: Path) -> Any:
    """The parsed file; a YAML syntax error becomes one ValueError line naming the file, line and column."""
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        context = f" ({e.context})" if getattr(e, "context", None) else ""
        raise ValueError(f"sweep file {str(path)!r}: not valid YAML{where}: {problem}{context}; a text value "
                         "holding ': ' or ' #' must be quoted") from None


def validate(spec: SweepSpec) -> None:
    """All checks that can fail before any run starts."""
    from .notebooks import check_parameters, notebook_parameters

    if not isinstance(spec.name, str) or not spec.name or not all(c.isalnum() or c in "-_." for c in spec.name):
        raise ValueError(f"sweep name={spec.name!r}: use letters, digits, '-', '_' or '.' (it is a folder name)")
    if not Path(spec.notebook).is_file():
        raise ValueError(f"sweep notebook={spec.notebook!r}: no such notebook")
    notebook_parameters(spec.notebook)   # the notebook must have a parameters cell
    for key, values in spec.grid.items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"sweep grid[{key!r}]={values!r}: must be a non-empty list of values")
    for i, extra in enumerate(spec.include):
        if not isinstance(extra, dict) or not extra:
            raise ValueError(f"sweep include[{i}]={extra!r}: must be a non-empty mapping of parameters")
    if not isinstance(spec.reuse_from, list) or not all(
            isinstance(n, str) and n and n != spec.name and all(c.isalnum() or c in "-_." for c in n)
            for n in spec.reuse_from):
        raise ValueError(f"sweep reuse_from={spec.reuse_from!r}: must be a list of other sweeps' names "
                         "(folders beside this sweep's, e.g. [regime])")
    if not spec.grid and not spec.include:
        raise ValueError("sweep grid is empty and there is no include: nothing to run")
    for section, params in (("fixed", spec.fixed), ("baseline", spec.baseline),
                            *((f"grid[{k!r}]", {k: v}) for k, vs in spec.grid.items() for v in vs),
                            *((f"include[{i}]", e) for i, e in enumerate(spec.include))):
        owned = sorted(set(params) & set(SET_BY_SWEEP))
        if owned:
            raise ValueError(f"sweep {section}: {owned} are set by the sweep (one folder per run); remove them")
        try:
            check_parameters(spec.notebook, params)
        except ValueError as e:
            raise ValueError(f"sweep {section}: {e}") from None
    runs = spec.runs()   # a training run's parameters must build an ExperimentConfig (the error names them)
    if spec.baseline and not any(spec.is_baseline(r.params) for r in runs):
        raise ValueError(f"sweep baseline={spec.baseline!r} matches none of the {len(runs)} runs")
    _validate_claims(spec, runs)


def _validate_claims(spec: SweepSpec, runs: list[RunSpec]) -> None:
    """Each claim names itself, a relation and two selectors of notebook parameters that each pick some run."""
    from ..analysis.stats import CLAIM_RELATIONS
    from .notebooks import check_parameters

    if not isinstance(spec.claims, list):
        raise ValueError(f"sweep claims={spec.claims!r}: must be a list of {{name, group, vs, relation}}")
    for i, claim in enumerate(spec.claims):
        where = f"sweep claims[{i}]"
        if isinstance(claim, dict) and True in claim and "on" not in claim:
            claim["on"] = claim.pop(True)     # YAML 1.1 reads a bare ``on:`` key as the boolean true
        if not isinstance(claim, dict) or set(claim) - {"name", "group", "vs", "relation", "on"} or \
                not isinstance(claim.get("name"), str) or not claim["name"]:
            raise ValueError(f"{where}={claim!r}: must be a mapping with a non-empty name, group, vs and optional "
                             f"relation ({' or '.join(CLAIM_RELATIONS)}) and on (a task)")
        if claim.get("relation", ">") not in CLAIM_RELATIONS:
            raise ValueError(f"{where}.relation={claim['relation']!r}: allowed {list(CLAIM_RELATIONS)}")
        for side in ("group", "vs"):
            selector = claim.get(side)
            if not isinstance(selector, dict) or not selector:
                raise ValueError(f"{where}.{side}={selector!r}: must be a non-empty mapping of parameters")
            try:
                check_parameters(spec.notebook, selector)
            except ValueError as e:
                raise ValueError(f"{where}.{side}: {e}") from None
            if not any(_selects(r, selector) for r in runs):
                raise ValueError(f"{where}.{side}={selector!r} matches none of the {len(runs)} runs")
        if "on" in claim:      # a per-task claim: every run either side picks must have that task
            picked = [r for r in runs if _selects(r, claim["group"]) or _selects(r, claim["vs"])]
            lacking = sorted({tuple(_run_tasks(r)) for r in picked if claim["on"] not in _run_tasks(r)})
            if not isinstance(claim["on"], str) or lacking:
                raise ValueError(f"{where}.on={claim['on']!r}: must be a task of every run the claim compares "
                                 f"(their tasks: {sorted({t for r in picked for t in _run_tasks(r)})})")


def _run_tasks(run: RunSpec) -> list[str]:
    """The tasks a run trains (its effective ``tasks``; a non-training notebook's runs: none)."""
    tasks = {**run.params, **run.effective}.get("tasks")
    return list(tasks) if isinstance(tasks, (list, tuple)) else []


def _selects(run: RunSpec, selector: dict[str, Any]) -> bool:
    """Whether a claim's selector picks ``run``: every value equal to the run's effective one; ``method_options``
    compared as resolved options (``{use_vq: true}`` at its default picks the run written ``{}``)."""
    values = {**run.params, **run.effective}
    for key, wanted in selector.items():
        if key == "method_options" and run.training:
            from ..methods import METHODS, options_dict, parse_options

            try:
                wanted = options_dict(parse_options(METHODS[values["method"]], wanted))
            except (KeyError, TypeError, ValueError):   # options of another method: not this run
                return False
        if canonical(values.get(key)) != canonical(wanted):
            return False
    return True


def _config_fields() -> set[str]:
    from ..config import ExperimentConfig

    return {f.name for f in dataclasses.fields(ExperimentConfig)}


def _is_training_notebook(defaults: dict[str, Any]) -> bool:
    from .notebook_params import TRAIN_NOTEBOOK_ONLY  # how train.ipynb obtains its run: not config fields

    return "method" in defaults and set(defaults) - TRAIN_NOTEBOOK_ONLY <= _config_fields()


def _check_training_notebook(notebook: str, defaults: dict[str, Any]) -> None:
    """A training notebook's parameters are every config field: one it lacks could not be set by a sweep, and its
    runs would silently train that field's default while the sweep's id and record said otherwise."""
    missing = sorted(_config_fields() - set(defaults))
    if missing:
        raise ValueError(f"sweep notebook={notebook!r}: a training notebook takes every ExperimentConfig field as a "
                         f"parameter; its parameters cell lacks {missing}")


__all__ = ["DEFAULT_NOTEBOOK", "SPEC_KEYS", "RunSpec", "SweepSpec", "load_spec", "validate"]
