"""Model selection on the validation split: which epoch's test metrics a run reports as its result.

Careful papers choose the checkpoint on held-out training data and report the test metrics of that
checkpoint; picking the epoch with the best *test* metrics (as the published JTR code does) overstates every
method by the test split's noise. A run with a validation split (``val_fraction`` > 0) is scored at every
evaluated epoch by its **validation multi-task score**: the mean over tasks of the signed relative change (%)
of each task's primary metric against the first validated epoch — Δ_MTL with that epoch as the baseline, so
tasks on different scales weigh the same. The highest score wins; on a tie, the earliest epoch. The test
metrics are only read out at the chosen epoch, never compared.

``best_on_test`` is that published rule, kept only to *show* its optimism beside the validation rule (the analysis
option ``select="best_test"``): the same score on the test split itself. It is never a run's result.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ..tasks import TaskSpec

TEST_CRITERION = ("OPTIMISTIC, the papers' rule: test multi-task score (the validation score's formula on the test "
                  "split vs the first evaluated epoch); highest wins, earliest on ties")
CRITERION = ("validation multi-task score: mean over tasks of the signed relative change (%) of the primary "
             "metric vs the first validated epoch; highest wins, earliest on ties")


def validation_score(val: Mapping[str, Mapping[str, float]], reference: Mapping[str, Mapping[str, float]],
                     tasks: Sequence[TaskSpec]) -> float:
    """Mean over tasks of (−1)^{l_t}·(M_t − R_t)/|R_t|·100 (|R_t| = 1 where the reference is 0); NaN → −inf."""
    total = 0.0
    for t in tasks:
        m, r = float(val[t.name][t.primary_metric]), float(reference[t.name][t.primary_metric])
        change = (m - r) / (abs(r) if r else 1.0) * (-1.0 if t.lower_is_better else 1.0)
        if not math.isfinite(change):
            return -math.inf
        total += change
    return 100.0 * total / len(tasks)


def _best_epoch(history: Sequence[Mapping[str, Any]], split: str, tasks: Sequence[TaskSpec]
                ) -> tuple[Mapping[str, Any], float] | None:
    """The history entry best on ``split`` ("val" or "eval") by ``validation_score`` against that split's first
    evaluated epoch (ties: the earliest), with its score; None when no entry evaluated ``split``."""
    entries = [h for h in history if split in h]
    if not entries:
        return None
    reference = entries[0][split]
    scores = [validation_score(h[split], reference, tasks) for h in entries]
    i = max(range(len(scores)), key=lambda j: (scores[j], -j))
    return entries[i], scores[i]


def best_on_validation(history: Sequence[Mapping[str, Any]], tasks: Sequence[TaskSpec]) -> dict | None:
    """``{"epoch", "criterion", "score", "val", "test"}`` of the best validated epoch; None without validation."""
    found = _best_epoch(history, "val", tasks)
    if found is None:
        return None
    best, score = found
    return {"epoch": best["epoch"], "criterion": CRITERION, "score": score, "val": best["val"], "test": best["eval"]}


def best_on_test(history: Sequence[Mapping[str, Any]], tasks: Sequence[TaskSpec]) -> dict | None:
    """``{"epoch", "criterion", "score", "test"}`` of the evaluated epoch best on the TEST split (the published
    codes' rule: optimistic, for showing only); None without an evaluated epoch."""
    found = _best_epoch(history, "eval", tasks)
    if found is None:
        return None
    best, score = found
    return {"epoch": best["epoch"], "criterion": TEST_CRITERION, "score": score, "test": best["eval"]}
