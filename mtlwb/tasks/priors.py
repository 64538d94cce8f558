"""Prior knowledge of how tasks relate: the ``task_prior`` config field, parsed and checked in one place.

Why: a researcher often knows which tasks inform each other (surface normals are a function of depth; semantic
labels only loosely constrain either). ``task_prior`` states that knowledge once in the config; the methods receive
the resulting [T, T] tensor (``Method.task_prior``), never the raw value, and each decides what "related" means to
its own losses (TPKR: a target for the prototype affinity; MTPSL: which task pairs enter its loss; JTR: per-task
weights in the joint space).

Two spellings, both with rows and columns in ``tasks`` order:

* a T×T matrix (list of lists): `P[s][t]` is the strength with which task s relates to task t, values in [0, 1],
  the diagonal 1 (a task is fully related to itself); it may be asymmetric;
* a dict of related pairs ``{"depth-normal": 1.0, "semantic-depth": 0.3}``: a key names two different tasks joined
  by "-" (no task name contains one). An unordered pair sets both `P[s][t]` and `P[t][s]` unless the dict also gives
  the reverse order ("normal-depth"), which then sets `P[t][s]` alone. Unspecified pairs are 0, the diagonal 1.

``None`` (the default) means no prior: every method behaves exactly as without this module.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

FIELD = "task_prior"
PAIR_SEPARATOR = "-"


def parse_task_prior(value: Any, tasks: Sequence[str]) -> torch.Tensor | None:
    """The config value (matrix, pair dict or None) → P [T, T] float32, or None; ValueError names the culprit."""
    tasks = list(tasks)
    if value is None:
        return None
    if isinstance(value, dict):
        return _from_pairs(value, tasks)
    if isinstance(value, (list, tuple)):
        return _from_matrix(value, tasks)
    raise ValueError(f"{FIELD}={value!r}: must be None, a {len(tasks)}×{len(tasks)} matrix (list of lists, rows "
                     f"and columns in tasks={tasks} order) or a dict of pairs like "
                     f"{{\"{tasks[0]}{PAIR_SEPARATOR}{tasks[-1]}\": 1.0}}")


def _strength(where: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 <= v <= 1:
        raise ValueError(f"{FIELD}{where}={v!r}: must be a number in [0, 1]")
    return float(v)


def _from_matrix(rows: Sequence[Any], tasks: list[str]) -> torch.Tensor:
    T = len(tasks)
    if len(rows) != T or any(not isinstance(r, (list, tuple)) or len(r) != T for r in rows):
        shape = f"{len(rows)} rows of lengths {[len(r) if isinstance(r, (list, tuple)) else r for r in rows]}"
        raise ValueError(f"{FIELD}: a matrix must be {T}×{T} (tasks={tasks}), got {shape}")
    out = torch.empty(T, T)
    for s, row in enumerate(rows):
        for t, v in enumerate(row):
            out[s, t] = _strength(f"[{s}][{t}] ({tasks[s]}→{tasks[t]})", v)
        if out[s, s] != 1:
            raise ValueError(f"{FIELD}[{s}][{s}]={row[s]!r} ({tasks[s]} with itself): the diagonal must be 1")
    return out


def split_pair(key: Any, tasks: list[str]) -> tuple[int, int]:
    """``"depth-normal"`` → (index of depth, index of normal) in ``tasks``; ValueError names the key."""
    parts = key.split(PAIR_SEPARATOR) if isinstance(key, str) else []
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"{FIELD} key {key!r}: name a pair of tasks as \"a{PAIR_SEPARATOR}b\" "
                         f"(tasks={tasks})")
    unknown = [p for p in parts if p not in tasks]
    if unknown:
        raise ValueError(f"{FIELD} key {key!r}: {unknown[0]!r} is not one of tasks={tasks}")
    if parts[0] == parts[1]:
        raise ValueError(f"{FIELD} key {key!r}: a self pair; a task's relation to itself is always 1")
    return tasks.index(parts[0]), tasks.index(parts[1])


def _from_pairs(pairs: dict[Any, Any], tasks: list[str]) -> torch.Tensor:
    out = torch.eye(len(tasks))
    given = {split_pair(k, tasks): _strength(f"[{k!r}]", v) for k, v in pairs.items()}
    for (s, t), v in given.items():
        out[s, t] = v
        if (t, s) not in given:
            out[t, s] = v
    return out


# -- views of a parsed prior that the methods share -------------------------------------------------------------

def related_strength(prior: torch.Tensor) -> torch.Tensor:
    """P [T, T] → [T]: each task's mean strength to the *other* tasks, both directions averaged (T ≥ 2)."""
    T = prior.shape[0]
    sym = (prior + prior.t()) / 2
    return (sym.sum(dim=1) - sym.diagonal()) / max(T - 1, 1)


def restricted(prior: torch.Tensor, indices: Sequence[int]) -> torch.Tensor:
    """P [T, T] → P' [K, K] over the tasks at ``indices`` (e.g. those a method's joint space encodes), in that order."""
    idx = torch.as_tensor(list(indices), dtype=torch.long, device=prior.device)
    return prior.index_select(0, idx).index_select(1, idx)


def row_normalized(prior: torch.Tensor) -> torch.Tensor:
    """P [T, T] → rows summing to 1 (the diagonal is 1, so no row is empty): a target distribution per task."""
    return prior / prior.sum(dim=1, keepdim=True)
