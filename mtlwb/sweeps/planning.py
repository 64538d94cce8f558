"""Planning a sweep: which of its runs a folder already holds, which are copied from another sweep, which run.

Read-write for ``run_sweep`` (``plan_runs``, ``reuse_runs``), read only for ``mtlwb sweep --dry-run``
(``planned_status``, ``plan_text``); both decide with the same rule (``_finished_with``, ``config_differences``).

A completed run whose record holds another effective config (made before a default changed, or under the earlier
id scheme that hashed only the YAML's keys) is never reused: the sweep re-runs that point under its new id and says
so (``SweepResult.stale``, printed by ``report()``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..core.io import move_aside, read_json
from ..experiment.files import CHECKPOINT, METRICS, RUN_NOTEBOOK, STATE
from ..experiment.record import read_record
from .run_ids import canonical, config_differences, describe_params, differences_text
from .spec import RunSpec, SweepSpec
from .state import DEFAULT_ROOT, SweepState


def expected_config(run: RunSpec) -> dict[str, Any] | None:
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
    by_params = {canonical(r.params): r for r in runs}
    current = {r.run_id for r in runs}
    for old_id, entry in state.previous.items():
        run = by_params.get(canonical(entry.get("params")))
        if old_id in current or run is None or entry.get("status") != "completed":
            continue
        old_dir, new_dir = sweep_dir / old_id, sweep_dir / run.run_id
        recorded = state.recorded_config(old_dir)
        wanted = expected_config(run)
        if recorded is None or wanted is None or not (old_dir / RUN_NOTEBOOK).is_file():
            continue
        diff = config_differences(recorded, wanted)
        if diff or new_dir.exists() or state.data["runs"][run.run_id]["status"] == "completed":
            if diff:
                notes.append(f"NOT REUSED {old_id}: completed, but with another effective config "
                             f"({differences_text(diff)}); re-running as {run.run_id}")
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
        recorded, wanted = state.recorded_config(run_dir), expected_config(run)
        if wanted is None or recorded is None:
            continue
        diff = config_differences(recorded, wanted)
        if diff:
            aside = move_aside(run_dir)
            notes.append(f"NOT REUSED {run.run_id}: its record holds another effective config "
                         f"({differences_text(diff)}); moved to {aside.name}, re-running")
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
        wanted = expected_config(run)
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


def planned_status(run: RunSpec, sweep_dir: Path, previous: dict[str, dict], others: list[Path]) -> str:
    """What ``run_sweep`` would do with ``run``, read only: ``done`` (reused as it stands), ``copy from <sweep>``
    (reuse_from), ``resume at epoch k`` (a checkpoint of an interrupted or failed run), ``re-run`` (a completed
    record of another effective config) or ``run``. (A run recorded under an earlier id scheme, which the sweep
    adopts when its config is the same, shows as ``run``.)"""
    run_dir = sweep_dir / run.run_id
    wanted = expected_config(run)
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
        varying = {k: v for k, v in run.params.items()
                   if k not in spec.fixed or canonical(spec.fixed[k]) != canonical(v)}
        lines.append(f"  {run.run_id:<{width}}  {status:<14}  {describe_params(varying)}")
    return "\n".join(lines)


__all__ = ["expected_config", "plan_runs", "plan_text", "planned_status", "reuse_runs"]
