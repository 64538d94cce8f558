"""Running a sweep: validate, plan, execute every run not already done, record, summarise; stop cleanly on Ctrl-C.

The orchestration only; each step is a module of its own: ``spec`` (the YAML file, validated before the first kernel
starts), ``run_ids`` (each run's effective parameters and id), ``planning`` (what the sweep folder already holds),
``state`` (``state.json`` and the folder's lock), ``worker`` (one run's notebook executed in a process of its own) and
``executors`` (a local pool of run processes, or Dask). Each run is the notebook executed into
``reports/sweeps/<name>/<run_id>/`` (``train.ipynb`` plus the ``metrics.json`` the notebook writes through
``run_dir``).

Failure isolation: a failing run is recorded (status, error, path of its partial notebook) and the sweep goes on;
``SweepResult.ok`` is False and the CLI exits non-zero. A run whose record says its label split was a fallback is
named in ``SweepResult.fallbacks``; a completed run not reused, in ``SweepResult.stale``.

Ctrl-C: the executors stop the runs in flight and record them as interrupted; ``run_sweep`` raises
``SweepInterrupted``, whose message says how to resume; the CLI prints it and exits with status 130. The next run of
the sweep resumes.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..experiment.files import METRICS, SWEEP_LOCK
from ..experiment.record import read_record
from .executors import default_workers, run_dask, run_local
from .planning import expected_config, plan_runs, reuse_runs
from .spec import RunSpec, SweepSpec, load_spec
from .state import DEFAULT_ROOT, SweepState, exclusive_lock, timestamp
from .worker import INTERRUPTED_ERROR, code_fingerprint, snapshot_notebook


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


class SweepInterrupted(Exception):
    """Ctrl-C: the runs in flight were stopped and recorded as interrupted, the others did not start."""

    def __init__(self, name: str, sweep_dir: Path, interrupted: list[str], not_started: list[str]) -> None:
        self.interrupted, self.not_started = interrupted, not_started
        stopped = (f"{len(interrupted)} run(s) stopped and recorded as interrupted ({', '.join(interrupted)})"
                   if interrupted else "no run was in flight")
        super().__init__(f"interrupted: {stopped}, {len(not_started)} not started; run the same command again to "
                         f"resume sweep {name} ({sweep_dir})")


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
    guard = exclusive_lock(sweep_dir / SWEEP_LOCK)  # one client per sweep folder, or state.json gets two writers
    try:
        return _run(spec, runs, sweep_dir, workers, scheduler, override, summarize)
    finally:
        os.close(guard)


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
        state.update(rid, **result, finished=timestamp())
        if result["status"] == "completed":
            completed.append(rid)
        elif result["status"] == "interrupted":
            interrupted.append(rid)
        else:
            failed[rid] = {"error": result["error"], "notebook": result["notebook"]}

    jobs = [(r.run_id, (notebook, str(sweep_dir / r.run_id), {**r.effective, **override}, str(cwd)),
             {"expected_config": expected_config(r), "code": code}) for r in todo]
    for rid, _, _ in jobs:   # to be run: "running" once a run process has it (dask: "queued" until it ends)
        state.update(rid, status="queued", error=None)
    bar = tqdm(total=len(runs), initial=len(skipped), desc=f"sweep {spec.name}", unit="run")
    try:
        if scheduler:
            run_dask(jobs, scheduler, record, bar)
        else:
            run_local(jobs, workers or default_workers(), record, bar)
    except KeyboardInterrupt:
        raise _interrupt(spec, sweep_dir, state, [rid for rid, _, _ in jobs], interrupted) from None
    finally:
        bar.close()
    result = SweepResult(spec.name, sweep_dir, completed, skipped, failed, time.time() - started, stale=stale,
                         fallbacks=label_split_fallbacks(sweep_dir, [r.run_id for r in runs]))
    if summarize:
        from ..analysis.summary import write_summary

        result.summary = write_summary(sweep_dir)
    return result


def _interrupt(spec: SweepSpec, sweep_dir: Path, state: SweepState, job_ids: list[str],
               interrupted: list[str]) -> SweepInterrupted:
    """After Ctrl-C: a run still marked running (the interrupt came outside the runner's care) is interrupted, a
    queued one did not start (pending again); the state file says so before the sweep ends."""
    for rid in job_ids:
        status = state.data["runs"][rid]["status"]
        if status == "running":
            state.update(rid, status="interrupted", error=INTERRUPTED_ERROR, finished=timestamp())
            interrupted.append(rid)
        elif status == "queued":
            state.update(rid, status="pending")
    not_started = [rid for rid in job_ids if state.data["runs"][rid]["status"] == "pending"]
    return SweepInterrupted(spec.name, sweep_dir, interrupted, not_started)


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


__all__ = ["SweepInterrupted", "SweepResult", "label_split_fallbacks", "run_sweep"]
