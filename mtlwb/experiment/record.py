"""The run record (``metrics.json``), defined once: what the trainer writes and what the sweeps, the analysis
tables, the reuse of finished runs, the figures and the notebooks read.

Why a schema: the record is the contract between the trainer and everything that reads a run back; its fields
were declared in the trainer, re-declared in the sweeps and typed again in the tables, and a field renamed in one
place would have been read as missing in another. ``RunRecord`` (a ``TypedDict``: the record stays the plain dict
that ``json`` reads and the notebooks index) is the one declaration; ``check_record`` derives its checks from it.

Writing is strict, reading tolerant: the trainer checks every record against the schema before it writes it
(``write_record``), so no run can write a record off the schema; ``read_record`` checks the types of the fields a
record has and needs only ``status`` and ``config``, so records written by an older mtlwb (before ``label_split``,
``sources``, ... existed) still load, and their readers take the absent fields as absent (``record.get``).

(No ``from __future__ import annotations`` here: ``TypedDict`` must see ``NotRequired`` when the class is made.)
"""

import types
import typing
from pathlib import Path
from typing import Any, NotRequired, TypedDict

from ..core.io import atomic_write_json, read_json
from .files import METRICS

#: task -> metric -> value, e.g. {"semantic": {"miou": 0.41, "pixel_acc": 0.77}, ...}
Metrics = dict[str, dict[str, float]]
STATUSES = ("running", "completed", "failed")


class EpochEntry(TypedDict):
    """One finished epoch in ``RunRecord.history`` (epoch 0: the untrained model of an ``epochs=0`` run)."""

    epoch: int                                   # 1-based: the epochs finished
    lr: float                                    # the learning rate of its first parameter group
    train: dict[str, float]                      # mean of every loss term over the epoch's batches, and "total"
    weights: dict[str, float]                    # the loss-weighting scheme's per-task weights after it
    seconds: float
    eval: NotRequired[Metrics]                   # test-split metrics, on the epochs that evaluate (eval_every)
    summaries: NotRequired[dict[str, Any]]       # the method's averaged evaluation summaries (e.g. task affinity)
    val: NotRequired[Metrics]                    # validation-split metrics (val_fraction > 0)
    eval_by_source: NotRequired[dict[str, Metrics]]   # every evaluated training source's (several sources)
    diagnostics: NotRequired[dict[str, Any]]     # mechanism diagnostics (config diagnostics; experiment.diagnostics)


class RunRecord(TypedDict):
    """``metrics.json`` of one run, rewritten after every epoch."""

    run_id: str
    status: str                                  # one of STATUSES
    error: str | None                            # why a failed run failed
    config: dict[str, Any]                       # ExperimentConfig.to_dict(): the full effective config
    tasks: list[dict[str, Any]]                  # TaskSpec fields, in the config's task order
    num_train: int                               # images trained on
    num_eval: int                                # test-split images
    labelled_per_task: dict[str, int]            # training images per task with a true label
    label_split: dict[str, Any]                  # where the label table came from (data.registry.resolve_label_split)
    device: str
    history: list[EpochEntry]
    final: Metrics                               # the last evaluated epoch's test metrics
    num_val: NotRequired[int]                    # with a validation split (val_fraction > 0) ...
    val_ids: NotRequired[list[int]]              # ... the held-out training positions
    best_val: NotRequired[dict[str, Any] | None]  # ... and the epoch best on it (experiment.selection)
    sources: NotRequired[list[dict[str, Any]]]   # with extra training sources: each one's summary ...
    final_by_source: NotRequired[dict[str, Metrics]]  # ... and its last evaluated metrics
    pseudo_per_task: NotRequired[dict[str, int]]  # with pseudo_labels: training images per task with a pseudo-label


def _runtime_types(hint: Any) -> tuple[type, ...]:
    """The classes an ``isinstance`` check of a value of type ``hint`` accepts (generics by their origin; a float
    field also takes an int, as JSON writes 1.0 as 1 only if asked to, and Python's own sums may be ints)."""
    if hint is Any:
        return (object,)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return tuple(t for arg in typing.get_args(hint) for t in _runtime_types(arg))
    if hint is type(None):
        return (type(None),)
    origin = typing.get_origin(hint) or hint
    if origin is float:
        return (float, int)
    if typing.is_typeddict(origin):
        return (dict,)
    return (origin,)


def _check(value: dict, schema: type, where: str, strict: bool) -> None:
    hints = typing.get_type_hints(schema)
    missing = sorted(schema.__required_keys__ - set(value)) if strict else []
    if missing:
        raise ValueError(f"{where}: missing {missing}")
    for key, hint in hints.items():
        if key in value and not isinstance(value[key], _runtime_types(hint)) or (
                key in value and isinstance(value[key], bool) and bool not in _runtime_types(hint)):
            raise ValueError(f"{where}.{key}={value[key]!r}: expected {hint}")


def check_record(record: dict, strict: bool = True, where: str = "run record") -> None:
    """Raise ValueError naming the field when ``record`` is not a ``RunRecord``: every required field present
    (``strict``; else only ``status`` and ``config``), every present field of its type, ``status`` one of
    ``STATUSES``, every history entry an ``EpochEntry``."""
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
    needed = {"status", "config"} - set(record)
    if needed:
        raise ValueError(f"{where}: missing {sorted(needed)}")
    _check(record, RunRecord, where, strict)
    if record["status"] not in STATUSES:
        raise ValueError(f"{where}.status={record['status']!r}: allowed {list(STATUSES)}")
    for i, entry in enumerate(record.get("history", [])):
        _check(entry, EpochEntry, f"{where}.history[{i}]", strict)


def record_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / METRICS


def write_record(run_dir: str | Path, record: RunRecord) -> RunRecord:
    """Check ``record`` against the schema, then write it atomically (a crash leaves the previous record)."""
    check_record(record)
    atomic_write_json(record_path(run_dir), record)
    return record


def read_record(run_dir: str | Path) -> RunRecord:
    """The record of a run folder; ValueError (naming the file) for one that is not a run record, OSError for one
    that cannot be read. Tolerant of records written by an older mtlwb (module docstring)."""
    path = record_path(run_dir)
    record = read_json(path)
    check_record(record, strict=False, where=str(path))
    return record
