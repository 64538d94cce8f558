"""A sweep folder's state: ``state.json`` (one entry per run), and the lock that lets one client at a time write it.

Resume: ``state.json`` in the sweep folder (written atomically after every status change, by the one client allowed
per sweep folder, ``exclusive_lock``) plus each run's ``metrics.json``. A run is skipped only if both say completed and
the config the record holds is the run's effective config (``planning`` decides that); failed and interrupted runs
are redone (the trainer resumes an interrupted run from its last epoch checkpoint). Killing the sweep loses only the
runs in flight.
"""

from __future__ import annotations

import dataclasses
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..core.io import atomic_write_json, read_json
from ..experiment.files import METRICS, RUN_NOTEBOOK, STATE
from ..experiment.record import read_record
from .spec import RunSpec, SweepSpec

DEFAULT_ROOT = Path("reports/sweeps")


def timestamp() -> str:
    """Now in UTC to the second: ``state.json``'s ``updated`` and each run's ``finished``."""
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
                     "baseline": spec.baseline, "spec": dataclasses.asdict(spec), "updated": timestamp(), "runs": {}}
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
        self.data["updated"] = timestamp()
        atomic_write_json(self.path, self.data)


class SweepInUseError(RuntimeError):
    """Another process is running the same sweep folder."""


def exclusive_lock(path: Path) -> int:
    """The sweep folder's lock (``path``), held until the returned descriptor is closed; ``SweepInUseError`` when
    another process holds it, since two clients would both write ``state.json``."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise SweepInUseError(f"sweep folder {str(path.parent)!r} is in use by another running sweep") from None
    return fd


def sweep_runs(sweep_dir: str | Path) -> dict[str, dict]:
    """The state file's run entries (for aggregation and reports)."""
    return read_json(Path(sweep_dir) / STATE)["runs"]


__all__ = ["DEFAULT_ROOT", "SweepInUseError", "SweepState", "exclusive_lock", "sweep_runs", "timestamp"]
