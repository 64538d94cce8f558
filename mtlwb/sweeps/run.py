"""Ablation sweeps: a YAML grid of training-notebook parameters, run by papermill, resumable.

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

Everything is validated before the first kernel starts: each key must be a
parameter of the notebook with the default's type, and each run's values must
build an ``ExperimentConfig``; the error names the key (and the run).

Each run is the notebook executed into ``reports/sweeps/<name>/<run_id>/``
(``train.ipynb`` plus the ``metrics.json`` the notebook writes through
``run_dir``).

Effective parameters: the training notebook's stored defaults are tiny (for
CI), so a parameter the YAML leaves out must not take them. Every run is
given the effective value of every notebook parameter: the YAML's value, or
else the ``ExperimentConfig`` default (the dataclass is the one source of
defaults). Its run id is ``ExperimentConfig(**effective).run_id``, a hash of
the full effective config (not of the keys the YAML happens to set), so a
changed default gives new ids, ids survive reordering the YAML, and change
when any value does. A notebook that is not the training notebook gets the
YAML's parameters and an id hashed from them.

Why run processes: papermill/jupyter_client are not safe when several kernels
start concurrently from one process (port and ZMQ races), so every run
executes in a process of its own (``RunProcess``, given a run only when idle,
in a session of its own so that a terminal's Ctrl-C reaches the sweep's
process alone, which then stops them: see Ctrl-C); kernel start-up is additionally
serialised per machine with a file lock (held until the first cell runs),
closing the window in which two kernels could be handed the same free port
(TCP; on POSIX the kernels talk over Unix domain sockets, see
``notebook_runner.local_kernel_config``).

Default parallelism: ``max(1, cpu_count // 2)`` workers, each run's torch limited
to ``cpu_count // workers`` threads (``OMP_NUM_THREADS``): two cores per run,
because training is compute-bound (more runs than cores only time-slice) and
each run holds ~1 GB. On 2 cores that is one run at a time; ``workers=2`` there
only overlaps one run's papermill start-up (~7 s) with another's training.

Resume: ``state.json`` in the sweep folder (written atomically after every
status change, by the one client allowed per sweep folder) plus each run's
``metrics.json``. A run is skipped only if both say completed and the config
the record holds is the run's effective config; failed and interrupted runs
are redone (the trainer resumes an interrupted run from its last epoch
checkpoint). Killing the sweep loses only the runs in flight. A completed run
whose record holds another effective config (made before a default changed,
or under the earlier id scheme that hashed only the YAML's keys) is never
reused: the sweep re-runs that point under its new id and says so
(``SweepResult.stale``, printed by ``report()``), as it does for every run
whose record says its label split was a fallback (``SweepResult.fallbacks``).

Ctrl-C (SIGINT): no further run starts; the runs in flight are stopped (their
kernels shut down, SIGKILL after ``STOP_GRACE_S``), keep their last epoch's
checkpoint and are recorded as ``interrupted`` in ``state.json`` (runs not
started go back to ``pending``); the CLI prints one line saying how to resume
and exits with status 130. The next run of the sweep resumes. A run process
whose sweep process is killed stops its run as well.

Frozen inputs: a sweep executes a snapshot of its notebook taken when it starts
(``<sweep>/.notebook-<hash>.ipynb``), so saving the notebook in JupyterLab while a
sweep runs changes nothing in it; and each run first checks that mtlwb's source
is the one the sweep started with (``code_fingerprint``). A run whose code
changed under it is not executed: it fails at once with that reason (nothing of
it is lost; running the sweep again resumes it with the new code), since its
numbers would come from another program than its neighbours'.

Failure isolation: a failing run is recorded (status, error, path of its
partial notebook) and the sweep goes on; ``SweepResult.ok`` is False and the
CLI exits non-zero.

Dask (``scheduler="tcp://host:port"``): every run is submitted as a task that
executes the notebook on a worker; the client process keeps the state file as
futures complete; on Ctrl-C it sets a dask ``Event`` that the tasks watch (a
task's run executes in a RunProcess of its own, which it stops). On several
nodes, start ``dask scheduler`` on one node and
``dask worker tcp://host:8786 --nworkers K --nthreads 1`` on the others, with the
repository (``data/``, ``reports/``, ``notebooks/``) on a shared filesystem
mounted at the same path everywhere, and mtlwb installed in each worker's
environment. See the README, "Ablation sweeps".
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import json
import os
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from tqdm.auto import tqdm

from .. import identity
from ..core.io import atomic_write_bytes, atomic_write_json, move_aside, read_json
from ..experiment.files import CHECKPOINT, KERNEL_LOG, METRICS, RUN_NOTEBOOK, STATE, SWEEP_LOCK
from ..experiment.record import read_record

DEFAULT_NOTEBOOK = "notebooks/train.ipynb"
DEFAULT_ROOT = Path("reports/sweeps")
SPEC_KEYS = ("name", "description", "notebook", "baseline", "fixed", "grid", "include", "reuse_from", "claims")
SET_BY_SWEEP = ("run_dir", "progress")          # the sweep owns these; a spec may not set them
PREFIX_KEYS = ("method", "label_setting", "seed")


# --- spec ------------------------------------------------------------------------------------------
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
        return bool(self.baseline) and all(_canon(params.get(k)) == _canon(v) for k, v in self.baseline.items())


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _short(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def effective_params(params: dict[str, Any], defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every config field with the value a run of the training notebook uses: ``params``' value, else the
    ``ExperimentConfig`` default, never the notebook's stored (tiny) default; ``method_options`` fully resolved.
    The training notebook takes every config field as a parameter (``_check_training_notebook``), so no field is
    left out; its own parameters (``TRAIN_NOTEBOOK_ONLY``) keep the notebook's defaults (train, never reuse).

    ValueError names the run's parameters and the config field that is wrong.
    """
    from ..config import ExperimentConfig

    try:
        config = ExperimentConfig(**{**params, "run_dir": "", "progress": False}).to_dict()
    except (ValueError, TypeError) as e:
        raise ValueError(f"sweep run ({_describe(params)}): {e}") from None
    return {k: v for k, v in config.items() if k not in SET_BY_SWEEP}


def run_id(effective: dict[str, Any]) -> str:
    """A training run's id: ``ExperimentConfig(**effective).run_id`` (readable prefix + hash of the whole effective
    config minus execution-only fields), so it changes when any value the run uses does, defaults included."""
    from ..config import ExperimentConfig

    return ExperimentConfig(**{**effective, "run_dir": "", "progress": False}).run_id


def config_differences(recorded: dict[str, Any], wanted: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """{field: (recorded value, wanted value)} over the run identities (``mtlwb.identity``; a missing field shows
    as None): what must agree for a finished run to be reused."""
    return identity.differences(recorded, wanted)


def _differences_text(diff: dict[str, tuple[Any, Any]]) -> str:
    return ", ".join(f"{k}: {_short(old)} -> {_short(new)}" for k, (old, new) in diff.items())


def params_run_id(params: dict[str, Any]) -> str:
    """Readable prefix (method-label_setting-s<seed>) + sha1 of the sorted parameters that change results.

    The id of runs of a notebook that is not the training notebook, and the id training runs had before ids were
    taken from the effective config (so that runs recorded under it are recognised, never reused silently).
    """
    ident = {k: v for k, v in params.items() if k not in identity.EXECUTION_ONLY}
    digest = hashlib.sha1(_canon(ident).encode()).hexdigest()[:10]
    parts = []
    for key in PREFIX_KEYS:
        if key in params:
            text = str(params[key])
            parts.append(f"s{text}" if key == "seed" else "".join(c if c.isalnum() else "-" for c in text)[:24])
    return "-".join([*parts, digest])


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
        if _canon(values.get(key)) != _canon(wanted):
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


def _describe(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_short(v)}" for k, v in params.items())


# --- executing one run (in a worker process) --------------------------------------------------------
KERNEL_LOCK = Path(tempfile.gettempdir()) / f"mtlwb-kernel-start-{os.getuid()}.lock"  # per machine and user


class _KernelStartLock:
    """Machine-wide lock held from kernel launch until its first cell runs (flock: threads and processes)."""

    def __init__(self, path: Path = KERNEL_LOCK) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        import fcntl

        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def release(self, **_: Any) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def code_fingerprint(package: Path | None = None) -> str:
    """A hash of every source file of the imported mtlwb package (or of ``package``; relative path and bytes): equal
    in the sweep's client and in its workers exactly when both run the same code."""
    package = package or Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def snapshot_notebook(notebook: str | Path, sweep_dir: Path) -> Path:
    """A copy of ``notebook`` in the sweep folder, named by its content hash (written atomically): the sweep runs
    the copy, so an edit of the notebook while the sweep runs does not reach its later runs."""
    data = Path(notebook).read_bytes()
    path = sweep_dir / f".notebook-{hashlib.sha256(data).hexdigest()[:12]}.ipynb"
    if not path.is_file():
        atomic_write_bytes(path, data)
    return path


def execute_run(notebook: str, run_dir: str, params: dict[str, Any], cwd: str,
                threads: int | None = None, own_process: bool = False,
                expected_config: dict[str, Any] | None = None, code: str | None = None) -> dict[str, Any]:
    """Execute one run's notebook into ``run_dir``; never raises (the error is the result).

    ``own_process``: this process exists for this run (a RunProcess), so its stdout and stderr, which the
    kernel inherits, go to ``<run_dir>/kernel.log`` instead of interleaving with the progress bar.
    ``expected_config``: the effective config the run was given; a record that holds another one (a notebook
    that overrides a parameter) makes the run fail, naming the fields, since its numbers are not the ones asked for.
    ``code``: the sweep's ``code_fingerprint()`` at its start; another one here fails the run before it starts.
    """
    from .notebooks import execute

    if code is not None and code != code_fingerprint():
        return {"status": "failed", "notebook": None, "seconds": 0.0,
                "error": ("not run: mtlwb's source code changed after this sweep started (its finished runs used the "
                          "old code); run the sweep again to resume the remaining runs with the new code")}

    if threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(threads)  # inherited by the kernel, read when torch starts
    out = Path(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    if own_process:
        log = os.open(out / KERNEL_LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        for fd in (1, 2):
            os.dup2(log, fd)
        os.close(log)
    output = out / RUN_NOTEBOOK
    started = time.time()
    lock = _KernelStartLock()
    try:
        lock.acquire()
        execute(notebook, output, {**params, "run_dir": str(out), "progress": False}, cwd=cwd, progress=False,
                on_cell_start=lock.release)
        status, error = "completed", None
        if (out / METRICS).is_file():
            record = read_record(out)
            diff = config_differences(record["config"], expected_config) if expected_config else {}
            if record.get("status") != "completed":
                status, error = "failed", f"metrics.json status={record.get('status')!r}: {record.get('error')}"
            elif diff:
                status, error = "failed", (f"the notebook ran another config than the sweep gave it "
                                           f"({_differences_text(diff)})")
    except Exception as e:  # noqa: BLE001  (isolation: every failure becomes a recorded result)
        status, error = "failed", _error_text(e)
    finally:
        lock.release()
    return {"status": status, "error": error, "notebook": str(output), "seconds": round(time.time() - started, 2)}


def _error_text(e: BaseException) -> str:
    ename, evalue = getattr(e, "ename", None), getattr(e, "evalue", None)
    if ename:  # papermill's PapermillExecutionError: the exception raised inside the notebook
        return f"{ename}: {evalue} (cell {getattr(e, 'exec_count', '?')})"
    text = f"{type(e).__name__}: {e}"
    return text if str(e) else "".join(traceback.format_exception_only(e)).strip()


# --- state ------------------------------------------------------------------------------------------
def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class SweepState:
    """``state.json``: one entry per run of the current spec; rewritten atomically on every change.

    ``previous`` keeps the entries of the last state file, so that runs made under other ids (a default that has
    changed since, or the earlier id scheme) are recognised and reported instead of silently dropped or reused.
    """

    def __init__(self, sweep_dir: Path, spec: SweepSpec, runs: list[RunSpec]) -> None:
        self.path = sweep_dir / STATE
        self.previous: dict[str, dict] = read_json(self.path).get("runs", {}) if self.path.is_file() else {}
        self.data = {"name": spec.name, "notebook": spec.notebook, "description": spec.description,
                     "baseline": spec.baseline, "spec": dataclasses.asdict(spec), "updated": _now(), "runs": {}}
        for run in runs:
            entry = {"params": run.params, "effective": run.effective, "status": "pending", "error": None,
                     "notebook": None, "seconds": None, "finished": None}
            prev = self.previous.get(run.run_id, {})
            entry.update({k: prev[k] for k in ("status", "error", "notebook", "seconds", "finished") if k in prev})
            self.data["runs"][run.run_id] = entry
        self.save()

    def is_done(self, rid: str, run_dir: Path) -> bool:
        if self.data["runs"][rid]["status"] != "completed":
            return False
        if not (run_dir / RUN_NOTEBOOK).is_file():  # folder deleted: run again
            return False
        return not (run_dir / METRICS).is_file() or read_record(run_dir)["status"] == "completed"

    def recorded_config(self, run_dir: Path) -> dict[str, Any] | None:
        return read_record(run_dir)["config"] if (run_dir / METRICS).is_file() else None

    def update(self, rid: str, **values: Any) -> None:
        self.data["runs"][rid].update(values)
        self.save()

    def save(self) -> None:
        self.data["updated"] = _now()
        atomic_write_json(self.path, self.data)


# --- the sweep ---------------------------------------------------------------------------------------
class SweepInUseError(RuntimeError):
    """Another process is running the same sweep folder."""


@dataclass
class SweepResult:
    """What a sweep did; ``ok`` is False if any run failed."""

    name: str
    sweep_dir: Path
    completed: list[str]
    skipped: list[str]
    failed: dict[str, dict[str, Any]]   # run_id -> {error, notebook}
    seconds: float
    summary: Path | None = None
    stale: list[str] = field(default_factory=list)        # completed runs not reused (or adopted), and why
    fallbacks: dict[str, str] = field(default_factory=dict)   # run_id -> why its label split was generated

    @property
    def ok(self) -> bool:
        return not self.failed

    def report(self) -> str:
        lines = [f"sweep {self.name}: {len(self.completed)} ran, {len(self.skipped)} already done, "
                 f"{len(self.failed)} failed in {self.seconds:.0f}s ({self.sweep_dir})"]
        lines += [f"  {note}" for note in self.stale]
        for rid, reason in self.fallbacks.items():
            lines.append(f"  LABEL SPLIT FALLBACK {rid}: {reason}")
        for rid, info in self.failed.items():
            lines.append(f"  FAILED {rid}: {info['error']}\n         notebook: {info['notebook']}")
        return "\n".join(lines)


def default_workers() -> int:
    return max(1, (os.cpu_count() or 1) // 2)


def run_sweep(spec_or_path: str | Path | dict | SweepSpec, workers: int | None = None,
              scheduler: str | None = None, device: str | None = None, root: str | Path = DEFAULT_ROOT,
              summarize: bool = True) -> SweepResult:
    """Validate, then run every run that is not already completed; never stops on a failing run."""
    from ..config import DEVICES

    spec = load_spec(spec_or_path)
    if device is not None and device not in DEVICES:
        raise ValueError(f"device={device!r}: allowed {list(DEVICES)}")
    override = {} if device is None else {"device": device}  # not part of run ids: same runs on another device
    runs = spec.runs()
    sweep_dir = (Path(root) / spec.name).resolve()
    sweep_dir.mkdir(parents=True, exist_ok=True)
    guard = _exclusive(sweep_dir / SWEEP_LOCK)  # one client per sweep folder, or state.json gets two writers
    try:
        return _run(spec, runs, sweep_dir, workers, scheduler, override, summarize)
    finally:
        os.close(guard)


def _exclusive(path: Path) -> int:
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise SweepInUseError(f"sweep folder {str(path.parent)!r} is in use by another running sweep") from None
    return fd


def _run(spec: SweepSpec, runs: list[RunSpec], sweep_dir: Path, workers: int | None, scheduler: str | None,
         override: dict[str, Any], summarize: bool) -> SweepResult:
    cwd = Path.cwd().resolve()
    state = SweepState(sweep_dir, spec, runs)
    todo, stale = plan_runs(state, runs, sweep_dir)
    if spec.reuse_from:
        todo, copied = reuse_runs(state, todo, sweep_dir, [sweep_dir.parent / n for n in spec.reuse_from])
        stale += copied
    skipped = [r.run_id for r in runs if r not in todo]
    notebook = str(snapshot_notebook(spec.notebook, sweep_dir))   # runs cannot see later edits of the notebook
    code = code_fingerprint()
    started = time.time()
    completed: list[str] = []
    failed: dict[str, dict] = {}

    interrupted: list[str] = []

    def record(rid: str, result: dict) -> None:
        if result["status"] in ("running", "pending"):   # handed to a process; or not started after all (Ctrl-C)
            state.update(rid, status=result["status"])
            return
        state.update(rid, **result, finished=_now())
        if result["status"] == "completed":
            completed.append(rid)
        elif result["status"] == "interrupted":
            interrupted.append(rid)
        else:
            failed[rid] = {"error": result["error"], "notebook": result["notebook"]}

    jobs = [(r.run_id, (notebook, str(sweep_dir / r.run_id), {**r.effective, **override}, str(cwd)),
             {"expected_config": _expected_config(r), "code": code}) for r in todo]
    for rid, _, _ in jobs:   # to be run: "running" once a run process has it (dask: "queued" until it ends)
        state.update(rid, status="queued", error=None)
    bar = tqdm(total=len(runs), initial=len(skipped), desc=f"sweep {spec.name}", unit="run")
    try:
        if scheduler:
            _run_dask(jobs, scheduler, record, bar)
        else:
            _run_local(jobs, workers or default_workers(), record, bar)
    except KeyboardInterrupt:
        raise _interrupt(spec, sweep_dir, state, [rid for rid, _, _ in jobs], interrupted) from None
    finally:
        bar.close()
    result = SweepResult(spec.name, sweep_dir, completed, skipped, failed, time.time() - started, stale=stale,
                         fallbacks=label_split_fallbacks(sweep_dir, [r.run_id for r in runs]))
    if summarize:
        from ..analysis.tables import write_summary

        result.summary = write_summary(sweep_dir)
    return result


def _interrupt(spec: SweepSpec, sweep_dir: Path, state: SweepState, job_ids: list[str],
               interrupted: list[str]) -> SweepInterrupted:
    """After Ctrl-C: a run still marked running (the interrupt came outside the runner's care) is interrupted, a
    queued one did not start (pending again); the state file says so before the sweep ends."""
    for rid in job_ids:
        status = state.data["runs"][rid]["status"]
        if status == "running":
            state.update(rid, status="interrupted", error=INTERRUPTED_ERROR, finished=_now())
            interrupted.append(rid)
        elif status == "queued":
            state.update(rid, status="pending")
    not_started = [rid for rid in job_ids if state.data["runs"][rid]["status"] == "pending"]
    return SweepInterrupted(spec.name, sweep_dir, interrupted, not_started)


def _expected_config(run: RunSpec) -> dict[str, Any] | None:
    """The full effective config of a training run (every field, defaults included); None for other notebooks."""
    from ..config import ExperimentConfig

    if not run.training:
        return None
    return ExperimentConfig(**{**run.effective, "run_dir": "", "progress": False}).to_dict()


def plan_runs(state: SweepState, runs: list[RunSpec], sweep_dir: Path) -> tuple[list[RunSpec], list[str]]:
    """The runs to execute, and one line per completed run that is not reused as it stands, saying why.

    A run is reused only if ``state.json`` and its ``metrics.json`` say completed and the record holds the run's
    effective config. A completed run of the same sweep point under another id (an earlier id scheme, or a default
    that has changed since) is adopted under the new id when its record holds the same effective config, and is
    otherwise left where it is and re-run under the new id. A record under the same id with another config (a
    notebook that overrode a value) is moved aside to ``<run_id>.stale-<n>`` and re-run.
    """
    todo, notes = [], []
    by_params = {_canon(r.params): r for r in runs}
    current = {r.run_id for r in runs}
    for old_id, entry in state.previous.items():
        run = by_params.get(_canon(entry.get("params")))
        if old_id in current or run is None or entry.get("status") != "completed":
            continue
        old_dir, new_dir = sweep_dir / old_id, sweep_dir / run.run_id
        recorded = state.recorded_config(old_dir)
        wanted = _expected_config(run)
        if recorded is None or wanted is None or not (old_dir / RUN_NOTEBOOK).is_file():
            continue
        diff = config_differences(recorded, wanted)
        if diff or new_dir.exists() or state.data["runs"][run.run_id]["status"] == "completed":
            if diff:
                notes.append(f"NOT REUSED {old_id}: completed, but with another effective config "
                             f"({_differences_text(diff)}); re-running as {run.run_id}")
            continue
        old_dir.rename(new_dir)
        state.update(run.run_id, **{k: entry.get(k) for k in ("status", "error", "seconds", "finished")},
                     notebook=str(new_dir / RUN_NOTEBOOK))
        notes.append(f"ADOPTED {old_id} as {run.run_id}: same effective config, named by an earlier id scheme")
    for run in runs:
        run_dir = sweep_dir / run.run_id
        if not state.is_done(run.run_id, run_dir):
            todo.append(run)
            continue
        recorded, wanted = state.recorded_config(run_dir), _expected_config(run)
        if wanted is None or recorded is None:
            continue
        diff = config_differences(recorded, wanted)
        if diff:
            aside = move_aside(run_dir)
            notes.append(f"NOT REUSED {run.run_id}: its record holds another effective config "
                         f"({_differences_text(diff)}); moved to {aside.name}, re-running")
            todo.append(run)
    return todo, notes


def reuse_runs(state: SweepState, todo: list[RunSpec], sweep_dir: Path,
               others: list[Path]) -> tuple[list[RunSpec], list[str]]:
    """Copy into ``sweep_dir`` every run of ``todo`` that another sweep (``reuse_from``) finished under the same id
    with the same effective config: a shared baseline is trained once. Returns the runs still to do and a line per
    copied run. A run is copied, never moved (the other sweep keeps it), through a temporary folder renamed into
    place, so an interruption leaves no half-copied run; a partial run of this sweep in its place is moved aside.
    """
    import shutil

    left, notes = [], []
    for run in todo:
        wanted = _expected_config(run)
        source = None if wanted is None else next(
            (d / run.run_id for d in others if _finished_with(d / run.run_id, wanted)), None)
        if source is None:
            left.append(run)
            continue
        run_dir = sweep_dir / run.run_id
        tmp = sweep_dir / f".{run.run_id}.copy-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(source, tmp)
        if run_dir.exists():
            move_aside(run_dir)
        tmp.rename(run_dir)
        other = read_json(source.parent / STATE)["runs"].get(run.run_id, {}) if (source.parent / STATE).is_file() \
            else {}
        state.update(run.run_id, status="completed", error=None, seconds=other.get("seconds"),
                     finished=other.get("finished"), notebook=str(run_dir / RUN_NOTEBOOK), reused_from=str(source))
        notes.append(f"REUSED {run.run_id} from {str(source.parent)!r}: finished there with the same effective config")
    return left, notes


def _finished_with(run_dir: Path, wanted: dict[str, Any]) -> bool:
    """``run_dir`` holds a completed run (notebook and record) whose record holds exactly ``wanted``."""
    if not (run_dir / RUN_NOTEBOOK).is_file() or not (run_dir / METRICS).is_file():
        return False
    record = read_record(run_dir)
    return record["status"] == "completed" and not config_differences(record["config"], wanted)


def label_split_fallbacks(sweep_dir: Path, run_ids: list[str]) -> dict[str, str]:
    """run_id -> reason, for every run whose record says its label split was generated for want of the published
    file (not the papers' split), so the sweep's output cannot hide it."""
    out = {}
    for rid in run_ids:
        if (sweep_dir / rid / METRICS).is_file():
            split = read_record(sweep_dir / rid).get("label_split") or {}
            if split.get("fallback"):
                out[rid] = split.get("reason") or "generated split (published file missing)"
    return out


def _tick(bar: tqdm, failed: int) -> None:
    bar.update(1)
    bar.set_postfix(failed=failed)


# --- Ctrl-C and the processes that execute runs -----------------------------------------------------------
# Ctrl-C reaches every process of the terminal's process group. The runs therefore execute in processes of their own
# session (``RunProcess``), which the terminal's signal does not reach; the sweep's process alone decides: it stops
# handing out runs, stops the runs in flight (SIGTERM: papermill's client then shuts its kernel down, the trainer's
# checkpoint of the last finished epoch stays), records them as interrupted and raises ``SweepInterrupted``.
STOP_GRACE_S = 10.0         # after SIGTERM, how long a run process gets before SIGKILL
POLL_S = 0.2                # how often the sweep looks at its runs and at Ctrl-C
INTERRUPTED_ERROR = "interrupted (Ctrl-C); the next run of the sweep resumes it from its last finished epoch"


class SweepInterrupted(Exception):
    """Ctrl-C: the runs in flight were stopped and recorded as interrupted, the others did not start."""

    def __init__(self, name: str, sweep_dir: Path, interrupted: list[str], not_started: list[str]) -> None:
        self.interrupted, self.not_started = interrupted, not_started
        stopped = (f"{len(interrupted)} run(s) stopped and recorded as interrupted ({', '.join(interrupted)})"
                   if interrupted else "no run was in flight")
        super().__init__(f"interrupted: {stopped}, {len(not_started)} not started; run the same command again to "
                         f"resume sweep {name} ({sweep_dir})")


class _StopRequests:
    """While active (in the main thread), Ctrl-C sets ``requested`` instead of raising KeyboardInterrupt wherever
    the sweep happens to be (in the middle of writing state.json); a second Ctrl-C sets ``forced``. A SIGINT that
    is ignored (a sweep started in the background with ``&`` or ``nohup``) stays ignored."""

    def __init__(self) -> None:
        self.requested = self.forced = False
        self._previous: Any = None

    def _handle(self, signum: int, frame: Any) -> None:
        self.forced = self.requested
        self.requested = True

    def __enter__(self) -> _StopRequests:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        import signal

        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _package_parent() -> str:
    return str(Path(__file__).resolve().parents[2])


class RunProcess:
    """A Python process, in a session of its own, that executes the runs it is given one at a time
    (:func:`run_worker`): one JSON job per line on its stdin, one JSON result per line on its stdout.

    It imports this copy of mtlwb (``PYTHONPATH``), so it runs the code the sweep checked. Nothing is queued in it:
    a job is written only to an idle process. ``stop`` asks it to end its run (SIGTERM), ``kill`` makes sure.
    """

    def __init__(self, cwd: str) -> None:
        import subprocess
        import sys

        paths = [_package_parent(), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}
        self.proc = subprocess.Popen([sys.executable, "-c", "from mtlwb.sweeps.run import run_worker; run_worker()"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=cwd, env=env, text=True,
                                     start_new_session=True)
        self.run_id: str | None = None
        self.stopped_at: float | None = None

    def submit(self, run_id: str, job: dict[str, Any]) -> None:
        self.run_id = run_id
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()

    def fileno(self) -> int:   # for select: readable when the result line (or the end of the process) is there
        return self.proc.stdout.fileno()

    def read_result(self) -> dict[str, Any]:
        """The run's result (call when readable); a process that ended without one gives a failed result."""
        line = self.proc.stdout.readline()
        self.run_id = None
        if line:
            return json.loads(line)
        code = self.proc.wait()
        how = f"killed by signal {-code}" if code < 0 else f"exited with status {code}"
        return {"status": "failed", "error": f"the run's process {how} (its kernel.log may say why)",
                "notebook": None, "seconds": None}

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        import signal

        if self.stopped_at is None and self.alive:
            self.stopped_at = time.monotonic()
            self.proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        if self.alive:
            self.proc.kill()

    def close(self) -> None:
        """End of input: an idle process exits at once; one still busy is stopped."""
        import subprocess

        with contextlib.suppress(OSError):   # BrokenPipeError: it has ended already
            self.proc.stdin.close()
        if self.run_id is not None:
            self.stop()
        try:
            self.proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            self.kill()
            self.proc.wait()
        self.proc.stdout.close()


class _Stop(BaseException):
    """Raised in a run process by SIGTERM: it unwinds papermill, whose exit path shuts the kernel down (papermill's
    client installs no signal handler of its own; SIGTERM's default would leave the kernel behind)."""


def _raise_stop_once(signum: int, frame: Any) -> None:
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_IGN)   # a second SIGTERM must not interrupt the kernel's shutdown
    raise _Stop


def run_worker() -> None:
    """A :class:`RunProcess`: execute each job read from stdin, write its result as one line to stdout.

    The result channel is the original stdout, kept apart: whatever else this process or its kernel prints goes to
    the run's ``kernel.log``. SIGTERM ends the run in flight (its kernel is shut down, the checkpoint of its last
    finished epoch stays) and the process. When the sweep's process dies (SIGKILL), this one stops too (SIGTERM to
    itself) instead of computing for nobody.
    """
    import signal
    import sys
    import threading

    results = os.fdopen(os.dup(1), "w")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    parent = os.getppid()

    def stop_with_parent() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, _raise_stop_once)
    threading.Thread(target=stop_with_parent, daemon=True).start()
    with contextlib.suppress(_Stop):
        for line in sys.stdin:
            job = json.loads(line)
            try:
                result = execute_run(**job, own_process=True)
            except _Stop:
                result = {"status": "interrupted", "error": INTERRUPTED_ERROR, "seconds": None,
                          "notebook": str(Path(job["run_dir"]) / RUN_NOTEBOOK)}
                results.write(json.dumps(result) + "\n")
                results.flush()
                return
            results.write(json.dumps(result) + "\n")
            results.flush()


def _job(args: tuple, kw: dict[str, Any], threads: int | None) -> dict[str, Any]:
    """``execute_run``'s arguments as the JSON a RunProcess reads."""
    notebook, run_dir, params, cwd = args
    return {"notebook": notebook, "run_dir": run_dir, "params": params, "cwd": cwd, "threads": threads, **kw}


def _interrupted(result: dict[str, Any]) -> dict[str, Any]:
    """A run stopped by Ctrl-C: whatever it returned (the killed kernel fails its cell), it was interrupted."""
    if result["status"] in ("completed", "pending"):   # finished before the stop reached it, or never started
        return result
    return {**result, "status": "interrupted", "error": INTERRUPTED_ERROR}


def _run_local(jobs: list[tuple[str, tuple, dict]], workers: int, record: Callable[[str, dict], None],
               bar: tqdm) -> None:
    """Run ``jobs`` on at most ``workers`` RunProcesses, handing a run to a process only when it is idle.

    Ctrl-C: no further run starts, the runs in flight are stopped (SIGKILL after ``STOP_GRACE_S``, or at a second
    Ctrl-C) and recorded as interrupted, then KeyboardInterrupt is raised.
    """
    import collections
    import select

    if not jobs:
        return
    workers = max(1, min(workers, len(jobs)))
    threads = max(1, (os.cpu_count() or 1) // workers)
    pending = collections.deque(jobs)
    idle: list[RunProcess] = []
    busy: list[RunProcess] = []
    n_failed = 0
    with _StopRequests() as stop:
        try:
            while pending or busy:
                while pending and not stop.requested and len(busy) < workers:
                    rid, args, kw = pending.popleft()
                    proc = idle.pop() if idle else RunProcess(args[3])
                    proc.submit(rid, _job(args, kw, threads))
                    busy.append(proc)
                    record(rid, {"status": "running"})
                if stop.requested:
                    if not busy:
                        break
                    for proc in busy:
                        proc.stop()
                        if stop.forced or time.monotonic() - proc.stopped_at > STOP_GRACE_S:
                            proc.kill()
                ready, _, _ = select.select(busy, [], [], POLL_S)
                for proc in ready:
                    rid = proc.run_id
                    result = proc.read_result()
                    busy.remove(proc)
                    if proc.alive and proc.stopped_at is None:
                        idle.append(proc)
                    else:
                        proc.close()
                    result = _interrupted(result) if stop.requested else result
                    record(rid, result)
                    if result["status"] != "interrupted":
                        n_failed += result["status"] != "completed"
                        _tick(bar, n_failed)
        finally:
            for proc in idle + busy:
                proc.close()
    if stop.requested:
        raise KeyboardInterrupt


def _dask_task(job: dict[str, Any], stop_event: str) -> dict[str, Any]:
    """One run on a dask worker, executed by a RunProcess (a worker's thread cannot be stopped, a process can).

    The sweep's client sets the dask Event ``stop_event`` on Ctrl-C: a run that has not started then does not
    start (status ``pending``), a run in flight is stopped and reported interrupted.
    """
    from dask.distributed import Event

    stop = Event(stop_event)
    if stop.is_set():
        return {"status": "pending", "error": None, "notebook": None, "seconds": None}
    proc = RunProcess(job["cwd"])
    try:
        proc.submit(Path(job["run_dir"]).name, job)
        while True:
            readable = _wait_readable(proc, 1.0)
            if readable:
                result = proc.read_result()
                return _interrupted(result) if proc.stopped_at is not None else result
            if proc.stopped_at is None and stop.is_set():
                proc.stop()
            elif proc.stopped_at is not None and time.monotonic() - proc.stopped_at > STOP_GRACE_S:
                proc.kill()
    finally:
        proc.close()


def _wait_readable(proc: RunProcess, timeout: float) -> bool:
    import select

    return bool(select.select([proc], [], [], timeout)[0])


def _run_dask(jobs: list[tuple[str, tuple, dict]], scheduler: str, record: Callable[[str, dict], None],
              bar: tqdm) -> None:
    """Submit every job to the dask scheduler; Ctrl-C sets the sweep's stop Event, waits for the tasks to come back
    (runs in flight stopped, waiting ones not started) and raises KeyboardInterrupt."""
    import uuid

    from dask.distributed import Client, Event
    from dask.distributed import as_completed as dask_completed
    from dask.distributed import wait as dask_wait

    if not jobs:
        return
    n_failed = 0
    stop_event = f"mtlwb-stop-{uuid.uuid4().hex}"
    with Client(scheduler) as client, _StopRequests() as stop:
        futures = {client.submit(_dask_task, _job(args, kw, None), stop_event, key=f"mtlwb-run-{rid}-{time.time_ns()}",
                                 pure=False): rid for rid, args, kw in jobs}
        left = dict(futures)
        finished = dask_completed(list(futures), with_results=False)
        while not stop.requested and left:
            for fut in finished.next_batch(block=False) if finished.has_ready() else []:
                rid = left.pop(fut)
                result = _future_result(fut)
                record(rid, result)
                n_failed += result["status"] != "completed"
                _tick(bar, n_failed)
            time.sleep(POLL_S)
        if stop.requested:
            Event(stop_event, client=client).set()
            with contextlib.suppress(TimeoutError):   # a lost worker: its runs stay pending
                dask_wait(list(left), timeout=STOP_GRACE_S + 30)
            for fut, rid in left.items():
                record(rid, _interrupted(_future_result(fut)) if fut.done() else {"status": "pending"})
            client.cancel([f for f in left if not f.done()])
            Event(stop_event, client=client).clear()
    if stop.requested:
        raise KeyboardInterrupt


def _future_result(fut: Any) -> dict[str, Any]:
    try:
        return fut.result()
    except Exception as e:  # noqa: BLE001  (worker lost, or the task could not be deserialised)
        return {"status": "failed", "error": _error_text(e), "notebook": None, "seconds": None}


# --- dry run -------------------------------------------------------------------------------------------
def planned_status(run: RunSpec, sweep_dir: Path, previous: dict[str, dict], others: list[Path]) -> str:
    """What ``run_sweep`` would do with ``run``, read only: ``done`` (reused as it stands), ``copy from <sweep>``
    (reuse_from), ``resume at epoch k`` (a checkpoint of an interrupted or failed run), ``re-run`` (a completed
    record of another effective config) or ``run``. (A run recorded under an earlier id scheme, which the sweep
    adopts when its config is the same, shows as ``run``.)"""
    run_dir = sweep_dir / run.run_id
    wanted = _expected_config(run)
    entry = previous.get(run.run_id, {})
    if entry.get("status") == "completed" and (run_dir / RUN_NOTEBOOK).is_file():
        record = read_record(run_dir) if (run_dir / METRICS).is_file() else None
        if record is None or wanted is None or (record["status"] == "completed"
                                                and not config_differences(record["config"], wanted)):
            return "done"
        if record.get("status") == "completed":
            return "re-run (its record holds another effective config)"
    source = None if wanted is None else next((d for d in others if _finished_with(d / run.run_id, wanted)), None)
    if source is not None:
        return f"copy from {source.name}"
    if (run_dir / CHECKPOINT).is_file() and (run_dir / METRICS).is_file():
        epochs = len(read_record(run_dir).get("history", []))
        return f"resume at epoch {epochs + 1}"
    return "run"


def plan_text(spec: SweepSpec, root: str | Path = DEFAULT_ROOT) -> str:
    """``mtlwb sweep --dry-run``: the planned runs, their ids, the parameters the sweep varies and what would be
    done with each (``planned_status``); nothing is written, locked or run."""
    runs = spec.runs()
    sweep_dir = (Path(root) / spec.name).resolve()
    previous = read_json(sweep_dir / STATE).get("runs", {}) if (sweep_dir / STATE).is_file() else {}
    others = [sweep_dir.parent / name for name in spec.reuse_from]
    plans = [(run, planned_status(run, sweep_dir, previous, others)) for run in runs]
    done = sum(status == "done" for _, status in plans)
    lines = [f"sweep {spec.name}: {len(runs)} runs, {done} already done, {len(runs) - done} to do ({sweep_dir}); "
             "dry run: nothing was run"]
    width = max(len(run.run_id) for run in runs)
    for run, status in plans:
        varying = {k: v for k, v in run.params.items() if k not in spec.fixed or _canon(spec.fixed[k]) != _canon(v)}
        lines.append(f"  {run.run_id:<{width}}  {status:<14}  {_describe(varying)}")
    return "\n".join(lines)


def sweep_runs(sweep_dir: str | Path) -> dict[str, dict]:
    """The state file's run entries (for aggregation and reports)."""
    return read_json(Path(sweep_dir) / STATE)["runs"]


__all__ = ["RunProcess", "RunSpec", "SweepInUseError", "SweepInterrupted", "SweepResult", "SweepSpec",
           "code_fingerprint", "config_differences", "default_workers", "effective_params", "execute_run",
           "load_spec", "params_run_id", "plan_runs", "plan_text", "run_id", "reuse_runs", "run_sweep", "run_worker",
           "snapshot_notebook", "sweep_runs", "validate"]
