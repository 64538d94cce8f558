"""Load a finished run instead of training again: the training notebook's ``reuse_finished_run`` and the analysis
notebooks' own tiny runs (``notebook_run``).

Why: ``notebooks/train.ipynb`` stores CI's tiny defaults (nbval re-executes it on a fresh clone), whose figures show
an untrained 1-epoch model. After ``make run``, ``reports/sweeps/quick/<run_id>/`` holds a real run of every
method; a person opening the notebook is shown that one by default (``choose_run``), at the cost of a checkpoint
load instead of minutes of training.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import identity
from ..config import ExperimentConfig
from ..core.io import move_aside
from ..methods import METHODS, options_dict, parse_options, shortest_options
from .files import CHECKPOINT, METRICS
from .loop import Experiment, build_experiment, load_experiment, load_record, train
from .record import read_record

# what a run must share with the notebook's config to stand in for it: the same problem (data, tasks, labels) and
# method; the budget (epochs, images, seed, ...) may differ and is printed
MATCH_KEYS = ("dataset", "tasks", "label_setting", "method")


def is_finished(run_dir: str | Path) -> bool:
    """A run folder whose ``metrics.json`` says completed and whose checkpoint is there."""
    run_dir = Path(run_dir)
    if not (run_dir / CHECKPOINT).is_file() or not (run_dir / METRICS).is_file():
        return False
    try:
        return read_record(run_dir)["status"] == "completed"
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
        run_config = read_record(run_dir)["config"]
        if all(run_config.get(k) == v for k, v in wanted.items()):
            return run_dir
    return None


def config_differences(run_config: dict[str, Any], config: ExperimentConfig) -> dict[str, tuple[Any, Any]]:
    """``{key: (run's value, notebook's value)}`` for every field of the run identity (``mtlwb.identity``) on which
    they differ; method options named by the fewest options that resolve to them (``methods.shortest_options``)."""
    diff = identity.differences(run_config, config.to_dict())
    if "method_options" in diff:
        (a, b), methods = diff["method_options"], (run_config.get("method"), config.method)
        diff["method_options"] = tuple(_short_options(m, o) for m, o in zip(methods, (a, b)))
    return diff


def _short_options(method: str | None, options: Any) -> Any:
    if method not in METHODS or not isinstance(options, dict):
        return options
    if set(options) != {f.name for f in dataclasses.fields(METHODS[method].Options)}:
        return f"{options} as written (recorded before options were resolved: defaults unknown)"
    try:
        return shortest_options(METHODS[method], options_dict(parse_options(METHODS[method], options)))
    except (TypeError, ValueError):          # options of an older mtlwb that no longer parse: as recorded
        return options


def choose_run(config: ExperimentConfig, reuse: bool | None, runs_dir: str | Path,
               injected: bool = False) -> tuple[Path | None, str]:
    """Which run the training notebook shows, and the lines that say so (its first output): ``(finished run or
    None = train config, text)``.

    ``reuse`` None (the notebook's default): a finished run in ``runs_dir`` of the same data, tasks, label setting
    and method when the notebook runs with its stored parameters (``injected`` False: opened in JupyterLab after
    ``make run``, or nbval), else train — under ``papermill -p`` the parameters name the experiment wanted, and a
    sweep's run must never be swapped for ``make run``'s. True: the finished run whenever there is one. False:
    always train.
    """
    wanted = ", ".join(f"{k}={getattr(config, k)!r}" for k in MATCH_KEYS)
    budget = (f"{config.epochs} epoch(s) on {'all' if config.train_samples is None else config.train_samples} "
              "training images")
    if reuse is False or (reuse is None and injected):
        why = "reuse_finished_run=False" if reuse is False else "parameters were given to papermill"
        return None, f"training the parameters of this notebook ({budget}; {why})"
    found = find_finished_run(runs_dir, config)
    if found is None:
        return None, (f"training the parameters of this notebook ({budget}): no finished run with {wanted} in "
                      f"{str(runs_dir)!r}. The stored defaults are CI's tiny run (its predictions are still blank): "
                      "run `make run` first to see a trained model here, or raise epochs and train_samples")
    run = read_record(found)["config"]
    shown = (f"{run.get('epochs')} epoch(s) on {'all' if run.get('train_samples') is None else run['train_samples']} "
             "training images")
    return found, (f"showing the finished run {str(found)!r} ({shown}) instead of training {budget}: "
                   "set reuse_finished_run = False to train the parameters below")


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
        diff = (config_differences(read_record(own)["config"], config) if is_finished(own)
                else {"status": ("unfinished", "finished")})
        if not diff:
            return own
        aside = move_aside(own)
        print(f"{str(own)!r} held a run of other parameters ("
              + ", ".join(f"{k}={a!r}, wanted {b!r}" for k, (a, b) in diff.items())
              + f"): moved to {str(aside)!r}, training this notebook's run")
    train_fn(config)
    return own


__all__ = ["MATCH_KEYS", "choose_run", "config_differences", "find_finished_run", "is_finished", "notebook_run",
           "train_or_load"]
