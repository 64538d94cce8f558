"""Load a finished run instead of training again: the training notebook's ``reuse_finished_run`` and the analysis
notebooks' own tiny runs (``notebook_run``).

Why: opened by a person, ``notebooks/train.ipynb`` keeps CI's tiny defaults (nbval re-executes it), so its figures
show an untrained 1-epoch model. After ``make run``, ``reports/sweeps/quick/<run_id>/`` holds a real run of every
method; showing one of those costs a checkpoint load instead of minutes of training.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config import ExperimentConfig
from .io import move_aside, read_json
from .train import CHECKPOINT, METRICS, Experiment, build_experiment, load_experiment, load_record, train

# what a run must share with the notebook's config to stand in for it: the same problem (data, tasks, labels) and
# method; the budget (epochs, images, seed, ...) may differ and is printed
MATCH_KEYS = ("dataset", "tasks", "label_setting", "method")
# keys that never make two runs differ in their numbers
_NOT_COMPARED = ("run_dir", "progress", "device", "num_workers")


def is_finished(run_dir: str | Path) -> bool:
    """A run folder whose ``metrics.json`` says completed and whose checkpoint is there."""
    run_dir = Path(run_dir)
    if not (run_dir / CHECKPOINT).is_file() or not (run_dir / METRICS).is_file():
        return False
    try:
        return read_json(run_dir / METRICS).get("status") == "completed"
    except (OSError, ValueError):   # unreadable or torn record: not a run to trust
        return False


def find_finished_run(runs_dir: str | Path, config: ExperimentConfig) -> Path | None:
    """The first (by folder name) finished run in ``runs_dir`` that agrees with ``config`` on ``MATCH_KEYS``."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return None
    wanted = {k: getattr(config, k) for k in MATCH_KEYS}
    for run_dir in sorted(p for p in runs_dir.iterdir() if p.is_dir()):
        if not is_finished(run_dir):
            continue
        run_config = read_json(run_dir / METRICS).get("config", {})
        if all(run_config.get(k) == v for k, v in wanted.items()):
            return run_dir
    return None


def config_differences(run_config: dict[str, Any], config: ExperimentConfig) -> dict[str, tuple[Any, Any]]:
    """``{key: (run's value, notebook's value)}`` for every numbers-changing key on which they differ."""
    mine = config.to_dict()
    return {k: (run_config.get(k), v) for k, v in mine.items()
            if k not in _NOT_COMPARED and run_config.get(k) != v}


def train_or_load(config: ExperimentConfig, reuse_from: str | Path | None = None) -> tuple[Experiment, dict]:
    """``(experiment, record)``: a finished run of ``reuse_from`` that matches ``config``, else ``config`` trained.

    Says which it did, so a notebook's output never passes a loaded run off as the one its parameters describe.
    """
    found = find_finished_run(reuse_from, config) if reuse_from else None
    if found is None:
        if reuse_from:
            wanted = ", ".join(f"{k}={getattr(config, k)!r}" for k in MATCH_KEYS)
            print(f"no finished run with {wanted} in {str(reuse_from)!r} (run `make run` first): training")
        experiment = build_experiment(config)
        return experiment, train(config, experiment)
    record = load_record(found)
    experiment = load_experiment(found, device=config.device)
    print(f"loaded the finished run {str(found)!r} instead of training")
    diff = config_differences(record.get("config", {}), config)
    if diff:
        print("  it differs from this notebook's parameters in: "
              + ", ".join(f"{k}={a!r} (notebook: {b!r})" for k, (a, b) in diff.items()))
    return experiment, record


def notebook_run(run_dir: str | Path | None, config: ExperimentConfig,
                 train_fn: Callable[[ExperimentConfig], Any] = train) -> Path:
    """The run an analysis notebook shows: ``run_dir`` if given (a finished run of any config), else the notebook's
    own tiny run of ``config`` in ``config.run_dir``, trained with ``train_fn`` unless a finished run of this very
    config is already there.

    Why: the notebooks' own runs live in fixed folders; one left there by other parameters (or by an older mtlwb) must
    not be shown as if the parameters cell had made it. It is moved aside to ``<folder>.stale-<n>`` (nothing is
    deleted) and ``config`` trained.
    """
    if run_dir is not None:
        if not is_finished(run_dir):
            raise ValueError(f"run_dir={str(run_dir)!r}: no finished run there (a metrics.json that says completed "
                             "and a checkpoint.pt); run_dir=None trains the notebook's own tiny run")
        return Path(run_dir)
    own = Path(config.run_dir)
    if own.exists():
        diff = (config_differences(read_json(own / METRICS).get("config", {}), config) if is_finished(own)
                else {"status": ("unfinished", "finished")})
        if not diff:
            return own
        aside = move_aside(own)
        print(f"{str(own)!r} held a run of other parameters ("
              + ", ".join(f"{k}={a!r}, wanted {b!r}" for k, (a, b) in diff.items())
              + f"): moved to {str(aside)!r}, training this notebook's run")
    train_fn(config)
    return own


__all__ = ["MATCH_KEYS", "config_differences", "find_finished_run", "is_finished", "notebook_run", "train_or_load"]
