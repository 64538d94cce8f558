"""Paired statistics over seeds: is a group's change against its baseline larger than the seed noise?

Two runs that differ only in ``seed`` share nothing random, but two runs of *different* groups with the same
seed share their initialisation, batch order and label mask. Comparing a group with its baseline seed by seed
therefore removes the part of the spread that both see, and the per-seed differences are the sample to test:
their mean with a t-interval (mean ± t_{0.975, n−1}·sd/√n) and a paired t-test (``ttest_1samp`` on the
differences, which equals ``ttest_rel``), with the Wilcoxon signed-rank p-value alongside as a check that does
not assume normality. Only seeds present in both groups are paired; below ``MIN_PAIRS`` pairs no interval or
test is reported ("n too small"), because an interval from two seeds (t_{0.975,1} = 12.7) says nothing.

Changes are relative, as Δ_MTL: per task 100·(−1)^{l_t}·(M_t − M_{b,t})/M_{b,t} % of the baseline (positive =
better), and the per-seed Δ_MTL is their mean over tasks. This module knows nothing of sweeps: it takes
per-seed metric values and returns estimates (``mtlwb.analysis.tables`` feeds it).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats as sps

from ..tasks import TaskSpec

MIN_PAIRS = 3
CONFIDENCE = 0.95
DELTA = "delta_mtl"          # key of the per-seed Δ_MTL among the per-task keys
TOO_FEW = "n too small"
CLAIM_RELATIONS = (">", ">=")  # a sweep claim: A better than B, or A at least as good as B

# seed -> {task name -> value of the task's primary metric}
SeedMetrics = Mapping[int, Mapping[str, float]]


@dataclass(frozen=True)
class PairedEstimate:
    """Mean of n paired differences with its confidence interval and p-values (NaN when n < MIN_PAIRS)."""

    n: int
    mean: float
    low: float
    high: float
    p_value: float             # two-sided paired t-test
    wilcoxon_p: float          # two-sided Wilcoxon signed-rank test
    confidence: float = CONFIDENCE

    @property
    def enough(self) -> bool:
        return self.n >= MIN_PAIRS

    @property
    def significant(self) -> bool:
        """The interval excludes 0."""
        return self.enough and (self.low > 0 or self.high < 0)

    @property
    def mark(self) -> str:
        return "*" if self.significant else ""

    @property
    def verdict(self) -> str:
        if not self.enough:
            return TOO_FEW
        if not self.significant:
            return "not significant"
        return "↑ significant" if self.mean > 0 else "↓ significant"

    def text(self, digits: int = 2, unit: str = "") -> str:
        """``+1.20 [-0.50, +2.90] *``, or ``+1.20 (n=2: n too small)``."""
        if self.n == 0:
            return "–"
        if not self.enough:
            return f"{self.mean:+.{digits}f}{unit} (n={self.n}: {TOO_FEW})"
        return f"{self.mean:+.{digits}f}{unit} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]" + (
            f" {self.mark}" if self.mark else "")

    def p_text(self) -> str:
        return "–" if math.isnan(self.p_value) else f"{self.p_value:.2g}"


def paired_estimate(differences: Sequence[float], confidence: float = CONFIDENCE) -> PairedEstimate:
    """Mean ± t_{(1+c)/2, n−1}·sd/√n of the paired differences (sd with ddof=1) and the paired tests' p-values.

    All differences equal (sd = 0): the interval has zero width and the t-test's limit is taken
    (p = 0 for a non-zero mean, 1 for a zero one) instead of scipy's NaN.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence!r}: must be in (0, 1), e.g. 0.95")
    d = np.asarray([float(x) for x in differences], dtype=float)
    if not np.all(np.isfinite(d)):
        raise ValueError(f"paired_estimate: differences must be finite numbers, got {d.tolist()}")
    n = len(d)
    mean = float(d.mean()) if n else math.nan
    if n < MIN_PAIRS:
        return PairedEstimate(n, mean, math.nan, math.nan, math.nan, math.nan, confidence)
    sd = float(d.std(ddof=1))
    half = float(sps.t.ppf((1 + confidence) / 2, n - 1)) * sd / math.sqrt(n)
    if sd == 0.0:
        p = 0.0 if mean != 0 else 1.0
    else:
        p = float(sps.ttest_1samp(d, 0.0).pvalue)
    return PairedEstimate(n, mean, mean - half, mean + half, p, _wilcoxon(d), confidence)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of several tests' p-values (family-wise error; NaN stays NaN, not counted).

    Why: a sweep that tests several claims at 5 % each will call one of them by chance now and then; the adjusted
    p says which verdicts survive the number of tests made.
    """
    valid = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    out = [math.nan] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(valid):
        running = max(running, min(1.0, (len(valid) - rank) * p))
        out[i] = running
    return out


def _wilcoxon(d: np.ndarray) -> float:
    if not np.any(d):
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # small-sample / ties notices: the value is still the test's
        try:
            return float(sps.wilcoxon(d).pvalue)
        except ValueError:
            return math.nan


def relative_change(value: float, baseline: float, lower_is_better: bool) -> float:
    """100·(−1)^l·(value − baseline)/baseline: % of the baseline, positive = better (NaN for a zero baseline)."""
    if baseline == 0 or not math.isfinite(baseline) or not math.isfinite(value):
        return math.nan
    sign = -1.0 if lower_is_better else 1.0
    return 100.0 * sign * (value - baseline) / baseline


@dataclass
class Comparison:
    """One group against its baseline group, paired by seed."""

    seeds: list[int]                         # seeds present in both, sorted
    dropped: list[int]                       # seeds of either side without a partner
    changes: pd.DataFrame                    # index = paired seeds; one column per task and DELTA (%)
    estimates: dict[str, PairedEstimate] = field(default_factory=dict)   # per task name and DELTA

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def delta(self) -> PairedEstimate:
        return self.estimates[DELTA]


def compare(group: SeedMetrics, baseline: SeedMetrics, tasks: Sequence[TaskSpec],
            confidence: float = CONFIDENCE) -> Comparison:
    """Per-seed relative changes of each task's primary metric and of Δ_MTL, and their paired estimates.

    A seed whose change is undefined for some task (NaN metric, zero baseline) is left out of every estimate
    and listed in ``dropped``, so that every estimate is over the same pairs.
    """
    common = sorted(set(group) & set(baseline))
    dropped = sorted(set(group) ^ set(baseline))
    rows = {}
    for seed in common:
        row = {t.name: relative_change(float(group[seed][t.name]), float(baseline[seed][t.name]),
                                       t.lower_is_better) for t in tasks}
        if all(math.isfinite(v) for v in row.values()):
            row[DELTA] = sum(row.values()) / len(tasks)
            rows[seed] = row
        else:
            dropped.append(seed)
    columns = [t.name for t in tasks] + [DELTA]
    changes = pd.DataFrame.from_dict(rows, orient="index", columns=columns) if rows else pd.DataFrame(columns=columns)
    estimates = {c: paired_estimate(changes[c].tolist(), confidence) for c in columns}
    return Comparison(sorted(rows), sorted(dropped), changes, estimates)


def verdict_line(name: str, baseline_name: str, comparison: Comparison, on: str | None = None) -> str:
    """``jtr vs supervised: Δ_MTL +1.2 % [-0.5, +2.9] (n=5, p=0.14): not significant``; with ``on`` (a task) the
    change of that task's primary metric instead: ``jtr vs supervised: normal change +3.1 % [...]``."""
    d = comparison.delta if on is None else comparison.estimates[on]
    what = "Δ_MTL" if on is None else f"{on} change"
    if d.n == 0:
        return f"{name} vs {baseline_name}: no seed in common, nothing to pair"
    if not d.enough:
        return (f"{name} vs {baseline_name}: {what} {d.mean:+.1f} % (n={d.n}): {TOO_FEW} "
                f"(needs {MIN_PAIRS} paired seeds)")
    return (f"{name} vs {baseline_name}: {what} {d.mean:+.1f} % [{d.low:+.1f}, {d.high:+.1f}] "
            f"(n={d.n}, p={d.p_text()}): {d.verdict}")
